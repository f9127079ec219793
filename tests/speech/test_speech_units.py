"""Units made here: paired TTS data, log-mel k-means units, the Griffin-Lim reference and the vocoder trainer."""
import json
import math
import os

import numpy as np
import pytest
import torch

from support.speech import tone
from ttt_omni.cli import main
from ttt_omni.speech import paired_data
from ttt_omni.speech.audio import load_wav, save_wav
from ttt_omni.speech.griffin_lim import CodebookGriffinLim, griffin_lim
from ttt_omni.speech.logmel_units import MEL, LogMel, LogMelUnitExtractor, kmeans
from ttt_omni.speech.paired_data import Utterance, book_sentences, build, read_manifest, select
from ttt_omni.speech.tts import TTSError, parse_voice, speak
from ttt_omni.speech.vocoder_train import VocoderTrainConfig, VocoderTrainer, run_lengths, small_config

BOOK = ("Chapter I\n\nIt was a bright cold day in April, and the clocks were striking. "
        "He said “yes” to the man in the grey coat at the door! See page 12 for the rest of the note. "
        "Short one. _Italic words_ are not spoken here by anyone at all.\n\n"
        "THE END OF THE FIRST PART OF THE BOOK.\n")


def test_book_sentences_keep_only_plain_speakable_sentences():
    assert book_sentences(BOOK) == ["It was a bright cold day in April, and the clocks were striking.",
                                    'He said "yes" to the man in the grey coat at the door!']


def test_select_holds_eval_books_out(tmp_path):
    for name, split in (("a.txt", "train"), ("b.txt", "eval")):
        (tmp_path / name).write_text("\n\n".join(f"The {name[0]} book says sentence number {w} is here now."
                                                 for w in ("one", "two", "three", "four")))
    (tmp_path / "MANIFEST.tsv").write_text("file\ttitle\tauthor\tkind\tsplit\na.txt\tA\tX\tnovel\ttrain\n"
                                           "b.txt\tB\tY\tnovel\teval\n")
    got = select(per_train_book=2, per_eval_book=1, replies=["It is  sunny."], books_dir=tmp_path)
    assert [(u.split, u.source) for u in got] == [("train", "a.txt"), ("train", "a.txt"), ("train", "replies"),
                                                  ("heldout", "b.txt")]
    assert all(" a book" in u.text for u in got if u.source == "a.txt") and got[2].text == "It is sunny."


def test_voices_and_tts_errors(tmp_path):
    assert parse_voice("espeak:en-us") == ("espeak", "en-us") and parse_voice("en") == ("espeak", "en")
    assert parse_voice("piper:/v.onnx") == ("piper", "/v.onnx")
    with pytest.raises(TTSError, match="not understood"):
        parse_voice("festival:kal")
    with pytest.raises(TTSError, match="empty text"):
        speak("  ", tmp_path / "x.wav")


