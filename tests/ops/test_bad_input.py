"""Bad calls fail with a ValueError that names the argument."""
import pytest
import torch

from ttt_omni.ops import TTTState, ttt_linear, ttt_mlp
from ttt_omni.ops.validate import NonFiniteInputError


def test_wrong_rank(make_inputs):
    (xq, xk, xv, lr, ts, lw, lb), st = make_inputs("linear")
    with pytest.raises(ValueError, match="xq must be a 4-d tensor"):
        ttt_linear(xq[0], xk, xv, lr, ts, lw, lb, st)


def test_mismatched_head_dims(make_inputs):
    (xq, xk, xv, lr, ts, lw, lb), st = make_inputs("linear", F=8)
    with pytest.raises(ValueError, match="xq, xk, xv must have the same shape"):
        ttt_linear(xq, xk[..., :4], xv, lr, ts, lw, lb, st)
    with pytest.raises(ValueError, match="ln_weight"):
        ttt_linear(xq, xk, xv, lr, ts, lw[:, :4], lb, st)
    (xq4, xk4, xv4, lr4, _, lw4, lb4), _ = make_inputs("linear", F=4)
    with pytest.raises(ValueError, match=r"state.W1 has shape .* expected trailing dims"):
        ttt_linear(xq4, xk4, xv4, lr4, ts, lw4, lb4, st)


def test_state_of_other_layer_type(make_inputs):
    args, st_mlp = make_inputs("mlp")
    with pytest.raises(ValueError, match="state is a TTT-mlp state but this is a TTT-linear"):
        ttt_linear(*args, st_mlp)
    args, st_lin = make_inputs("linear")
    with pytest.raises(ValueError, match="state is a TTT-linear state but this is a TTT-mlp"):
        ttt_mlp(*args, st_lin)


def test_nan_in_state(make_inputs):
    args, st = make_inputs("linear")
    st.b1 = st.b1.clone()
    st.b1[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN/Inf in \['b1'\]"):
        ttt_linear(*args, st)


def test_half_precision_state_refused(make_inputs):
    args, st = make_inputs("linear", dtype=torch.float32)
    bf16 = TTTState.fresh(st.W1.bfloat16(), st.b1.bfloat16())
    with pytest.raises(ValueError, match="state.W1 is torch.bfloat16; the TTT inner state must be float32"):
        ttt_linear(*args, bf16)


def test_lr_shape_and_unknown_backend(make_inputs):
    (xq, xk, xv, lr, ts, lw, lb), st = make_inputs("linear")
    with pytest.raises(ValueError, match="lr must have shape"):
        ttt_linear(xq, xk, xv, lr[:, :, :-1], ts, lw, lb, st)
    with pytest.raises(ValueError, match="unknown TTT backend 'fast'"):
        ttt_linear(xq, xk, xv, lr, ts, lw, lb, st, backend="fast")


def test_state_dict_round_trip_and_missing_keys(make_inputs):
    _, st = make_inputs("mlp")
    back = TTTState.from_dict(st.to_dict())
    assert back.seen == st.seen and all(torch.equal(a, b) for a, b in zip(back.tensors().values(), st.tensors().values()))
    data = st.to_dict()
    del data["grad_W1"]
    with pytest.raises(ValueError, match="missing"):
        TTTState.from_dict(data)


@pytest.mark.parametrize("arg", [0, 1, 2, 3])  # xq, xk, xv, lr
def test_nan_in_inputs_is_named(make_inputs, arg):
    args, st = make_inputs("mlp")
    args = list(args)
    args[arg] = args[arg].clone()
    args[arg].view(-1)[3] = float("inf") if arg == 3 else float("nan")
    name = ("xq", "xk", "xv", "lr")[arg]
    with pytest.raises(NonFiniteInputError, match=rf"inputs \['{name}'\] contain NaN/Inf"):
        ttt_mlp(*args, st)
