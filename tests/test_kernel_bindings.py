"""The kernel bindings of every backend module (csrc/bindings/kernel_bindings.h): every
argument keyword-only and named as the C++ parameters, so that a swap of two same-shaped
arrays (w_ih and w_hh when I == H) cannot pass unnoticed."""

import re

import numpy as np
import pytest

from fastrnn import _C, _testing, cuda, reference

from cells import TOL, assert_close

# The parameters of each kernel, in order: the C++ names (fastrnn/{lstm,gru,rnn}.h fields).
PARAMS = {
    "lstm_forward": "x h0 c0 w_ih w_hh b_ih b_hh w_hr batch_sizes y h_n c_n gates cells m "
    "training H P bf16 zoneout_h zoneout_c recurrent_mask ln_ih_weight ln_hh_weight "
    "ln_cell_weight ln_cell_bias ln_ih ln_hh ln_cell ln_rstd",
    "lstm_backward": "x h0 y w_ih w_hh w_hr batch_sizes gates cells m dy dh_n dc_n dx dh0 dc0 "
    "dw_ih dw_hh dw_hr db_ih db_hh H P bf16 zoneout_h zoneout_c recurrent_mask ln_ih_weight "
    "ln_hh_weight ln_cell_weight ln_cell_bias ln_ih ln_hh ln_cell ln_rstd dln_ih_weight "
    "dln_hh_weight dln_cell_weight dln_cell_bias",
    "gru_forward": "x h0 w_ih w_hh b_ih b_hh batch_sizes y h_n gates extra training reset_after "
    "H bf16 zoneout_h recurrent_mask ln_ih_weight ln_hh_weight ln_ih ln_hh ln_rstd",
    "gru_backward": "x h0 y w_ih w_hh batch_sizes gates extra dy dh_n dx dh0 dw_ih dw_hh db_ih "
    "db_hh reset_after H bf16 zoneout_h recurrent_mask ln_ih_weight ln_hh_weight ln_ih ln_hh "
    "ln_rstd dln_ih_weight dln_hh_weight",
    "rnn_forward": "x h0 w_ih w_hh b_ih b_hh batch_sizes y h_n gates nonlinearity H bf16",
    "rnn_backward": "x h0 y w_ih w_hh batch_sizes gates dy dh_n dx dh0 dw_ih dw_hh db_ih db_hh "
    "nonlinearity H bf16",
}
MODULES = [_C, _testing.cuda_emulation] + ([cuda._cuda] if cuda._cuda is not None else [])
MODULE_IDS = [m.__name__ for m in MODULES]


def signature(fn) -> list:
    """The parameters of a pybind11 function, from the signature pybind11 writes in its doc."""
    head = fn.__doc__.splitlines()[0]
    args = re.fullmatch(r"\w+\((.*)\) -> None", head).group(1)
    return [a.split(":")[0].strip() for a in args.split(", ")]


@pytest.mark.parametrize("module", MODULES, ids=MODULE_IDS)
@pytest.mark.parametrize("name", list(PARAMS))
def test_every_argument_is_named_and_keyword_only(module, name):
    assert signature(getattr(module, name)) == ["*"] + PARAMS[name].split()


@pytest.mark.parametrize("module", MODULES, ids=MODULE_IDS)
@pytest.mark.parametrize("name", list(PARAMS))
def test_a_positional_call_is_a_type_error(module, name):
    with pytest.raises(TypeError, match="incompatible function arguments"):
        getattr(module, name)(*[None] * len(PARAMS[name].split()))


def rnn_arrays(rng, T=3, B=2, H=4, dtype=np.float64):
    """An RNN problem with I == H, so that w_ih and w_hh have the same shape."""
    return dict(
        x=rng.standard_normal((T, B, H)).astype(dtype),
        h0=rng.standard_normal((B, H)).astype(dtype),
        w_ih=rng.standard_normal((H, H)).astype(dtype),
        w_hh=0.5 * rng.standard_normal((H, H)).astype(dtype),
        b_ih=rng.standard_normal(H).astype(dtype),
        b_hh=rng.standard_normal(H).astype(dtype),
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_keyword_call_runs_the_kernel(dtype):
    """A keyword call, in any order, runs the kernel for the dtype of x."""
    a = rnn_arrays(np.random.default_rng(0), dtype=dtype)
    T, B, H = a["x"].shape
    y, h_n = np.empty((T, B, H), dtype), np.empty((B, H), dtype)
    _C.rnn_forward(
        H=H,
        bf16=False,
        nonlinearity="tanh",
        gates=None,
        h_n=h_n,
        y=y,
        batch_sizes=None,
        b_hh=a["b_hh"],
        b_ih=a["b_ih"],
        w_hh=a["w_hh"],
        w_ih=a["w_ih"],
        h0=a["h0"],
        x=a["x"],
    )
    want_y, want_h, _ = reference.rnn_forward(
        a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], training=False
    )
    assert_close("y", y, want_y, *TOL[dtype])
    assert_close("h_n", h_n, want_h, *TOL[dtype])


def test_keyword_call_on_the_emulated_device():
    emu = _testing.cuda_emulation
    a = rnn_arrays(np.random.default_rng(1))
    T, B, H = a["x"].shape

    def dev(host):
        d = emu.DeviceArray(host.shape, host.dtype)
        d.copy_from(host)
        return d

    y, h_n = emu.DeviceArray((T, B, H), np.float64), emu.DeviceArray((B, H), np.float64)
    emu.rnn_forward(
        **{k: dev(v) for k, v in a.items()},
        batch_sizes=None,
        y=y,
        h_n=h_n,
        gates=None,
        nonlinearity="tanh",
        H=H,
        bf16=False,
    )
    want_y, _, _ = reference.rnn_forward(
        a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], training=False
    )
    assert_close("y", y.numpy(), want_y, *TOL[np.float64])


def test_missing_or_unknown_keyword_is_a_type_error():
    a = rnn_arrays(np.random.default_rng(2))
    T, B, H = a["x"].shape
    args = dict(
        a,
        batch_sizes=None,
        y=np.empty((T, B, H)),
        h_n=np.empty((B, H)),
        gates=None,
        nonlinearity="tanh",
        H=H,
        bf16=False,
    )
    with pytest.raises(TypeError):
        _C.rnn_forward(**{k: v for k, v in args.items() if k != "x"})
    with pytest.raises(TypeError):
        _C.rnn_forward(**args, c0=None)
