"""The TTT layer's decode path: its RoPE table, made once, serves inference and later training alike, and a decode
step that updates its state in place never writes the layer's parameters."""
import torch

from ttt_omni.layers import TTTLinear, TTTMLP


def test_a_rope_table_made_under_inference_mode_serves_training():
    layer = TTTLinear(32, 4, mini_batch_size=8)
    x = torch.randn(1, 11, 32)
    with torch.inference_mode():
        layer(x)
    out, _ = layer(x)
    out.sum().backward()  # inference tensors cannot be saved for backward: the table must be an ordinary tensor
    assert layer.q_proj.weight.grad is not None


def test_in_place_decode_steps_leave_the_parameters_alone():
    torch.manual_seed(0)
    layer = TTTMLP(32, 4, mini_batch_size=4).eval()
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    x = torch.randn(1, 9, 32)
    with torch.no_grad():
        want, want_state = layer(x)
        outs, state = [], None
        for t in range(9):
            out, state = layer(x[:, t:t + 1], state, inplace=True)
            outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1), want, rtol=0, atol=1e-5)
    torch.testing.assert_close(state.W1, want_state.W1, rtol=0, atol=1e-6)
    assert all(torch.equal(p, before[n]) for n, p in layer.named_parameters())
