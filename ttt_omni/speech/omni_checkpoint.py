"""LLaMA-Omni checkpoint directories: load into `OmniSpeechTTT`, save in the same layout, convert to TTT.

The layout (ictnlp/LLaMA-Omni, `OmniSpeech2SLlamaForCausalLM`):
  config.json   a LlamaConfig (`model_type` "omni_speech2s_llama") plus `speech_encoder` (path of an openai-whisper
                .pt), `speech_encoder_type` "whisper", `speech_projector_type` "linear", `speech_encoder_ds_rate`,
                `speech_encoder_hidden_size`, `speech_generator_type` "ctc", `ctc_decoder_config`,
                `ctc_upsample_factor`, `ctc_loss_weight`, `unit_vocab_size`
  weights       model.embed_tokens / model.layers.N.* / model.norm / lm_head (the Llama LLM),
                model.speech_encoder.*   (openai-whisper encoder names: conv1, blocks.N.attn.query, ln_post, ...),
                model.speech_projector.linear1 / linear2,
                speech_generator.input_proj / layers.N.* (LlamaDecoderLayer) / output_proj
A converted directory (`ttt-omni convert`) is the same with `model_type` "ttt_llama" and TTT layers in place of the
top layers' attention; it also records the Whisper dims (`speech_encoder_config`) and holds the encoder weights
itself, so it never needs the `.pt` file again.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ttt_omni.atomic import replacing_dir
from ttt_omni.checkpoint_files import WEIGHTS_INDEX_NAME, WEIGHTS_NAME, load_weights, save_sharded, weight_files
from ttt_omni.convert import REPORT_NAME, convert_checkpoint, hybrid_config
from ttt_omni.models.configuration_ttt_llama import TTTLlamaConfig
from ttt_omni.models.modeling_ttt_llama import TTTLlamaForCausalLM

from .encoder import SpeechEncoder, dims_from_weights, hf_to_openai, load_speech_encoder, openai_to_hf, whisper_dims
from .model import OmniLLM, OmniSpeechTTT

ENCODER_PREFIX = "model.speech_encoder."
PROJECTOR_PREFIX = "model.speech_projector."
GENERATOR_PREFIX = "speech_generator."
# where the same tensors live in OmniSpeechTTT (the LLM's own names are the same in both, under `llm.`)
LLM_MODULE, ENCODER_MODULE = "llm.", "speech_encoder.encoder."
PROJECTOR_MODULE, GENERATOR_MODULE = "speech_projector.", "speech_generator."
ENCODER_FILE = "speech_encoder.safetensors"
VOCODER_DIR = "vocoder"  # LLaMA-Omni keeps no vocoder in its directory; ours may (MODEL/vocoder is chat's default)


def is_omni_checkpoint(path: str | os.PathLike) -> bool:
    """True for a LLaMA-Omni(-layout) checkpoint directory: its config names a speech encoder type."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        raw = json.loads(config.read_text())
    except json.JSONDecodeError:
        return False
    return "speech_encoder_type" in raw or str(raw.get("model_type", "")).startswith("omni_speech")


def _read_config(path: Path) -> dict:
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json; expected a LLaMA-Omni checkpoint directory")
    try:
        return json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path / 'config.json'} is not valid JSON: {e}") from None


def omni_config(path: Path) -> TTTLlamaConfig:
    """The checkpoint's config as a TTTLlamaConfig (a plain LLaMA-Omni LLM becomes a hybrid without TTT layers)."""
    raw = _read_config(path)
    if "speech_encoder_type" not in raw:
        raise ValueError(f"{path / 'config.json'} has no speech settings (speech_encoder_type, ...); expected a "
                         "LLaMA-Omni checkpoint")
    if raw.get("model_type") == TTTLlamaConfig.model_type:
        return TTTLlamaConfig.from_pretrained(str(path))
    return hybrid_config(raw, ttt_layers=[])


