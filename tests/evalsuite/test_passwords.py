"""No command prints the password of a results store's URL: not the run's table and hints, the other commands, their
errors, nor the logs (issue 24). The PostgreSQL URL is served by a SQLite file here (the engine is swapped), so no
server is needed; everything that shows the URL sees the PostgreSQL one."""
import logging
import textwrap

import pytest

import evalsuite.store
from evalsuite.cli import main

PASSWORD = "S3cr3t-pw"
URL = f"postgresql://ev:{PASSWORD}@db.example:5432/results"

KIND = textwrap.dedent('''
    from evalsuite.registry import TaskKind, Unit, register_kind

    @register_kind("two_units")
    class TwoUnits(TaskKind):
        metrics = frozenset({"score"})

        def units(self):
            return [Unit("a"), Unit("b")]

        def run_unit(self, unit):
            return [dict(name="score", value=1.0, n=1)]

        def aggregate(self, samples):
            return [dict(name="score", value=float(samples["value"].sum()), n=len(samples))]
''')


@pytest.fixture
def postgres_url(tmp_path, monkeypatch):
    """URL: a PostgreSQL URL with a password, whose engine is a SQLite file."""
    make_engine = evalsuite.store.make_engine
    monkeypatch.setattr(evalsuite.store, "make_engine", lambda url: make_engine(f"sqlite:///{tmp_path / 'pg.db'}"))
    return URL


def test_no_command_prints_the_password(tmp_path, capsys, caplog, postgres_url):
    caplog.set_level(logging.DEBUG)
    (tmp_path / "kind.py").write_text(KIND)
    (tmp_path / "task.yaml").write_text("name: two\nversion: 1\nkind: two_units\nmetrics: [score]\n")
    commands = [["run", "--task", "two", "--include-path", str(tmp_path), "--model", "tiny-baseline", "--no-progress"],
                ["runs"], ["show", "1"], ["show", "99"], ["migrate"]]
    codes = [main([*args, "--db", postgres_url]) for args in commands]
    out = capsys.readouterr()
    printed = out.out + out.err + caplog.text
    assert codes == [0, 0, 0, 2, 0]
    assert PASSWORD not in printed
    assert "evalsuite show 1 --db postgresql://ev:***@db.example:5432/results" in out.out  # the run's hints


def test_an_unreachable_store_is_one_line_without_the_password(capsys):
    code = main(["runs", "--db", f"postgresql://ev:{PASSWORD}@127.0.0.1:9/results"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and PASSWORD not in err and "ev:***@127.0.0.1:9" in err


def test_sweep_errors_do_not_print_the_password(postgres_url):
    """`ttt-omni sweep` prints the study's errors itself, not through evalsuite's masking."""
    from evalsuite.errors import EvalsuiteError
    from evalsuite.sweep.study import load_study

    with pytest.raises(EvalsuiteError) as e:
        load_study("nowhere", postgres_url)
    assert PASSWORD not in str(e.value) and "ev:***@db.example" in str(e.value)
