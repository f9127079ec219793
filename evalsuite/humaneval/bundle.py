"""Blind pair bundles: export from system outputs, read back for serving (no identity) or for scoring (the key).

A bundle directory holds only what raters may see:

    bundle.json          {"format", "bundle_id", "task", "n_pairs"}
    items.jsonl          one pair a line: {"pair_id", "prompt", "left": {"text", "audio"}, "right": {...}}
    audio/<hex>.wav      audio under opaque names ("audio" in items is the hex id, or null), re-encoded as plain
                         PCM WAV (a RIFF header, `fmt `, `data`: no LIST/INFO or other metadata of the source)
    export/pairs.csv|jsonl   the same blind pairs for external tools (audio as relative paths)

The key (which side is which system, the secret, the sources) is written apart, to BUNDLE/key/ by default or to
--key-out; the rater server never reads it. Which prompts are drawn, each pair's sides, every pair id and audio name
and the order of items are keyed hashes (HMAC-SHA256) of the key's 256-bit secret: without the key nothing about a
bundle can be predicted or unblinded (a seeded random stream could be, from its seed or from enough of the ids it
gave out), and with it the same inputs give a byte-identical bundle. All audio in a bundle must share one format
(channels, sample width, rate), or a rater could tell the systems apart by it.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import itertools
import json
import re
import secrets
import wave
from dataclasses import dataclass
from pathlib import Path

from ttt_omni.atomic import replacing_dir, write_text

from ..errors import EvalsuiteError

FORMAT = 1
ID_HEX = 24  # 96-bit ids
SECRET_RE = re.compile(r"^[0-9a-f]{32,}$")  # at least 128 bits, hex


class BundleError(EvalsuiteError, ValueError):
    """Bad export input or an unreadable bundle; the message names the input and what was expected."""


@dataclass(frozen=True)
class Output:
    """One system's output for one prompt."""

    prompt_id: str
    prompt: str
    text: str
    audio: Path | None = None


def read_outputs_jsonl(path: Path) -> dict[str, Output]:
    """Read one system's outputs: each line {"prompt_id", "prompt", "text", "audio"?}; audio relative to the file."""
    if not path.is_file():
        raise BundleError(f"{path}: no such file (expected a JSONL of system outputs)")
    out: dict[str, Output] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise BundleError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise BundleError(f"{where}: expected a JSON object with prompt_id, prompt, text")
            for field in ("prompt_id", "prompt", "text"):
                if not isinstance(rec.get(field), (str, int)) or isinstance(rec.get(field), bool):
                    raise BundleError(f"{where}: field {field!r} missing or not a string")
            pid = str(rec["prompt_id"])
            if pid in out:
                raise BundleError(f"{where}: prompt_id {pid!r} appears twice")
            audio = rec.get("audio")
            if audio is not None:
                if not isinstance(audio, str) or not audio:
                    raise BundleError(f"{where}: field 'audio' must be a path string or absent")
                audio = (path.parent / audio).resolve()
            out[pid] = Output(pid, str(rec["prompt"]), str(rec["text"]), audio)
    if not out:
        raise BundleError(f"{path}: no outputs in file")
    return out


def plain_pcm(path: Path) -> tuple[bytes, tuple[int, int, int]]:
    """The WAV's samples re-encoded as a minimal PCM WAV (RIFF, fmt, data; nothing else), and its (channels, sample
    width in bytes, rate)."""
    if not path.is_file():
        raise BundleError(f"{path}: audio file not found")
    try:
        with wave.open(str(path), "rb") as w:
            fmt = (w.getnchannels(), w.getsampwidth(), w.getframerate())
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise BundleError(f"{path}: expected a PCM WAV file ({e}); convert other formats to WAV first") from None
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(fmt[0])
        out.setsampwidth(fmt[1])
        out.setframerate(fmt[2])
        out.writeframes(frames)
    return buf.getvalue(), fmt


def new_secret() -> str:
    """A fresh 256-bit secret for a bundle's key."""
    return secrets.token_hex(32)


