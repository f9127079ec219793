"""The `ttt-omni` model for lm-eval: any evalsuite model spec, scored one document at a time with streaming passes.

lm-eval 0.4.13 has no plugin discovery for models, so this module must be imported before lm-eval looks the model
up. Three ways:
  * `evalsuite lm-eval --model ttt-omni --model_args pretrained=PATH --tasks ... [any lm_eval option]`
    (or `python -m evalsuite.lm_eval_adapter ...`): registers the model, then runs lm-eval's own CLI;
  * Python: `import evalsuite.lm_eval_adapter` then `lm_eval.simple_evaluate(model="ttt-omni", ...)`;
  * `evalsuite run --task lm_eval:NAME --model SPEC`, which stores the results like any evalsuite task.
`pretrained` is a path (a TTT-Llama or any HF causal LM directory) or a model spec (ttt:PATH, hf:PATH, tiny).
Requests are not batched: TTT layers cannot skip padding, and one sequence at a time keeps every pass exact.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from .metrics.ppl import token_scores
from .models import TINY_CHECKPOINTS, LoadedModel, load_model


def resolve_spec(pretrained: str) -> str:
    """A model spec from lm-eval's `pretrained=`: spec strings pass through; a directory becomes ttt: or hf:."""
    if pretrained in TINY_CHECKPOINTS or pretrained.startswith(("ttt:", "hf:")):
        return pretrained
    config = Path(pretrained).expanduser() / "config.json"
    is_ttt = config.is_file() and json.loads(config.read_text()).get("model_type") == "ttt_llama"
    return f"{'ttt' if is_ttt else 'hf'}:{pretrained}"


@register_model("ttt-omni")
class TTTOmniLM(LM):
    def __init__(self, pretrained: str = "tiny", device: str = "cpu", chunk_size: int = 2048,
                 max_gen_toks: int = 256, loaded: LoadedModel | None = None, **_ignored):
        super().__init__()
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            warnings.warn(f"device {device!r} requested but CUDA is not available; using cpu", stacklevel=2)
            device = "cpu"  # lm-eval's CLI passes device=cuda by default; its HF model falls back the same way
        self.loaded = loaded or load_model(resolve_spec(str(pretrained)), device=device)
        self.chunk_size, self.max_gen_toks = int(chunk_size), int(max_gen_toks)
        tok = self.loaded.tokenizer
        self.prefix_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    def _encode(self, text: str) -> list[int]:
        return self.loaded.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    def _scores(self, ids: list[int]):
        return token_scores(self.loaded.model, torch.tensor(ids), chunk_size=self.chunk_size,
                            context_limit=self.loaded.context_limit)

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        out = []
        for req in tqdm(requests, disable=disable_tqdm, desc="loglikelihood"):
            context, continuation = req.args
            # like lm-eval's HF model: move trailing spaces of the context onto the continuation
            n_space = len(context) - len(context.rstrip())
            context, continuation = context[: len(context) - n_space], context[len(context) - n_space:] + continuation
            ctx = self._encode(context) if context else [self.prefix_id]
            cont = self._encode(continuation)
            nll, greedy = self._scores(ctx + cont)
            out.append((-float(nll[-len(cont):].sum()), bool(greedy[-len(cont):].all())))
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        """Log-likelihood of whole documents, each scored in one streaming pass (TTT state carried across chunks)."""
        out = []
        for req in tqdm(requests, disable=disable_tqdm, desc="loglikelihood_rolling"):
            nll, _ = self._scores([self.prefix_id, *self._encode(req.args[0])])
            out.append(-float(nll.sum()))
        return out

    @torch.inference_mode()
    def generate_until(self, requests, disable_tqdm: bool = False):
        out = []
        model, tok = self.loaded.model, self.loaded.tokenizer
        for req in tqdm(requests, disable=disable_tqdm, desc="generate_until"):
            context, kwargs = req.args
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            ids = torch.tensor([self._encode(context) or [self.prefix_id]], device=self.loaded.device)
            gen = model.generate(ids, max_new_tokens=int(kwargs.get("max_gen_toks", self.max_gen_toks)),
                                 do_sample=False, pad_token_id=tok.pad_token_id or self.prefix_id)
            text = tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)
            for stop in until:
                text = text.split(stop)[0]
            out.append(text)
        return out


def main(argv: list[str] | None = None) -> int:
    """lm-eval's CLI with the `ttt-omni` model registered."""
    from lm_eval.__main__ import cli_evaluate

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--device" not in argv:  # lm-eval's default is cuda; use the device this machine has
        argv += ["--device", "cuda" if torch.cuda.is_available() else "cpu"]
    sys.argv = ["lm_eval", *argv]
    return cli_evaluate() or 0


if __name__ == "__main__":
    sys.exit(main())
