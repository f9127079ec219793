"""Golden values of the unit vocoder: the tiny seeded HiFi-GAN (support.speech.write_vocoder, fairseq's checkpoint
layout) turns fixed units into the recorded durations and samples. Regenerate after a deliberate change:
`PYTHONPATH=tests .venv/bin/python tests/speech/test_vocoder_golden.py --write`."""
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ttt_omni.speech.tiny import write_vocoder
from ttt_omni.speech.vocoder import UnitVocoder

GOLDEN = Path(__file__).with_name("vocoder_golden.json")
UNITS = [3, 7, 7, 1, 19, 0, 12, 12, 5]


def synthesize(directory: Path) -> dict:
    vocoder = UnitVocoder.from_pretrained(write_vocoder(directory))
    with torch.no_grad():
        units = torch.tensor(UNITS)
        return {"units": UNITS, "durations": vocoder.durations(units).tolist(),
                "wav": [float(x) for x in vocoder(units)], "wav_fixed_durations":
                [float(x) for x in vocoder(units, dur_prediction=False)]}


def test_vocoder_reproduces_its_golden_output(tmp_path):
    expected, got = json.loads(GOLDEN.read_text()), synthesize(tmp_path / "vocoder")
    assert got["durations"] == expected["durations"]
    for key in ("wav", "wav_fixed_durations"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-10, err_msg=key)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(json.dumps(synthesize(Path(tmp) / "vocoder")) + "\n")
    print(f"wrote {GOLDEN}")
