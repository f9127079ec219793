"""`ttt-omni units data | fit | extract | vocoder | mel | resynth`: speech units made here, with no hub weights.

  data     paired speech: book sentences (train books -> split train, eval books -> split heldout) spoken by an
           offline TTS voice, with manifest.jsonl (resumable, deterministic)
  fit      log-mel k-means units fitted on the manifest's train split -> a units directory
  extract  unit ids of WAV files (or of a manifest's utterances) as JSON lines
  vocoder  train (or resume) the unit HiFi-GAN on the train split's speech and its units
  mel      train the mel regressor (units with context -> log-mel; Griffin-Lim makes the audio)
  resynth  WAV -> units -> audio again (the trained vocoder, or the codebook + Griffin-Lim reference)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("units", help="speech units fitted here: paired TTS data, k-means units, vocoder",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="units_command", metavar="ACTION", required=True)

    d = sub.add_parser("data", help="speak book sentences (and reply texts) into OUT with a manifest")
    d.add_argument("out", help="output directory (manifest.jsonl, wav/)")
    d.add_argument("--voice", default="espeak:en-us", help="espeak:VOICE or piper:MODEL.onnx (default espeak:en-us)")
    d.add_argument("--rate", type=int, default=160, help="words per minute (default 160)")
    d.add_argument("--per-train-book", type=int, default=20, help="sentences per train book (default 20)")
    d.add_argument("--per-eval-book", type=int, default=6, help="held-out sentences per eval book (default 6)")
    d.add_argument("--replies", help="text file of reply texts, one per line (split train)")
    d.set_defaults(func=run_data)

    f = sub.add_parser("fit", help="fit log-mel k-means units on a manifest's train split")
    f.add_argument("manifest", help="manifest.jsonl or its directory")
    f.add_argument("--out", required=True, help="units directory to write (config.json, centroids.safetensors)")
    f.add_argument("-k", "--units", type=int, default=500, help="number of units K (default 500)")
    f.add_argument("--iters", type=int, default=20, help="k-means iterations (default 20)")
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=run_fit)

    e = sub.add_parser("extract", help="unit ids of WAV files or of a manifest's utterances (JSON lines)")
    e.add_argument("units_dir", help="a units directory from `units fit`")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--wav", nargs="+", help="WAV files")
    src.add_argument("--manifest", help="manifest.jsonl (or its directory): every utterance")
    e.add_argument("--dedup", action="store_true", help="merge repeated units (the speech decoder's targets)")
    e.add_argument("--out", help="write the JSON lines here (default stdout)")
    e.set_defaults(func=run_extract)

    v = sub.add_parser("vocoder", help="train (or resume) the unit HiFi-GAN on the train split")
    v.add_argument("manifest", help="manifest.jsonl or its directory")
    v.add_argument("--units", required=True, help="units directory from `units fit`")
    v.add_argument("--run", required=True, help="run directory (state.pt, progress.csv, vocoder/); resumed if present")
    v.add_argument("--steps", type=int, default=2000, help="train until this step (default 2000)")
    v.add_argument("--max-cpu-minutes", type=float, help="stop after this much more CPU time (resume later)")
    v.add_argument("--batch-size", type=int, default=8)
    v.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate (default 2e-4; a resumed run keeps its own)")
    v.set_defaults(func=run_vocoder)

    m = sub.add_parser("mel", help="train the unit -> log-mel regressor (a Griffin-Lim vocoder front end)")
    m.add_argument("manifest", help="manifest.jsonl or its directory")
    m.add_argument("--units", required=True, help="units directory from `units fit`")
    m.add_argument("--out", required=True, help="directory to write (config.json, unit_mel.safetensors)")
    m.add_argument("--steps", type=int, default=600, help="training steps (default 600)")
    m.set_defaults(func=run_mel)

    r = sub.add_parser("resynth", help="WAV -> units -> audio (trained vocoder, or codebook + Griffin-Lim)")
    r.add_argument("units_dir")
    r.add_argument("--wav", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--vocoder", help="vocoder directory (g_* + config.json); default: codebook + Griffin-Lim")
    r.add_argument("--mel", help="mel regressor directory from `units mel` (Griffin-Lim on its log-mels)")
    r.set_defaults(func=run_resynth)


def _progress(n: int, total: int, label: str) -> None:
    print(f"\r{n}/{total} {label}"[:100], end="\n" if n == total else "", file=sys.stderr, flush=True)


def run_data(args: argparse.Namespace) -> int:
    from ttt_omni.speech.paired_data import build, select

    replies = []
    if args.replies:
        path = Path(args.replies)
        if not path.is_file():
            raise FileNotFoundError(f"--replies file not found: {path}")
        replies = path.read_text(encoding="utf-8").splitlines()
    if args.per_train_book < 0 or args.per_eval_book < 0 or args.rate <= 0:
        raise ValueError("--per-train-book and --per-eval-book must be >= 0 and --rate > 0")
    utterances = select(args.per_train_book, args.per_eval_book, replies)
    rows = build(args.out, utterances, args.voice, args.rate,
                 progress=lambda n, total, row: _progress(n, total, row["text"]))
    for split in ("train", "heldout"):
        part = [r for r in rows if r["split"] == split]
        print(f"{split}: {len(part)} utterances, {sum(r['duration_s'] for r in part) / 60:.1f} min")
    print(f"manifest: {Path(args.out) / 'manifest.jsonl'}")
    return 0


def _split_wavs(manifest: str, split: str):
    from ttt_omni.speech.audio import load_wav
    from ttt_omni.speech.paired_data import read_manifest

    rows = [r for r in read_manifest(manifest) if r["split"] == split]
    if not rows:
        raise ValueError(f"{manifest}: no utterances in split {split!r}")
    return rows, [load_wav(r["wav_path"]) for r in rows]


def run_fit(args: argparse.Namespace) -> int:
    from ttt_omni.speech.logmel_units import LogMelUnitExtractor

    if args.units < 2 or args.iters < 0:
        raise ValueError(f"-k must be >= 2 and --iters >= 0, got {args.units} and {args.iters}")
    rows, wavs = _split_wavs(args.manifest, "train")
    info = {"data": {"manifest": str(args.manifest), "utterances": len(rows),
                     "voices": sorted({r.get("voice", "?") for r in rows})}}
    extractor = LogMelUnitExtractor.fit(wavs, args.units, args.iters, args.seed, info=info)
    extractor.save_pretrained(args.out)
    print(f"units: {args.out} ({json.dumps(extractor.info['fit'])})")
    return 0


def run_extract(args: argparse.Namespace) -> int:
    from ttt_omni.speech.audio import load_wav
    from ttt_omni.speech.logmel_units import LogMelUnitExtractor
    from ttt_omni.speech.paired_data import read_manifest
    from ttt_omni.speech.vocoder_train import run_lengths

    extractor = LogMelUnitExtractor.from_pretrained(args.units_dir)
    items = ([(r["id"], r["wav_path"]) for r in read_manifest(args.manifest)] if args.manifest
             else [(w, w) for w in args.wav])
    lines = []
    for key, wav in items:
        units = extractor(load_wav(wav))
        if args.dedup:
            units = run_lengths(units)[0]
        lines.append(json.dumps({"id": key, "units": units.tolist()}))
    text = "".join(line + "\n" for line in lines)
    if args.out:
        from ttt_omni.atomic import write_text

        write_text(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


def run_vocoder(args: argparse.Namespace) -> int:
    from ttt_omni.speech.logmel_units import LogMelUnitExtractor
    from ttt_omni.speech.vocoder_train import VocoderTrainConfig, VocoderTrainer

    extractor = LogMelUnitExtractor.from_pretrained(args.units)
    rows, wavs = _split_wavs(args.manifest, "train")
    info = {"data": {"manifest": str(args.manifest), "utterances": len(rows),
                     "speech_min": round(sum(r["duration_s"] for r in rows) / 60, 1)},
            "units": str(args.units)}
    trainer = VocoderTrainer(args.run, extractor, wavs, VocoderTrainConfig(steps=args.steps,
                                                                           batch_size=args.batch_size, lr=args.lr), info=info)
    print(f"vocoder run {args.run}: step {trainer.step}, {trainer.cpu_s:.0f} CPU s so far", file=sys.stderr)
    max_cpu = None if args.max_cpu_minutes is None else 60 * args.max_cpu_minutes
    out = trainer.train(max_cpu_s=max_cpu, progress=lambda row: _progress(
        row["step"], args.steps, f"loss {row['loss']:.3f} mel {row['mel_l1']:.3f} cpu {row['cpu_s']:.0f}s"))
    print(f"\nvocoder: {out} (step {trainer.step}, {trainer.cpu_s:.0f} CPU s)")
    return 0


def run_mel(args: argparse.Namespace) -> int:
    from ttt_omni.speech.logmel_units import LogMelUnitExtractor
    from ttt_omni.speech.unit_mel import train_unit_mel

    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    extractor = LogMelUnitExtractor.from_pretrained(args.units)
    rows, wavs = _split_wavs(args.manifest, "train")
    model, record = train_unit_mel(extractor, wavs, args.steps,
                                   progress=lambda step, l1: _progress(step, args.steps, f"L1 {l1:.4f}"))
    model.save_pretrained(args.out, {"trained": {**record, "manifest": str(args.manifest), "units": str(args.units)}})
    print(f"mel regressor: {args.out} ({json.dumps(record)})")
    return 0


def run_resynth(args: argparse.Namespace) -> int:
    from ttt_omni.speech.audio import load_wav, save_wav
    from ttt_omni.speech.griffin_lim import CodebookGriffinLim
    from ttt_omni.speech.logmel_units import LogMelUnitExtractor
    from ttt_omni.speech.unit_mel import UnitMelRegressor
    from ttt_omni.speech.vocoder import UnitVocoder

    if args.vocoder and args.mel:
        raise ValueError("give --vocoder or --mel, not both")
    extractor = LogMelUnitExtractor.from_pretrained(args.units_dir)
    units = extractor(load_wav(args.wav))
    if args.vocoder:
        import torch

        with torch.no_grad():
            audio = UnitVocoder.from_pretrained(args.vocoder)(units, dur_prediction=False)
    else:
        regressor = UnitMelRegressor.from_pretrained(args.mel) if args.mel else None
        audio = CodebookGriffinLim(extractor, regressor=regressor)(units)
    save_wav(args.out, audio.numpy())
    print(f"{args.out}: {len(units)} units -> {len(audio) / 16000:.2f} s")
    return 0