def speech_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Only the speech encoder / projector / generator tensors of the checkpoint (the LLM stays on disk)."""
    out = {}
    for file in weight_files(path):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                if key.startswith((ENCODER_PREFIX, PROJECTOR_PREFIX, GENERATOR_PREFIX)):
                    out[key] = f.get_tensor(key)
    return out


def _strip(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def resolve_encoder_path(value: str, checkpoint: Path) -> Path:
    """LLaMA-Omni's `speech_encoder` path: absolute, relative to the working directory, or to the checkpoint."""
    candidates = [Path(value)] if Path(value).is_absolute() else [Path.cwd() / value, checkpoint / value,
                                                                   checkpoint / Path(value).name]
    for c in candidates:
        if c.exists():
            return c
    raise FileNotFoundError(f"the speech encoder {value!r} named in {checkpoint / 'config.json'} was not found "
                            f"(tried {[str(c) for c in candidates]}); pass its path (e.g. large-v3.pt or a "
                            "transformers Whisper directory) as speech_encoder / --speech-encoder")


def _encoder(path: Path, config, tensors: dict, override) -> SpeechEncoder:
    frozen = not getattr(config, "tune_speech_encoder", False)
    if override is not None:
        return load_speech_encoder(override, frozen=frozen)
    state = _strip(tensors, ENCODER_PREFIX)
    if state:
        dims = getattr(config, "speech_encoder_config", None) or dims_from_weights(state)
        return SpeechEncoder.from_openai_state(state, dims, frozen=frozen)
    value = getattr(config, "speech_encoder", None)
    if not value:
        raise ValueError(f"{path} has no speech encoder weights and its config names no `speech_encoder`; pass one "
                         "as speech_encoder / --speech-encoder")
    return load_speech_encoder(resolve_encoder_path(value, path), frozen=frozen)


def load_omni(path: str | os.PathLike, speech_encoder: str | os.PathLike | None = None,
              dtype: torch.dtype | None = None, device: str | torch.device | None = None) -> OmniSpeechTTT:
    """A LLaMA-Omni checkpoint directory (original or converted) -> OmniSpeechTTT in eval mode.
    `speech_encoder` overrides where the Whisper encoder comes from (a .pt file or a Whisper directory)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {path} does not exist")
    config = omni_config(path)
    tensors = speech_tensors(path)
    encoder = _encoder(path, config, tensors, speech_encoder)
    llm = OmniLLM.from_pretrained(str(path), config=config, dtype=dtype or torch.float32)
    model = OmniSpeechTTT(config, encoder, llm)
    for prefix, module in ((PROJECTOR_PREFIX, model.speech_projector), (GENERATOR_PREFIX, model.speech_generator)):
        if module is None:
            continue
        state = _strip(tensors, prefix)
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path}: the {prefix.rstrip('.')} tensors do not match its config: missing "
                             f"{missing[:5]}, unexpected {unexpected[:5]}")
    if dtype is not None:
        for module in (model.speech_encoder, model.speech_projector, model.speech_generator):
            if module is not None:
                module.to(dtype)
    if device is not None:
        model.to(device)
    return model.eval()


def omni_state_dict(model: OmniSpeechTTT, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """All tensors under LLaMA-Omni's names. `state` is `model.state_dict()` (the default) or a full copy of it under
    the same names, e.g. gathered from FSDP shards."""
    state = model.state_dict() if state is None else state
    out = _strip(state, LLM_MODULE)
    if model.config.tie_word_embeddings:
        out.pop("lm_head.weight", None)
    out.update({ENCODER_PREFIX + k: v for k, v in hf_to_openai(_strip(state, ENCODER_MODULE)).items()})
    out.update({PROJECTOR_PREFIX + k: v for k, v in _strip(state, PROJECTOR_MODULE).items()})
    out.update({GENERATOR_PREFIX + k: v for k, v in _strip(state, GENERATOR_MODULE).items()})
    return {k: v.detach().cpu() for k, v in out.items()}


def load_omni_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a LLaMA-Omni-layout directory under `OmniSpeechTTT`'s own names (what `load_state_dict`
    takes, e.g. to resume training from a checkpoint that `save_omni` wrote): the inverse of `omni_state_dict`."""
    path = Path(path)
    tensors = load_weights(path)
    speech = (ENCODER_PREFIX, PROJECTOR_PREFIX, GENERATOR_PREFIX)
    llm = {k: v for k, v in tensors.items() if not k.startswith(speech)}
    if omni_config(path).tie_word_embeddings and "model.embed_tokens.weight" in llm:
        llm.setdefault("lm_head.weight", llm["model.embed_tokens.weight"])
    out = {LLM_MODULE + k: v for k, v in llm.items()}
    out.update({ENCODER_MODULE + k: v for k, v in openai_to_hf(_strip(tensors, ENCODER_PREFIX)).items()})
    out.update({PROJECTOR_MODULE + k: v for k, v in _strip(tensors, PROJECTOR_PREFIX).items()})
    out.update({GENERATOR_MODULE + k: v for k, v in _strip(tensors, GENERATOR_PREFIX).items()})
    return out


