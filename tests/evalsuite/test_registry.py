import sys
import textwrap

import pytest

from evalsuite.cli import main
from evalsuite.errors import TaskSpecError, UnknownTaskError
from evalsuite.registry import Registry, load_spec

KIND_PY = textwrap.dedent('''
    from evalsuite.registry import TaskKind, Unit, register_kind

    @register_kind("{kind}")
    class Echo(TaskKind):
        metrics = frozenset({{"score"}})

        def units(self):
            return [Unit("only")]

        def run_unit(self, unit):
            return [dict(name="score", value=1.0, n=1)]

        def aggregate(self, samples):
            return [dict(name="score", value=float(samples["value"].sum()), n=1)]
''')


def _task_yaml(name, kind="ppl_vs_length", metrics="[ppl]", extra="lengths: [64]"):
    return f"name: {name}\nversion: 2\nkind: {kind}\ndescription: test task {name}\nmetrics: {metrics}\n{extra}\n"


def test_builtin_task_is_found_with_parsed_lengths():
    spec = Registry().get("ppl_vs_length")
    assert spec.kind == "ppl_vs_length" and spec.version == "1.0"
    assert spec.lengths == [1024, 2048, 4096, 8192, 16384, 32768, 61440]


def test_include_path_adds_yaml_tasks_and_python_kinds(tmp_path):
    (tmp_path / "echo_kind.py").write_text(KIND_PY.format(kind="echo_inc"))
    (tmp_path / "echo.yaml").write_text(_task_yaml("echo_task", kind="echo_inc", metrics="[score]", extra=""))
    reg = Registry([tmp_path])
    assert reg.get("echo_task").kind == "echo_inc"
    assert "ppl_vs_length" in reg.names()


def test_entry_point_group_adds_tasks(tmp_path, monkeypatch):
    pkg = tmp_path / "thirdparty_tasks"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(KIND_PY.format(kind="echo_ep") + textwrap.dedent('''
        from pathlib import Path

        def task_paths():
            return [Path(__file__).parent / "specs"]
    '''))
    (pkg / "specs").mkdir()
    (pkg / "specs" / "ep.yaml").write_text(_task_yaml("ep_task", kind="echo_ep", metrics="[score]", extra=""))
    dist = tmp_path / "thirdparty_tasks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-tasks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[evalsuite.tasks]\nthirdparty = thirdparty_tasks:task_paths\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert Registry().get("ep_task").kind == "echo_ep"
    sys.modules.pop("thirdparty_tasks", None)


def test_a_second_kind_of_the_same_name_is_refused(tmp_path):
    (tmp_path / "first.py").write_text(KIND_PY.format(kind="echo_twice"))
    Registry([tmp_path])
    other = tmp_path / "other"
    other.mkdir()
    (other / "second.py").write_text(KIND_PY.format(kind="echo_twice"))
    with pytest.raises(TaskSpecError, match="kind 'echo_twice' is registered twice"):
        Registry([other])
    builtin = tmp_path / "builtin"
    builtin.mkdir()
    (builtin / "shadow.py").write_text(KIND_PY.format(kind="ppl_vs_length"))
    with pytest.raises(TaskSpecError, match="kind 'ppl_vs_length' is registered twice"):
        Registry([builtin])


def test_unknown_task_suggests_close_matches():
    with pytest.raises(UnknownTaskError, match="did you mean ppl_vs_length"):
        Registry().get("ppl_vs_lenght")


@pytest.mark.parametrize("text, message", [
    ("name: [unclosed", "not valid YAML"),
    ("version: 1\nkind: ppl_vs_length\n", "name: required"),
    (_task_yaml("t", extra="lengths: [64]\nparams: {chunk_size: 2.5}"), "params.chunk_size: expected an integer"),
    (_task_yaml("t", extra="lengths: [64]\ndataset: {split: test}"), "dataset.split: expected one of 'train' or 'eval'"),
    (_task_yaml("t", extra="lengths: [99999999999999999999k]"), "expected at most 134217728"),
    (_task_yaml("t", extra="lengths: [64]\nthresholds: {ppl: {max: high}}"), "thresholds.ppl.max: expected a number"),
    (_task_yaml("t", metrics="[ppl, bleu]"), r"unknown metric\(s\) \['bleu'\]"),
    (_task_yaml("t", kind="nope"), "unknown kind 'nope'"),
    (_task_yaml("t", extra="lengths: [2k, 1k]"), "strictly increasing"),
    (_task_yaml("t", extra="lengths: [1k]\nthresholds: {loss: {max: 1}}"), "not in metrics"),
    (_task_yaml("t", extra="lenghts: [1k]"), r"lenghts: unknown key; expected one of name, version, kind"),
])
def test_bad_task_yaml_gives_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(TaskSpecError, match=message) as err:
        load_spec(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("bad_text, bad_name", [(_task_yaml("bad_task", metrics="[ppl, bleu]"), "bad_task"),
                                                ("name: [unclosed", "broken")])
def test_one_bad_yaml_in_an_include_path_is_named_and_the_rest_load(tmp_path, capsys, bad_text, bad_name):
    """The bad file is one warning line naming it; the folder's other tasks load; asking for the bad task itself (by
    its name, or by its file's stem when not even the name can be read) is the one-line error naming the file."""
    (tmp_path / "echo_kind.py").write_text(KIND_PY.format(kind="echo_beside_bad"))
    (tmp_path / "good.yaml").write_text(_task_yaml("good_task", kind="echo_beside_bad", metrics="[score]", extra=""))
    bad = tmp_path / "broken.yaml"
    bad.write_text(bad_text)
    assert main(["list", "--include-path", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "good_task" in captured.out and "ppl_vs_length" in captured.out
    warning = captured.err.strip()
    assert warning.startswith("evalsuite: warning:") and str(bad) in warning and "\n" not in warning
    db = str(tmp_path / "s.db")
    assert main(["run", "--task", "good_task", "--include-path", str(tmp_path), "--db", db, "--no-progress",
                 "--model", "tiny-baseline"]) == 0
    capsys.readouterr()
    assert main(["run", "--task", bad_name, "--include-path", str(tmp_path), "--db", db, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("evalsuite: error:") and str(bad) in err and "\n" not in err


def test_cli_list_shows_versions_and_descriptions(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "ppl_vs_length" in out and "1.0" in out and "Per-token loss" in out


def test_a_missing_extra_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "streamlit" else real(name, *a))
    assert main(["dashboard", "--db", str(tmp_path / "s.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("evalsuite: error: streamlit is not installed; it comes with the 'dashboard' extra: "
                   "pip install 'ttt-omni[dashboard]' (or 'ttt-omni[all]')")
    monkeypatch.setitem(sys.modules, "jiwer", None)  # as if the speech-eval extra were not installed
    assert main(["run", "--task", "asr_wer", "--limit", "1", "--db", str(tmp_path / "s.db"), "--no-progress"]) == 2
    assert "jiwer is not installed; it comes with the 'speech-eval' extra" in capsys.readouterr().err
