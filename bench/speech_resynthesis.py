"""Resynthesis WER: held-out speech -> units -> audio again -> Whisper-base (evalsuite.asr), against the original.

    python bench/speech_resynthesis.py --manifest /work/runs/speech/data --units /work/runs/speech/units-k500 \
        [--vocoder /work/runs/speech/vocoder/vocoder] [--n 30]

Rows (each on the first N held-out utterances of the manifest, i.e. eval-book sentences never used for fitting):
  original          the TTS audio itself (the ceiling)
  mel+griffin-lim   the audio's own log-mel -> Griffin-Lim (the ceiling of any mel + Griffin-Lim vocoder)
  units+griffin-lim units -> each unit's mean log-mel (its centroid) -> Griffin-Lim (the reference vocoder)
  units+mel-regression  units -> log-mel predicted from the units around each frame -> Griffin-Lim (--mel)
  units+vocoder     units -> the trained unit HiFi-GAN, one unit per 20 ms frame (--vocoder)
  dedup+vocoder     repeats merged, lengths from the vocoder's duration predictor (the speech decoder's path)
WER is Whisper-normalized (evalsuite.metrics.wer): mean per utterance and corpus. Prints a table, writes JSON
(default bench/out/speech_resynthesis.json) and keeps the audio under --audio-dir.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True)
    p.add_argument("--units", required=True)
    p.add_argument("--vocoder", help="trained vocoder directory (g_* + config.json)")
    p.add_argument("--mel", help="mel regressor directory (`ttt-omni units mel`): row units+mel-regression")
    p.add_argument("--n", type=int, default=30, help="held-out utterances (default 30)")
    p.add_argument("--griffin-lim-iters", type=int, default=60)
    p.add_argument("--audio-dir", default="bench/out/speech_resynthesis")
    p.add_argument("--json", default="bench/out/speech_resynthesis.json")
    p.add_argument("--systems", help="comma-separated rows to run (default: all that apply)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from evalsuite.asr import load_asr
    from evalsuite.metrics.wer import corpus_wer, mean_utterance_wer, utterance_errors
    from ttt_omni.speech.audio import load_wav, save_wav
    from ttt_omni.speech.griffin_lim import CodebookGriffinLim, griffin_lim
    from ttt_omni.speech.logmel_units import LogMelUnitExtractor
    from ttt_omni.speech.paired_data import read_manifest
    from ttt_omni.speech.unit_mel import UnitMelRegressor
    from ttt_omni.speech.vocoder import UnitVocoder
    from ttt_omni.speech.vocoder_train import run_lengths

    rows = [r for r in read_manifest(args.manifest) if r["split"] == "heldout"][:args.n]
    if not rows:
        raise SystemExit(f"{args.manifest}: no held-out utterances")
    ext = LogMelUnitExtractor.from_pretrained(args.units)
    codebook = CodebookGriffinLim(ext, args.griffin_lim_iters)
    vocoder = UnitVocoder.from_pretrained(args.vocoder) if args.vocoder else None
    cfg = ext.mel_config

    def oracle(wav):
        mag = ext.logmel.magnitude(torch.from_numpy(wav))
        out = griffin_lim(mag, cfg["n_fft"], cfg["hop_length"], cfg["win_length"], args.griffin_lim_iters)
        return 0.9 * out / out.abs().max().clamp(min=1e-8)

    systems = {"original": None, "mel+griffin-lim": oracle, "units+griffin-lim": lambda wav: codebook(ext(wav))}
    if args.mel:
        regressed = CodebookGriffinLim(ext, args.griffin_lim_iters, UnitMelRegressor.from_pretrained(args.mel))
        systems["units+mel-regression"] = lambda wav: regressed(ext(wav))
    if vocoder is not None:
        systems["units+vocoder"] = lambda wav: vocoder(ext(wav), dur_prediction=False)
        systems["dedup+vocoder"] = lambda wav: vocoder(run_lengths(ext(wav))[0], dur_prediction=True)
    if args.systems:
        wanted = args.systems.split(",")
        unknown = set(wanted) - set(systems)
        if unknown:
            raise SystemExit(f"--systems: {sorted(unknown)} not available; expected some of {sorted(systems)}")
        systems = {k: v for k, v in systems.items() if k in wanted}
    asr = load_asr("faster-whisper")
    audio_dir = Path(args.audio_dir)
    results, samples = {}, []
    for name, synth in systems.items():
        errors, seconds, t0 = [], 0.0, time.process_time()
        for r in rows:
            wav = load_wav(r["wav_path"])
            if synth is None:
                path = r["wav_path"]
            else:
                with torch.no_grad():
                    out = synth(wav).numpy()
                path = save_wav(audio_dir / name / f"{r['id']}.wav", out)
                seconds += len(out) / 16000
            hyp = asr.transcribe(path).text
            errors.append(utterance_errors(r["text"], hyp))
            samples.append({"system": name, "id": r["id"], "text": r["text"], "asr": hyp, "wer": errors[-1].wer})
        results[name] = {"wer_mean": round(mean_utterance_wer(errors), 4), "wer_corpus": round(corpus_wer(errors), 4),
                         "n": len(errors), "audio_s": round(seconds, 1),
                         "cpu_s": round(time.process_time() - t0, 1)}
        print(f"{name:18s} wer_mean {results[name]['wer_mean']:.3f}  wer_corpus {results[name]['wer_corpus']:.3f}",
              flush=True)
    print(f"\n| system | WER mean | WER corpus | n |\n| --- | --- | --- | --- |")
    for name, res in results.items():
        print(f"| {name} | {res['wer_mean']:.3f} | {res['wer_corpus']:.3f} | {res['n']} |")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"manifest": args.manifest, "units": args.units, "units_info": ext.info,
                               "vocoder": args.vocoder, "mel": args.mel,
                               "vocoder_trained": vocoder.config.get("trained") if vocoder else None,
                               "asr": asr.name, "results": results, "samples": samples,
                               "machine": platform.platform()}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