def save_omni(model: OmniSpeechTTT, path: str | os.PathLike, tokenizer=None,
              state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Writes `model` (and `tokenizer`) as a LLaMA-Omni-layout directory, atomically. `state_dict`: the weights to
    write instead of the model's own (a full copy under the model's names, e.g. gathered from FSDP shards)."""
    path = Path(path)
    with replacing_dir(path) as tmp:
        save_sharded(omni_state_dict(model, state_dict), tmp)
        model.config.architectures = [TTTLlamaForCausalLM.__name__]
        model.config.save_pretrained(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
    return path


# ---------------------------------------------------------------- conversion
def _add_weight_file(directory: Path, name: str, tensors: dict[str, torch.Tensor]) -> None:
    """Adds a safetensors file to a checkpoint directory and (re)writes the index to include it."""
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / name), metadata={"format": "pt"})
    index_path = directory / WEIGHTS_INDEX_NAME
    if index_path.is_file():
        index = json.loads(index_path.read_text())
    else:
        with safe_open(str(directory / WEIGHTS_NAME), framework="pt") as f:
            index = {"metadata": {}, "weight_map": dict.fromkeys(f.keys(), WEIGHTS_NAME)}
    index["weight_map"].update(dict.fromkeys(tensors, name))
    index_path.write_text(json.dumps(index, indent=2))


def convert_omni_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *,
                            speech_encoder: str | os.PathLike | None = None, **convert_kwargs):
    """LLaMA-Omni directory -> TTT version: `convert_checkpoint` for the LLM (the speech tensors are carried bit for
    bit), then the Whisper encoder is stored inside the output if the source only pointed at a `.pt` file, and the
    encoder dims are recorded. Written in a temporary sibling and renamed into place."""
    src, dst = Path(src), Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise FileExistsError(f"output {dst} already exists and is not an empty directory; choose a new path")
    config = omni_config(src)
    tensors = speech_tensors(src)
    for prefix in (PROJECTOR_PREFIX,) + ((GENERATOR_PREFIX,) if getattr(config, "speech_generator_type", None)
                                         else ()):
        if not _strip(tensors, prefix):
            raise ValueError(f"{src} has no {prefix}* tensors; expected a LLaMA-Omni checkpoint with its speech "
                             "projector and generator")
    encoder = _encoder(src, config, tensors, speech_encoder)
    with replacing_dir(dst, overwrite=False) as tmp:
        report = convert_checkpoint(src, tmp, **convert_kwargs)  # fills the (empty) temporary directory
        if speech_encoder is not None or not _strip(tensors, ENCODER_PREFIX):
            openai = hf_to_openai(encoder.encoder.state_dict())
            _add_weight_file(tmp, ENCODER_FILE, {ENCODER_PREFIX + k: v for k, v in openai.items()})
        out_config = json.loads((tmp / "config.json").read_text())
        out_config["speech_encoder_config"] = whisper_dims(encoder.config)
        out_config["speech_encoder_hidden_size"] = encoder.hidden_size
        (tmp / "config.json").write_text(json.dumps(out_config, indent=2, sort_keys=True))
        report_data = json.loads((tmp / REPORT_NAME).read_text())
        report_data["speech_encoder"] = ("stored from " + str(speech_encoder or config.speech_encoder)
                                         if (tmp / ENCODER_FILE).exists() else "carried from the source weights")
        if (src / VOCODER_DIR).is_dir():  # the unit vocoder that speaks the units goes along with the model
            shutil.copytree(src / VOCODER_DIR, tmp / VOCODER_DIR)
            report_data["files_copied"].append(f"{VOCODER_DIR}/")
            report.files_copied.append(f"{VOCODER_DIR}/")
        report_data["output"] = str(dst)
        (tmp / REPORT_NAME).write_text(json.dumps(report_data, indent=2))
    report.output = str(dst)
    return report


__all__ = ["is_omni_checkpoint", "load_omni", "save_omni", "convert_omni_checkpoint", "omni_state_dict",
           "load_omni_state", "speech_tensors"]