def test_piper_voice_runs_the_piper_program(tmp_path, monkeypatch):
    """piper-tts is optional (GPL): a stand-in `piper` on PATH that logs its arguments and writes 22.05 kHz audio."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "piper").write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\n'
                                   'while [ "$1" != "--output_file" ]; do shift; done\n'
                                   'sox -n -r 22050 -c 1 "$2" synth 0.5 sine 440\n')
    (bin_dir / "piper").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    model = tmp_path / "voice.onnx"
    with pytest.raises(TTSError, match="voice model not found"):
        speak("Hello there.", tmp_path / "x.wav", f"piper:{model}")
    model.write_bytes(b"onnx")
    wav = speak("Hello there.", tmp_path / "x.wav", f"piper:{model}", words_per_minute=200)
    assert f"--model {model} --length_scale 0.8000" in (bin_dir / "args").read_text()
    assert len(load_wav(wav)) == 8000


def test_build_is_deterministic_and_resumable(tmp_path, monkeypatch):
    utts = [Utterance("The cat sat on the mat.", "train", "a.txt"), Utterance("Where is it?", "heldout", "b.txt")]
    first = build(tmp_path / "one", utts)
    again = build(tmp_path / "two", utts)
    assert [r["id"] for r in first] == [r["id"] for r in again]
    for a, b in zip(first, again):
        assert open(a["wav_path"], "rb").read() == open(b["wav_path"], "rb").read()
        assert a["duration_s"] > 0.5 and a["voice"] == "espeak:en-us"
    # a torn last line (killed mid-write) is dropped; only what is missing is spoken again
    manifest = tmp_path / "one" / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    manifest.write_text(lines[0] + "\n" + lines[1][:20])
    spoken = []
    monkeypatch.setattr(paired_data, "speak", lambda text, path, *a: spoken.append(text) or speak(text, path, *a))
    rows = build(tmp_path / "one", utts)
    assert spoken == ["Where is it?"] and [r["id"] for r in rows] == [r["id"] for r in first]


def test_read_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="units data"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('not json\n{"id": "a", "text": "t", "wav": "w", "split": "train"}\n')
    with pytest.raises(ValueError, match="manifest.jsonl:1: not a JSON line"):
        read_manifest(tmp_path)


def naive_logmel(wav: np.ndarray) -> np.ndarray:
    """Frame by frame: reflect-pad, Hann window, |rfft|, mel filters, log."""
    n_fft, hop = MEL["n_fft"], MEL["hop_length"]
    padded = np.pad(wav.astype(np.float64), n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    filters = LogMel(**MEL).filters.double().numpy()
    frames = [np.abs(np.fft.rfft(padded[s:s + n_fft] * window)) for s in range(0, len(padded) - n_fft + 1, hop)]
    return np.log(np.maximum(np.stack(frames) @ filters, MEL["log_floor"]))


def test_logmel_matches_naive_frames():
    wav = np.random.default_rng(0).standard_normal(5000).astype(np.float32) * 0.1
    got = LogMel(**MEL)(torch.from_numpy(wav)).double().numpy()
    assert got.shape == (5000 // 320 + 1, 80)
    np.testing.assert_allclose(got, naive_logmel(wav), atol=1e-3)


def test_kmeans_assignments_match_brute_force_and_find_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2, generator=gen) for c in centres])
    found, msd = kmeans(x, 3, iters=10, seed=1, chunk=7)
    assert msd < 0.05
    assert torch.cdist(centres, found).min(1).values.max() < 0.1
    brute = torch.tensor([min(range(3), key=lambda j: float(((p - found[j]) ** 2).sum())) for p in x])
    assert torch.equal(torch.cdist(x, found).argmin(1), brute)
    with pytest.raises(ValueError, match="at least K=5"):
        kmeans(x[:4], 5)


@pytest.fixture(scope="module")
def tone_units():
    wavs = [tone(0.6, freq=f) for f in (200.0, 900.0, 2500.0)]
    return wavs, LogMelUnitExtractor.fit(wavs, k=4, iters=5, info={"data": "tones"})


def test_units_fit_save_load(tone_units, tmp_path):
    wavs, ext = tone_units
    ids = [ext(w) for w in wavs]
    assert all(len(u) == len(w) // 320 + 1 for u, w in zip(ids, wavs))
    mains = [int(u[5:-5].mode().values) for u in ids]
    assert len(set(mains)) == 3  # each tone its own unit
    loaded = LogMelUnitExtractor.from_pretrained(ext.save_pretrained(tmp_path / "units"))
    assert loaded.num_units == 4 and loaded.info["data"] == "tones" and loaded.info["fit"]["k"] == 4
    assert all(torch.equal(loaded(w), u) for w, u in zip(wavs, ids))
    with pytest.raises(FileNotFoundError, match="units fit"):
        LogMelUnitExtractor.from_pretrained(tmp_path)


def test_griffin_lim_recovers_a_tone(tone_units):
    wav = torch.from_numpy(tone(0.4, freq=440.0))
    logmel = LogMel(**MEL)
    mag = logmel.magnitude(wav)
    out = griffin_lim(mag, 1024, 320, 1024, iters=30)
    assert out.shape == ((mag.shape[1] - 1) * 320,)
    rebuilt = logmel.magnitude(out)
    assert (torch.linalg.norm(rebuilt - mag) / torch.linalg.norm(mag)) < 0.2
    _, ext = tone_units
    audio = CodebookGriffinLim(ext, iters=5)(ext(tone(0.3, freq=900.0)))
    assert audio.abs().max() == pytest.approx(0.9, abs=1e-4)
    with pytest.raises(ValueError, match="unit ids"):
        CodebookGriffinLim(ext)([7])


def test_vocoder_trainer_resume_continues_the_same_run(tone_units, tmp_path):
    wavs, ext = tone_units
    cfg = small_config(ext.num_units)
    cfg.update(upsample_initial_channel=16, embedding_dim=8, model_in_dim=8, resblock_kernel_sizes=[3],
               resblock_dilation_sizes=[[1, 3]], dur_predictor_params={**cfg["dur_predictor_params"],
                                                                       "encoder_embed_dim": 8,
                                                                       "var_pred_hidden_dim": 8})
    tc = VocoderTrainConfig(steps=3, batch_size=2, segment_frames=8, log_every=1, save_every=100)
    straight = VocoderTrainer(tmp_path / "a", ext, wavs, tc, cfg)
    straight.train()
    VocoderTrainer(tmp_path / "b", ext, wavs, tc, cfg).train(until_step=1)
    resumed = VocoderTrainer(tmp_path / "b", ext, wavs, tc, cfg)
    assert resumed.step == 1
    out = resumed.train()
    for key, value in straight.vocoder.state_dict().items():
        assert torch.allclose(value, resumed.vocoder.state_dict()[key], atol=1e-6), key
    rows = (tmp_path / "b" / "progress.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "1", "2", "3"]
    from ttt_omni.speech.vocoder import UnitVocoder

    vocoder = UnitVocoder.from_pretrained(out)
    assert vocoder.config["trained"]["steps"] == 3 and vocoder.config["trained"]["cpu_s"] > 0
    assert len(vocoder(ext(wavs[0])[:10], dur_prediction=False)) == 10 * 320
    dedup, counts = run_lengths(torch.tensor([3, 3, 1, 1, 1, 3]))
    assert dedup.tolist() == [3, 1, 3] and counts.tolist() == [2, 3, 1]


def test_units_cli(tmp_path, capsys):
    rows = []
    for n, f in enumerate((300.0, 1200.0, 3000.0)):
        save_wav(tmp_path / f"{n}.wav", tone(1.4, freq=f))
        rows.append({"id": str(n), "text": "t", "wav": f"{n}.wav", "split": "train", "duration_s": 1.4})
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["units", "fit", str(tmp_path), "--out", str(tmp_path / "u"), "-k", "3", "--iters", "3"]) == 0
    assert main(["units", "extract", str(tmp_path / "u"), "--manifest", str(tmp_path), "--dedup"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [o["id"] for o in out] == ["0", "1", "2"] and all(len(o["units"]) <= 3 for o in out)
    assert main(["units", "resynth", str(tmp_path / "u"), "--wav", str(tmp_path / "0.wav"),
                 "--out", str(tmp_path / "r.wav")]) == 0
    assert math.isclose((tmp_path / "r.wav").stat().st_size, 44 + 2 * 70 * 320, abs_tol=2)
    assert main(["units", "mel", str(tmp_path), "--units", str(tmp_path / "u"), "--out", str(tmp_path / "m"),
                 "--steps", "2"]) == 0
    assert main(["units", "vocoder", str(tmp_path), "--units", str(tmp_path / "u"), "--run", str(tmp_path / "run"),
                 "--steps", "1", "--batch-size", "1"]) == 0
    for extra in (["--mel", str(tmp_path / "m")], ["--vocoder", str(tmp_path / "run" / "vocoder")]):
        assert main(["units", "resynth", str(tmp_path / "u"), "--wav", str(tmp_path / "1.wav"),
                     "--out", str(tmp_path / "r2.wav"), *extra]) == 0
    assert main(["units", "fit", str(tmp_path / "missing"), "--out", str(tmp_path / "v")]) == 2
    assert "speech manifest not found" in capsys.readouterr().err


def test_unit_mel_regressor_starts_at_the_codebook_and_learns(tone_units, tmp_path):
    from ttt_omni.speech.unit_mel import UnitMelRegressor, train_unit_mel

    t = np.arange(16000) / 16000  # two 1 s sweeps: 4 units cannot follow them, context can
    wavs = [(0.3 * np.sin(2 * np.pi * (f0 + 1500 * t) * t)).astype(np.float32) for f0 in (200, 400)]
    ext = LogMelUnitExtractor.fit(wavs, k=4, iters=5)
    units = ext(wavs[1])
    fresh = UnitMelRegressor(ext.centroids)
    assert torch.equal(fresh(units), ext.centroids[units])  # zero correction: the reference row exactly
    model, record = train_unit_mel(ext, wavs, steps=30, batch_size=4, segment_frames=16)
    assert record["final_l1"] < record["first_l1"]
    loaded = UnitMelRegressor.from_pretrained(model.save_pretrained(tmp_path / "mel", {"trained": record}))
    assert torch.allclose(loaded(units), model(units))
    audio = CodebookGriffinLim(ext, iters=3, regressor=loaded)(units)
    assert audio.shape == ((len(units) - 1) * 320,)