def _keyed(secret: bytes, *parts: object) -> bytes:
    return hmac.new(secret, "\0".join(map(str, parts)).encode(), hashlib.sha256).digest()


def _jsonl(rows) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def export_bundle(
    outputs: dict[str, dict[str, Output]],
    task: str,
    n: int,
    secret: str,
    out_dir: Path,
    key_out: Path | None = None,
    sources: dict[str, str] | None = None,
    checkpoints: dict[str, str] | None = None,
) -> dict:
    """Write a bundle of n prompts x every pair of systems; return the key.

    `outputs` maps system name -> prompt_id -> Output. Prompts present for every system are candidates. `secret`
    (hex, at least 128 bits; `new_secret()`, or the `secret` of an earlier key to rebuild its bundle) keys every
    choice: which n prompts, each pair's sides, every pair id and audio name, the order of items. The bundle is
    built in a temporary directory and renamed into place, so a failed export leaves nothing behind and an existing
    bundle is never overwritten. `checkpoints` (system -> content hash) binds systems to the checkpoints that
    produced their outputs; the key records it for the human_pref run (see results.write_rows).
    """
    systems = list(outputs)
    if len(systems) < 2 or len(set(systems)) != len(systems):
        raise BundleError(f"systems: need at least two distinct systems, got {systems}")
    if not task:
        raise BundleError("task: expected a task name")
    if not isinstance(secret, str) or not SECRET_RE.match(secret):
        raise BundleError("secret: expected at least 32 lowercase hex digits (128 bits; new_secret() makes one): a "
                          "short or guessable secret would let anyone who knows it unblind the bundle")
    common = sorted(set.intersection(*(set(o) for o in outputs.values())))
    if n < 1 or n > len(common):
        raise BundleError(f"number of prompts: expected 1..{len(common)} (prompts that every system answered), got {n}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise BundleError(f"{out_dir}: already exists and is not empty (a bundle is never overwritten)")
    key_path = Path(key_out) if key_out else out_dir / "key" / "key.json"
    if key_out and key_path.exists():
        raise BundleError(f"{key_path}: key file already exists (choose a new key path)")

    key_bytes = bytes.fromhex(secret)
    chosen = sorted(sorted(common, key=lambda pid: _keyed(key_bytes, "prompt", pid))[:n])
    audio: dict[Path, bytes] = {}
    formats: dict[tuple, Path] = {}
    for pid in chosen:
        prompts = {outputs[s][pid].prompt for s in systems}
        if len(prompts) != 1:
            raise BundleError(f"prompt_id {pid!r}: the systems' prompt texts differ (a pair needs the same prompt)")
        for s in systems:
            src = outputs[s][pid].audio
            if src is not None and src not in audio:
                audio[src], fmt = plain_pcm(src)
                formats.setdefault(fmt, src)
    if len(formats) > 1:
        shown = "; ".join(f"{src}: {c} channel(s), {8 * w}-bit, {r} Hz" for (c, w, r), src in formats.items())
        raise BundleError(f"audio: the files differ in format ({shown}); a rater could tell the systems apart by it, "
                          "so convert them to one format first")

    items, key_pairs, copies = [], {}, []
    for pid in chosen:
        for a, b in itertools.combinations(systems, 2):
            left, right = (a, b) if _keyed(key_bytes, "side", pid, a, b)[0] & 1 else (b, a)
            pair_id = _keyed(key_bytes, "pair", pid, a, b).hex()[:ID_HEX]
            sides, key_sides = {}, {}
            for side, system in (("left", left), ("right", right)):
                o = outputs[system][pid]
                audio_id = None
                if o.audio is not None:
                    audio_id = _keyed(key_bytes, "audio", pair_id, side).hex()[:ID_HEX]
                    copies.append((audio[o.audio], f"{audio_id}.wav"))
                sides[side] = {"text": o.text, "audio": audio_id}
                key_sides[side] = {"system": system, "audio_source": str(o.audio) if o.audio else None}
            items.append({"pair_id": pair_id, "prompt": outputs[a][pid].prompt, **sides})
            key_pairs[pair_id] = {"prompt_id": pid, **key_sides}
    items.sort(key=lambda it: _keyed(key_bytes, "order", it["pair_id"]))

    items_text = _jsonl(items)
    bundle_id = hashlib.sha256(items_text.encode()).hexdigest()[:16]
    meta = {"format": FORMAT, "bundle_id": bundle_id, "task": task, "n_pairs": len(items)}
    key = {
        "format": FORMAT,
        "bundle_id": bundle_id,
        "task": task,
        "secret": secret,
        "n_prompts": n,
        "systems": systems,
        "sources": sources or {},
        "checkpoints": checkpoints or {},
        "pairs": key_pairs,
    }

    with replacing_dir(out_dir, overwrite=False) as tmp:
        (tmp / "audio").mkdir()
        for data, name in copies:
            (tmp / "audio" / name).write_bytes(data)
        (tmp / "items.jsonl").write_text(items_text, encoding="utf-8")
        (tmp / "bundle.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        _write_external_exports(tmp / "export", items)
        if not key_out:
            (tmp / "key").mkdir()
            (tmp / "key" / "key.json").write_text(json.dumps(key, indent=2, sort_keys=True) + "\n")
            (tmp / "key" / "key.csv").write_text(_key_csv(key))
    if key_out:
        write_text(key_path, json.dumps(key, indent=2, sort_keys=True) + "\n")
        write_text(key_path.with_suffix(".csv"), _key_csv(key))
    return key


def _write_external_exports(folder: Path, items: list[dict]) -> None:
    """Blind copies of the pairs for external rating tools (same ids; audio as paths relative to the bundle)."""
    rows = []
    for it in items:
        row = {"pair_id": it["pair_id"], "prompt": it["prompt"]}
        for side in ("left", "right"):
            row[f"{side}_text"] = it[side]["text"]
            row[f"{side}_audio"] = f"audio/{it[side]['audio']}.wav" if it[side]["audio"] else ""
        rows.append(row)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pairs.jsonl").write_text(_jsonl(rows), encoding="utf-8")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    (folder / "pairs.csv").write_text(buf.getvalue(), encoding="utf-8")


def _key_csv(key: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["pair_id", "prompt_id", "left_system", "right_system"])
    for pid, p in sorted(key["pairs"].items()):
        w.writerow([pid, p["prompt_id"], p["left"]["system"], p["right"]["system"]])
    return buf.getvalue()


@dataclass(frozen=True)
class ServedBundle:
    """What the rater server may know: ids, prompts, texts, opaque audio ids. No system identity."""

    root: Path
    bundle_id: str
    task: str
    items: dict[str, dict]

    def audio_path(self, audio_id: str) -> Path:
        return self.root / "audio" / f"{audio_id}.wav"


def load_served(root: Path) -> ServedBundle:
    root = Path(root)
    meta_path = root / "bundle.json"
    if not meta_path.is_file():
        raise BundleError(f"{root}: not a pair bundle (no bundle.json; create one with `evalsuite pairs export`)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        items = {}
        for line in (root / "items.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                it = json.loads(line)
                items[it["pair_id"]] = it
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise BundleError(f"{root}: unreadable bundle ({e})") from None
    if meta.get("format") != FORMAT or len(items) != meta.get("n_pairs"):
        raise BundleError(f"{root}/bundle.json: expected format {FORMAT} with n_pairs matching items.jsonl")
    return ServedBundle(root, meta["bundle_id"], meta["task"], items)


def load_key(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "key" / "key.json"
    if not path.is_file():
        raise BundleError(f"{path}: key file not found (expected the key.json written by `pairs export`)")
    try:
        key = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: not a pair key file ({e})") from None
    if not isinstance(key, dict) or not all(k in key for k in ("pairs", "systems", "bundle_id")):
        raise BundleError(f"{path}: not a pair key file (expected pairs, systems, bundle_id)")
    return key
