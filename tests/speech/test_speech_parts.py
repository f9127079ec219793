"""Shapes, dtypes and reference behaviour of each part of the speech path on tiny configs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import WhisperFeatureExtractor

from ttt_omni.models.presets import tiny_config
from ttt_omni.speech.encoder import SpeechEncoder, load_speech_encoder
from ttt_omni.speech.generator import SpeechGeneratorCTC, ctc_collapse, parse_ctc_decoder_config
from ttt_omni.speech.projector import SpeechProjector
from ttt_omni.speech.units import UnitExtractor, load_centroids
from ttt_omni.speech.vocoder import UnitVocoder

from support.speech import tone
from ttt_omni.speech.tiny import UNITS, WHISPER, tiny_vocoder_config, tiny_whisper, write_openai_whisper, write_vocoder


def openai_whisper_encoder_reference(state: dict, mel: torch.Tensor, heads: int) -> torch.Tensor:
    """openai-whisper's AudioEncoder written out from its tensor names (independent of transformers)."""
    x = F.gelu(F.conv1d(mel, state["conv1.weight"], state["conv1.bias"], padding=1))
    x = F.gelu(F.conv1d(x, state["conv2.weight"], state["conv2.bias"], stride=2, padding=1)).transpose(1, 2)
    x = x + state["positional_embedding"]
    layers = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    d = x.shape[-1]
    for i in range(layers):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (d,), state[p + "attn_ln.weight"], state[p + "attn_ln.bias"])
        q = F.linear(h, state[p + "attn.query.weight"], state[p + "attn.query.bias"])
        k = F.linear(h, state[p + "attn.key.weight"])
        v = F.linear(h, state[p + "attn.value.weight"], state[p + "attn.value.bias"])
        split = lambda t: t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)  # noqa: E731
        a = torch.softmax(split(q) @ split(k).transpose(-1, -2) / (d // heads) ** 0.5, -1) @ split(v)
        x = x + F.linear(a.transpose(1, 2).flatten(2), state[p + "attn.out.weight"], state[p + "attn.out.bias"])
        h = F.layer_norm(x, (d,), state[p + "mlp_ln.weight"], state[p + "mlp_ln.bias"])
        x = x + F.linear(F.gelu(F.linear(h, state[p + "mlp.0.weight"], state[p + "mlp.0.bias"])),
                         state[p + "mlp.2.weight"], state[p + "mlp.2.bias"])
    return F.layer_norm(x, (d,), state["ln_post.weight"], state["ln_post.bias"])


def test_encoder_matches_transformers_and_openai_format(tmp_path):
    whisper = tiny_whisper()
    hf_dir = tmp_path / "hf-whisper"
    whisper.save_pretrained(hf_dir)
    pt = write_openai_whisper(tmp_path / "tiny.pt", whisper)
    samples = tone(1.0)
    fe = WhisperFeatureExtractor(feature_size=WHISPER["n_mels"], chunk_length=1)
    mel = fe(samples, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        expected = whisper.encoder(mel).last_hidden_state
        state = {k[len("encoder."):]: v for k, v in torch.load(pt, weights_only=True)["model_state_dict"].items()
                 if k.startswith("encoder.")}
        reference = openai_whisper_encoder_reference(state, mel, WHISPER["heads"])
    torch.testing.assert_close(reference, expected, atol=1e-4, rtol=1e-4)
    for source in (hf_dir, pt):
        encoder = load_speech_encoder(source)
        out = torch.cat(list(encoder.encode_batches(samples)))
        assert out.shape == (1, WHISPER["n_ctx"], WHISPER["d_model"]) and out.dtype == torch.float32
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
        assert not any(p.requires_grad for p in encoder.parameters())  # frozen by default


def test_encoder_windows_long_input():
    encoder = SpeechEncoder(tiny_whisper().config, window_batch=2)
    samples = tone(3.4)  # 1-second windows: 3 full + 1 partial
    batches = list(encoder.encode_batches(samples))
    assert [b.shape[0] for b in batches] == [2, 2]
    # each window is encoded on its own: window 2 alone gives the same frames
    alone = encoder(encoder.features([samples[16000:32000]]))
    torch.testing.assert_close(batches[0][1:2], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("frames", [10, 12, 14, 3])
def test_projector_downsamples_and_drops_the_remainder(frames):
    torch.manual_seed(0)
    proj = SpeechProjector(8, 16, k=5, hidden=32)
    x = torch.randn(2, frames, 8)
    out = proj(x)
    assert out.shape == (2, frames // 5, 16)
    if frames >= 5:
        first = proj.linear2(torch.relu(proj.linear1(x[:, :5].reshape(2, 40))))
        torch.testing.assert_close(out[:, 0], first)
    with pytest.raises(ValueError, match="encoder frames"):
        proj(torch.randn(2, frames, 9))


def test_ctc_collapse():
    blank = 9
    assert ctc_collapse([1, 1, 9, 1, 2, 2, 9, 9, 3], blank) == [1, 1, 2, 3]
    assert ctc_collapse([], blank) == []
    assert ctc_collapse([9, 9], blank) == []
    # chunked decoding: a repeat across the boundary is one unit, a blank in between separates
    assert ctc_collapse([4, 5], blank, previous=4) == [5]
    assert ctc_collapse([4, 5], blank, previous=9) == [4, 5]


def test_generator_shapes_loss_and_streaming():
    torch.manual_seed(0)
    gen = SpeechGeneratorCTC(tiny_config(), "(2,32,2,64)", upsample_factor=4, unit_vocab_size=UNITS).eval()
    assert parse_ctc_decoder_config("(2,4096,32,11008)") == (2, 4096, 32, 11008)
    with pytest.raises(ValueError, match="ctc_decoder_config"):
        parse_ctc_decoder_config("2x4096")
    reps = torch.randn(11, 128)
    logits = gen.logits(reps)
    assert logits.shape == (44, UNITS + 1) and logits.dtype == torch.float32
    offline = gen.predict(reps)
    stream = gen.stream()
    for a, b in ((0, 1), (1, 5), (5, 6), (6, 11)):
        stream.push(reps[a:b])
    assert stream.units == offline
    gen.train()
    loss = gen.loss([reps, reps[:3]], [torch.randint(0, UNITS, (30,)), torch.randint(0, UNITS, (20,))])
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert gen.input_proj.weight.grad is not None


def test_vocoder_length_and_checkpoint_format(tmp_path):
    directory = write_vocoder(tmp_path / "vocoder")
    ckpt = torch.load(directory / "g_00500000", weights_only=True)
    assert "generator" in ckpt and "conv_pre.weight_g" in ckpt["generator"] and "ups.0.weight_v" in ckpt["generator"]
    assert "dur_predictor.conv1.0.weight" in ckpt["generator"] and "dict.weight" in ckpt["generator"]
    vocoder = UnitVocoder.from_pretrained(directory)
    units = torch.tensor([3, 7, 7, 1, 19, 0])
    with torch.no_grad():
        durations = vocoder.durations(units)
        wav = vocoder(units)
        plain = vocoder(units, dur_prediction=False)
    assert vocoder.hop_length == 20
    assert wav.shape == (int(durations.sum()) * 20,) and wav.dtype == torch.float32
    assert plain.shape == (len(units) * 20,)
    assert float(wav.abs().max()) <= 1.0
    with pytest.raises(ValueError, match="outside"):
        vocoder(torch.tensor([UNITS]))
    with pytest.raises(ValueError, match="lacks"):
        UnitVocoder({k: v for k, v in tiny_vocoder_config().items() if k != "upsample_rates"})


def test_unit_extractor(tmp_path):
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    hubert = HubertModel(HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=64, conv_dim=(16, 16, 16, 16, 16, 16, 16),
                                      num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2))
    hubert.save_pretrained(tmp_path / "hubert")
    np.save(tmp_path / "km.npy", np.random.default_rng(0).normal(size=(UNITS, 32)).astype(np.float32))
    extractor = UnitExtractor.from_pretrained(tmp_path / "hubert", tmp_path / "km.npy", layer=2)
    units = extractor(tone(1.0))
    assert units.dtype == torch.int64 and units.shape == (49,)  # 20 ms frames
    assert int(units.min()) >= 0 and int(units.max()) < UNITS
    with pytest.raises(ValueError, match="dimension"):
        UnitExtractor(hubert, torch.zeros(4, 7), layer=2)
    with pytest.raises(ValueError, match="unknown centroids format"):
        (tmp_path / "km.txt").write_text("1 2")
        load_centroids(tmp_path / "km.txt")
