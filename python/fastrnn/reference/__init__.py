"""Plain NumPy reference for the fastrnn kernels: the ground truth the C++ is checked against.

Written for clarity, vectorized over the batch only. Same signatures as :mod:`fastrnn.ops`.
Shapes: T steps, B batch, I input, H hidden; x (T, B, I), y (T, B, H), states (B, H);
w_ih (G*H, I), w_hh (G*H, H), b_ih, b_hh (G*H,) with gates stacked LSTM (i, f, g, o),
GRU (r, z, n), RNN (one gate). Inputs must already be validated NumPy arrays of one float
dtype (``fastrnn.ops`` does that); ``None`` states and gradients mean zeros.

``lengths`` (B,) (or a :class:`fastrnn.packed.PackedBatch`) lets sequence b run for its
first lengths[b] steps only: its outputs after that are zero, its state stops changing (so
h_n is the state after its last step, h0 for length 0), and gradients flow accordingly.
Here that is a mask per step over the caller's row order; the kernels sort the rows and run
only those still going.

A training forward returns the same typed record as the kernels (:mod:`fastrnn.saved`),
with the same arrays: the activated gates, the cell states, the outputs.

The LSTM and GRU also take, keyword-only (issue 13; fastrnn extras, off by default):

- ``layer_norm``: layer-normalized cells (Ba et al. 2016), LN(v; g, b) = g * (v - mean(v)) /
  sqrt(var(v) + 1e-5) + b over the features of a row. LSTM, a tuple (gamma_ih (4H), gamma_hh
  (4H), gamma_c (H), beta_c (H)): a = LN(W_ih x; gamma_ih, 0) + LN(W_hh h; gamma_hh, 0) +
  b_ih + b_hh, each LN over all 4H gate pre-activations of the row, and
  h' = o * tanh(LN(c'; gamma_c, beta_c)). GRU (reset after only), a tuple (gamma_ih (3H),
  gamma_hh (3H)): a^x = LN(W_ih x; gamma_ih, 0) + b_ih, a^h = LN(W_hh h; gamma_hh, 0) + b_hh,
  n = tanh(a^x_n + r * a^h_n). The backward returns their gradients last, in that order.
- ``zoneout``: the per-element factor d of h_t = d * h_{t-1} + (1 - d) * h~_t (h~ the cell's
  update; d a 0/1 draw in training, the probability p in evaluation). The LSTM's update uses
  the cell before zoneout, h~_t = o * tanh(c~_t), c_t = d_c * c_{t-1} + (1 - d_c) * c~_t (as
  Krueger et al.). LSTM, a tuple
  (d_h (T, B, P), d_c (T, B, H)) (either may be None); GRU, d_h (T, B, H). The outputs are
  the zoned-out h_t.
- ``recurrent_mask`` (B, P): variational recurrent dropout, already scaled by 1/(1 - p): h_{t-1}
  enters the recurrent product as h_{t-1} * mask (the same mask at every step).

Weight drop (a mask on W_hh) needs nothing here: it is W_hh * mask given as w_hh.

``precision="bf16"`` rounds both operands of every matrix product to bf16 (to nearest, ties
to even) and multiplies in float32, as :mod:`fastrnn.ops` does; the backward follows its
forward. Arrays of dtype ``ml_dtypes.bfloat16`` run as there too: as float32 copies with
precision="bf16", the outputs and the gradients returned in bfloat16.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional, Tuple, TypeVar

import numpy as np

from ..packed import PackedBatch, as_packed
from ..saved import GruSaved, LstmSaved, RnnSaved, is_bfloat16

__all__ = [
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
    "rnn_forward",
    "rnn_backward",
]

Array = np.ndarray


def _sigmoid(v: Array) -> Array:
    # Two-sided form: never overflows exp for large |v|.
    e = np.exp(-np.abs(v))
    return np.where(v >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(v.dtype, copy=False)


def to_bf16(a: Array) -> Array:
    """float32 a rounded to the nearest bf16 (ties to even), as float32; NaN stays NaN."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return np.where(np.isnan(a), a, rounded.view(np.float32))


def _products(precision: str):
    """(matmul, einsum) taking the precision's operands: as given ("fp32"), or rounded to
    bf16 ("bf16")."""
    if precision == "fp32":
        return np.matmul, np.einsum
    return (
        lambda a, b: to_bf16(a) @ to_bf16(b),
        lambda spec, a, b: np.einsum(spec, to_bf16(a), to_bf16(b)),
    )


F = TypeVar("F", bound=Callable[..., Any])


def _float32(a: Any) -> Any:
    """A bfloat16 array (or a tuple of them) as float32 (exact); anything else as it is."""
    if isinstance(a, tuple):
        return tuple(_float32(v) for v in a)
    return a.astype(np.float32) if is_bfloat16(getattr(a, "dtype", None)) else a


def _bfloat16_forward(forward: F) -> F:
    """``forward`` also on bfloat16 arrays (x's dtype tells): on float32 copies with
    precision="bf16", the outputs cast back; the record's ``io_dtype`` says bfloat16."""

    @functools.wraps(forward)
    def run(x, *args, **kwargs):
        dtype = getattr(x, "dtype", None)
        if not is_bfloat16(dtype):
            return forward(x, *args, **kwargs)
        kwargs = {k: _float32(v) for k, v in kwargs.items()}
        kwargs["precision"] = "bf16"
        *outs, saved = forward(_float32(x), *map(_float32, args), **kwargs)
        if saved is not None:
            saved = dataclasses.replace(saved, io_dtype=dtype)
        return tuple(o.astype(dtype) for o in outs) + (saved,)

    return run  # type: ignore[return-value]


def _bfloat16_backward(backward: F) -> F:
    """``backward`` after a forward on bfloat16 arrays: upstream gradients (bfloat16 or
    float32) as float32, every gradient returned in bfloat16."""

    @functools.wraps(backward)
    def run(saved, *args, **kwargs):
        dtype = getattr(saved, "io_dtype", None)
        if dtype is None:
            return backward(saved, *args, **kwargs)
        kwargs = {k: _float32(v) for k, v in kwargs.items()}
        grads = backward(saved, *map(_float32, args), **kwargs)
        return tuple(None if g is None else g.astype(dtype) for g in grads)

    return run  # type: ignore[return-value]


def _zeros_if_none(a: Optional[Array], shape: tuple, dtype) -> Array:
    return np.zeros(shape, dtype) if a is None else a


def _input_projection(x: Array, w_ih: Array, b_ih: Optional[Array], mm=np.matmul) -> Array:
    gx = mm(x, w_ih.T)  # (T, B, G*H)
    return gx if b_ih is None else gx + b_ih


def _bias_grads(dg: Array, has_bias: bool) -> Optional[Array]:
    return dg.sum(axis=(0, 1)) if has_bias else None


def _masks(packed: Optional[PackedBatch], T: int, B: int, dtype) -> Array:
    """(T, B, 1) with 1 where sequence b runs step t (rows in the caller's order)."""
    if packed is None:
        return np.ones((T, B, 1), dtype)
    return (np.arange(T)[:, None] < packed.lengths[None, :]).astype(dtype)[:, :, None]


def _zero_padding(x: Array, masks: Array) -> Array:
    """x with the steps past each sequence's end zeroed, so that whatever the caller left
    there (NaN included) never reaches a gradient: 0 * NaN would be NaN in dW_ih."""
    return np.where(masks > 0, x, x.dtype.type(0))


def _stack(steps: list, shape: tuple, dtype) -> Array:
    return np.stack(steps) if steps else np.zeros(shape, dtype)


# ----------------------------------------------------------------------------- extras
LN_EPS = 1e-5  # torch.nn.LayerNorm's default


def _layer_norm(v: Array, gamma: Array, beta: Optional[Array] = None) -> Tuple[Array, ...]:
    """LN over the last axis: (gamma * v_hat + beta, v_hat, 1 / std), std with the biased
    variance, as torch.nn.LayerNorm."""
    mu = v.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(v.var(axis=-1, keepdims=True) + LN_EPS)
    v_hat = (v - mu) * rstd
    out = v_hat * gamma
    return (out if beta is None else out + beta), v_hat, rstd


def _layer_norm_backward(d_out: Array, v_hat: Array, rstd: Array, gamma: Array) -> Array:
    """The gradient of LN's input from its output's (gamma's and beta's are summed by the
    caller: (d_out * v_hat) and d_out over the rows)."""
    dv_hat = d_out * gamma
    return rstd * (
        dv_hat
        - dv_hat.mean(axis=-1, keepdims=True)
        - v_hat * (dv_hat * v_hat).mean(axis=-1, keepdims=True)
    )


def _rows_sum(a: Array) -> Array:
    return a.reshape(-1, a.shape[-1]).sum(axis=0)


def _extras(layer_norm, zoneout, recurrent_mask) -> Optional[dict]:
    """The extras a forward was given, as its record keeps them (None: none)."""
    if layer_norm is None and zoneout is None and recurrent_mask is None:
        return None
    return dict(layer_norm=layer_norm, zoneout=zoneout, recurrent_mask=recurrent_mask)


def _h_prev(saved) -> Array:
    """(T, B, P) the state entering each step: h0, then y. A row running at step t ran at
    t - 1 too, so y[t - 1] is its state; rows not running take no part in the gradients."""
    return np.concatenate([saved.h0[None], saved.y[:-1]]) if saved.T else saved.y


# ----------------------------------------------------------------------------- LSTM


@_bfloat16_forward
def lstm_forward(
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, training: bool = True, *, w_hr=None, lengths=None,
    precision: str = "fp32", layer_norm=None, zoneout=None, recurrent_mask=None,
) -> Tuple[Array, Array, Array, Optional[LstmSaved]]:  # fmt: skip
    """LSTM over T steps. Returns ``(y (T,B,P), h_n (B,P), c_n (B,H), saved or None)``.

    With ``w_hr`` (P, H) (a projection, LSTMP): h' = W_hr (o * tanh(c')); else P = H.
    ``layer_norm``, ``zoneout``, ``recurrent_mask``: see the module's doc.
    """
    mm, _ = _products(precision)
    T, B, _ = x.shape
    H = w_ih.shape[0] // 4
    P = w_hh.shape[1]
    h0 = _zeros_if_none(h0, (B, P), x.dtype)
    h = h0
    c = _zeros_if_none(c0, (B, H), x.dtype)
    packed = as_packed("reference", lengths, T, B)
    masks = _masks(packed, T, B, x.dtype)
    x = x if packed is None else _zero_padding(x, masks)
    ln = layer_norm
    d_h, d_c = zoneout if zoneout is not None else (None, None)
    px = mm(x, w_ih.T)  # (T, B, 4H) W_ih x
    ln_x = None if ln is None else _layer_norm(px, ln[0])
    gx = px if ln is None else ln_x[0]
    gx = gx if b_ih is None else gx + b_ih
    ys, cs, ms, gates = [], [c], [], []
    keep = dict(c_new=[], ph_hat=[], ph_rstd=[], cn_hat=[], cn_rstd=[])
    for t in range(T):
        hm = h if recurrent_mask is None else h * recurrent_mask
        ah = mm(hm, w_hh.T)
        if ln is not None:
            ah, ph_hat, ph_rstd = _layer_norm(ah, ln[1])
            keep["ph_hat"].append(ph_hat), keep["ph_rstd"].append(ph_rstd)
        a = gx[t] + ah
        if b_hh is not None:
            a = a + b_hh
        i, f, g, o = np.split(a, 4, axis=1)
        i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
        c_new = f * c + i * g
        cn = c_new
        if ln is not None:
            cn, cn_hat, cn_rstd = _layer_norm(c_new, ln[2], ln[3])
            keep["cn_hat"].append(cn_hat), keep["cn_rstd"].append(cn_rstd)
        m = o * np.tanh(cn)
        h_new = m if w_hr is None else mm(m, w_hr.T)
        keep["c_new"].append(c_new)
        if d_h is not None:
            h_new = d_h[t] * h + (1 - d_h[t]) * h_new
        if d_c is not None:
            c_new = d_c[t] * c + (1 - d_c[t]) * c_new
        run = masks[t]
        h = np.where(run > 0, h_new, h)
        c = np.where(run > 0, c_new, c)
        ys.append(np.where(run > 0, h_new, 0))
        cs.append(c)
        ms.append(m)
        gates.append(np.concatenate([i, f, g, o], axis=1))
    y = _stack(ys, (0, B, P), x.dtype)
    extras = _extras(layer_norm, zoneout, recurrent_mask)
    if extras is not None:
        extras.update({k: _stack(v, (0,), x.dtype) for k, v in keep.items()})
        if ln is not None:
            extras.update(px_hat=ln_x[1], px_rstd=ln_x[2])
    saved = None
    if training:
        saved = LstmSaved(
            backend="numpy",
            x=x,
            h0=h0,
            y=y,
            w_ih=w_ih,
            w_hh=w_hh,
            has_bias=b_ih is not None,
            gates=_stack(gates, (0, B, 4 * H), x.dtype),
            packed=packed,
            cells=np.stack(cs),
            w_hr=w_hr,
            m=None if w_hr is None else _stack(ms, (0, B, H), x.dtype),
            precision=precision,
            extras=extras,
            layer_norm=layer_norm,
        )
    return y, h, c, saved


@_bfloat16_backward
def lstm_backward(saved: LstmSaved, dy, dh_n, dc_n) -> Tuple[Optional[Array], ...]:
    """BPTT through :func:`lstm_forward`. Returns ``(dx, dh0, dc0, dw_ih, dw_hh, db_ih,
    db_hh)``, then ``dw_hr`` when the forward had a projection, then ``(dgamma_ih,
    dgamma_hh, dgamma_c, dbeta_c)`` when it had ``layer_norm``."""
    x, w_ih, w_hh, w_hr = saved.x, saved.w_ih, saved.w_hh, saved.w_hr
    cells, gates = saved.cells, saved.gates
    mm, einsum = _products(saved.precision)
    T, B, _ = x.shape
    H, P = saved.H, saved.P
    ex = saved.extras or {}
    ln = ex.get("layer_norm")
    d_h, d_c = ex.get("zoneout") or (None, None)
    rmask = ex.get("recurrent_mask")
    masks = _masks(saved.packed, T, B, x.dtype)
    dy = _zeros_if_none(dy, (T, B, P), x.dtype)
    dh = _zeros_if_none(dh_n, (B, P), x.dtype).copy()
    dc = _zeros_if_none(dc_n, (B, H), x.dtype).copy()
    dg_all = np.zeros((T, B, 4 * H), x.dtype)  # the gate pre-activations' gradients
    dph_all = dg_all if ln is None else np.zeros_like(dg_all)  # ... of W_hh h's
    dw_hr = None if w_hr is None else np.zeros_like(w_hr)
    dln = None if ln is None else [np.zeros_like(v) for v in ln]
    for t in reversed(range(T)):
        run = masks[t]
        i, f, g, o = np.split(gates[t], 4, axis=1)
        c_new = ex["c_new"][t] if ex else cells[t + 1]  # c~_t, before zoneout
        dh_t = np.where(run > 0, dh + dy[t], 0)
        dc_t = np.where(run > 0, dc, 0)
        # Zoneout: h_t = d h_{t-1} + (1 - d) h~_t (and c): the update's share, the carried.
        dh_keep = 0 if d_h is None else d_h[t] * dh_t
        dc_keep = 0 if d_c is None else d_c[t] * dc_t
        if d_h is not None:
            dh_t = (1 - d_h[t]) * dh_t
        if d_c is not None:
            dc_t = (1 - d_c[t]) * dc_t
        dm = dh_t if w_hr is None else mm(dh_t, w_hr)
        if w_hr is not None:
            dw_hr += mm(dh_t.T, saved.m[t])
        if ln is None:
            tc = np.tanh(c_new)
        else:
            tc = np.tanh(ex["cn_hat"][t] * ln[2] + ln[3])
        do = dm * tc
        dcn = dm * o * (1 - tc * tc)  # the gradient of tanh's argument
        if ln is not None:
            dln[2] += _rows_sum(dcn * ex["cn_hat"][t])
            dln[3] += _rows_sum(dcn)
            dcn = _layer_norm_backward(dcn, ex["cn_hat"][t], ex["cn_rstd"][t], ln[2])
        dc_t = dc_t + dcn
        di, df, dg = dc_t * g, dc_t * cells[t], dc_t * i
        dg_all[t] = np.where(
            run > 0,
            np.concatenate(
                [di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)], axis=1
            ),
            0,
        )
        if ln is not None:
            dln[1] += _rows_sum(dg_all[t] * ex["ph_hat"][t])
            dph_all[t] = _layer_norm_backward(dg_all[t], ex["ph_hat"][t], ex["ph_rstd"][t], ln[1])
        dhm = mm(dph_all[t], w_hh)
        dh_prev = dh_keep + (dhm if rmask is None else dhm * rmask)
        dc = np.where(run > 0, dc_keep + dc_t * f, dc)
        dh = np.where(run > 0, dh_prev, dh)
    dpx = dg_all
    if ln is not None:
        dln[0] += _rows_sum(dg_all * ex["px_hat"])
        dpx = _layer_norm_backward(dg_all, ex["px_hat"], ex["px_rstd"], ln[0])
    dx = mm(dpx, w_ih)
    dw_ih = einsum("tbg,tbi->gi", dpx, x)
    h_prev = _h_prev(saved)
    dw_hh = einsum("tbg,tbh->gh", dph_all, h_prev if rmask is None else h_prev * rmask)
    db = _bias_grads(dg_all, saved.has_bias)
    saved.consume()
    grads = (dx, dh, dc, dw_ih, dw_hh, db, None if db is None else db.copy())
    grads = grads if w_hr is None else grads + (dw_hr,)
    return grads if ln is None else grads + tuple(dln)


# ----------------------------------------------------------------------------- GRU


@_bfloat16_forward
def gru_forward(
    x, h0, w_ih, w_hh, b_ih, b_hh, training: bool = True, reset_after: bool = True, *,
    lengths=None, precision: str = "fp32", layer_norm=None, zoneout=None, recurrent_mask=None,
) -> Tuple[Array, Array, Optional[GruSaved]]:  # fmt: skip
    """GRU over T steps. Returns ``(y (T,B,H), h_n (B,H), saved or None)``.

    reset_after=True:  n = tanh(W_in x + b_in + r * (W_hn h + b_hn))   (cuDNN, PyTorch)
    reset_after=False: n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)   (Cho et al. 2014)
    h' = (1 - z) * n + z * h in both. ``layer_norm`` (reset after only), ``zoneout``,
    ``recurrent_mask``: see the module's doc (the mask applies where h enters W_hh; z * h
    takes h as it is).
    """
    if layer_norm is not None and not reset_after:
        raise ValueError("gru_forward: layer_norm takes the reset-after form (reset_after=True)")
    mm, _ = _products(precision)
    T, B, _ = x.shape
    H = w_hh.shape[1]
    h0 = _zeros_if_none(h0, (B, H), x.dtype)
    h = h0
    packed = as_packed("reference", lengths, T, B)
    masks = _masks(packed, T, B, x.dtype)
    x = x if packed is None else _zero_padding(x, masks)
    ln = layer_norm
    px = mm(x, w_ih.T)  # (T, B, 3H) W_ih x
    ln_x = None if ln is None else _layer_norm(px, ln[0])
    gx = px if ln is None else ln_x[0]
    gx = gx if b_ih is None else gx + b_ih
    w_hrz, w_hn = w_hh[: 2 * H], w_hh[2 * H :]
    b_hrz = None if b_hh is None else b_hh[: 2 * H]
    b_hn = None if b_hh is None else b_hh[2 * H :]
    ys, gates, extra = [], [], []
    keep = dict(ph_hat=[], ph_rstd=[])
    for t in range(T):
        hm = h if recurrent_mask is None else h * recurrent_mask
        if reset_after:
            ah = mm(hm, w_hh.T)  # W_hh h (3H), layer-normalized jointly
            if ln is not None:
                ah, ph_hat, ph_rstd = _layer_norm(ah, ln[1])
                keep["ph_hat"].append(ph_hat), keep["ph_rstd"].append(ph_rstd)
            if b_hh is not None:
                ah = ah + b_hh
            r, z = np.split(_sigmoid(gx[t, :, : 2 * H] + ah[:, : 2 * H]), 2, axis=1)
            hn = ah[:, 2 * H :]  # W_hn h + b_hn, kept for backward
            n = np.tanh(gx[t, :, 2 * H :] + r * hn)
            extra.append(hn)
        else:
            a_rz = gx[t, :, : 2 * H] + mm(hm, w_hrz.T)
            if b_hrz is not None:
                a_rz = a_rz + b_hrz
            r, z = np.split(_sigmoid(a_rz), 2, axis=1)
            rh = r * hm  # kept for backward (the input of W_hn)
            a_n = gx[t, :, 2 * H :] + mm(rh, w_hn.T)
            if b_hn is not None:
                a_n = a_n + b_hn
            n = np.tanh(a_n)
            extra.append(rh)
        h_new = (1 - z) * n + z * h
        if zoneout is not None:
            h_new = zoneout[t] * h + (1 - zoneout[t]) * h_new
        run = masks[t]
        h = np.where(run > 0, h_new, h)
        ys.append(np.where(run > 0, h_new, 0))
        gates.append(np.concatenate([r, z, n], axis=1))
    y = _stack(ys, (0, B, H), x.dtype)
    extras = _extras(layer_norm, zoneout, recurrent_mask)
    if extras is not None and ln is not None:
        extras.update({k: _stack(v, (0,), x.dtype) for k, v in keep.items()})
        extras.update(px_hat=ln_x[1], px_rstd=ln_x[2])
    saved = None
    if training:
        saved = GruSaved(
            backend="numpy",
            x=x,
            h0=h0,
            y=y,
            w_ih=w_ih,
            w_hh=w_hh,
            has_bias=b_ih is not None,
            gates=_stack(gates, (0, B, 3 * H), x.dtype),
            packed=packed,
            extra=_stack(extra, (0, B, H), x.dtype),
            reset_after=bool(reset_after),
            precision=precision,
            extras=extras,
            layer_norm=layer_norm,
        )
    return y, h, saved


@_bfloat16_backward
def gru_backward(saved: GruSaved, dy, dh_n) -> Tuple[Optional[Array], ...]:
    """BPTT through :func:`gru_forward`. Returns ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``,
    then ``(dgamma_ih, dgamma_hh)`` when the forward had ``layer_norm``."""
    x, w_ih, w_hh = saved.x, saved.w_ih, saved.w_hh
    gates, extra, reset_after = saved.gates, saved.extra, saved.reset_after
    mm, einsum = _products(saved.precision)
    T, B, _ = x.shape
    H = w_hh.shape[1]
    ex = saved.extras or {}
    ln, d_h, rmask = ex.get("layer_norm"), ex.get("zoneout"), ex.get("recurrent_mask")
    w_hrz, w_hn = w_hh[: 2 * H], w_hh[2 * H :]
    dy = _zeros_if_none(dy, (T, B, H), x.dtype)
    dh = _zeros_if_none(dh_n, (B, H), x.dtype).copy()
    dgx = np.zeros((T, B, 3 * H), x.dtype)  # gradient of the x-side pre-activations
    dgh = np.zeros((T, B, 3 * H), x.dtype)  # gradient of the h-side GEMM outputs (+ b_hh)
    dph = dgh if ln is None else np.zeros_like(dgh)  # ... of W_hh h before layer norm
    dw_hh = np.zeros_like(w_hh)
    dln = None if ln is None else [np.zeros_like(v) for v in ln]
    masks = _masks(saved.packed, T, B, x.dtype)
    hs = _h_prev(saved)
    for t in reversed(range(T)):
        run = masks[t]
        r, z, n = np.split(gates[t], 3, axis=1)
        h_prev = hs[t]
        hm = h_prev if rmask is None else h_prev * rmask
        dh_in = dh
        dh = np.where(run > 0, dh + dy[t], 0)
        dh_keep = 0
        if d_h is not None:  # zoneout: h_t = d h_{t-1} + (1 - d) h~_t
            dh_keep, dh = d_h[t] * dh, (1 - d_h[t]) * dh
        dn_pre = dh * (1 - z) * (1 - n * n)
        dz_pre = dh * (h_prev - n) * z * (1 - z)
        dh_prev = dh_keep + dh * z
        if reset_after:
            hn = extra[t]
            dr_pre = dn_pre * hn * r * (1 - r)
            dgh_n = dn_pre * r
        else:
            drh = mm(dn_pre, w_hn)
            dr_pre = drh * hm * r * (1 - r)
            dgh_n = dn_pre
            dh_prev = dh_prev + (drh * r if rmask is None else drh * r * rmask)
        dgx[t] = np.where(run > 0, np.concatenate([dr_pre, dz_pre, dn_pre], axis=1), 0)
        dgh[t] = np.where(run > 0, np.concatenate([dr_pre, dz_pre, dgh_n], axis=1), 0)
        if reset_after:
            if ln is not None:
                dln[1] += _rows_sum(dgh[t] * ex["ph_hat"][t])
                dph[t] = _layer_norm_backward(dgh[t], ex["ph_hat"][t], ex["ph_rstd"][t], ln[1])
            dw_hh += mm(dph[t].T, hm)
            dhm = mm(dph[t], w_hh)
        else:
            dw_hh[: 2 * H] += mm(dgx[t, :, : 2 * H].T, hm)
            dw_hh[2 * H :] += mm(dgh[t, :, 2 * H :].T, extra[t])  # W_hn multiplies r * h
            dhm = mm(dgx[t, :, : 2 * H], w_hrz)
        dh_prev = dh_prev + (dhm if rmask is None else dhm * rmask)
        dh = np.where(run > 0, dh_prev, dh_in)
    dpx = dgx
    if ln is not None:
        dln[0] += _rows_sum(dgx * ex["px_hat"])
        dpx = _layer_norm_backward(dgx, ex["px_hat"], ex["px_rstd"], ln[0])
    dx = mm(dpx, w_ih)
    dw_ih = einsum("tbg,tbi->gi", dpx, x)
    saved.consume()
    grads = (
        dx,
        dh,
        dw_ih,
        dw_hh,
        _bias_grads(dgx, saved.has_bias),
        _bias_grads(dgh, saved.has_bias),
    )
    return grads if ln is None else grads + tuple(dln)


# ----------------------------------------------------------------------------- RNN


@_bfloat16_forward
def rnn_forward(
    x,
    h0,
    w_ih,
    w_hh,
    b_ih,
    b_hh,
    training: bool = True,
    nonlinearity: str = "tanh",
    *,
    lengths=None,
    precision: str = "fp32",
) -> Tuple[Array, Array, Optional[RnnSaved]]:
    """Elman RNN over T steps, h' = act(W_ih x + b_ih + W_hh h + b_hh), act in {tanh, relu}.

    Returns ``(y (T,B,H), h_n (B,H), saved or None)``.
    """
    mm, _ = _products(precision)
    T, B, _ = x.shape
    H = w_hh.shape[1]
    h0 = _zeros_if_none(h0, (B, H), x.dtype)
    h = h0
    packed = as_packed("reference", lengths, T, B)
    masks = _masks(packed, T, B, x.dtype)
    x = x if packed is None else _zero_padding(x, masks)
    gx = _input_projection(x, w_ih, b_ih, mm)
    act = np.tanh if nonlinearity == "tanh" else (lambda v: np.maximum(v, 0))
    ys, pre = [], []
    for t in range(T):
        a = gx[t] + mm(h, w_hh.T)
        if b_hh is not None:
            a = a + b_hh
        h_new = act(a)
        run = masks[t]
        h = np.where(run > 0, h_new, h)
        pre.append(a)
        ys.append(np.where(run > 0, h_new, 0))
    y = _stack(ys, (0, B, H), x.dtype)
    saved = None
    if training:
        saved = RnnSaved(
            backend="numpy",
            x=x,
            h0=h0,
            y=y,
            w_ih=w_ih,
            w_hh=w_hh,
            has_bias=b_ih is not None,
            gates=_stack(pre, (0, B, H), x.dtype),
            packed=packed,
            nonlinearity=nonlinearity,
            precision=precision,
        )
    return y, h, saved


@_bfloat16_backward
def rnn_backward(saved: RnnSaved, dy, dh_n) -> Tuple[Optional[Array], ...]:
    """BPTT through :func:`rnn_forward`. Returns ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``."""
    x, w_ih, w_hh, y = saved.x, saved.w_ih, saved.w_hh, saved.y
    mm, einsum = _products(saved.precision)
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dy = _zeros_if_none(dy, (T, B, H), x.dtype)
    dh = _zeros_if_none(dh_n, (B, H), x.dtype).copy()
    da_all = np.zeros((T, B, H), x.dtype)
    masks = _masks(saved.packed, T, B, x.dtype)
    for t in reversed(range(T)):
        run = masks[t]
        dh_t = np.where(run > 0, dh + dy[t], 0)
        h = y[t]  # the output of every running row
        # Derivatives from the saved output: tanh' = 1 - h^2, relu' = [h > 0].
        da = dh_t * (1 - h * h) if saved.nonlinearity == "tanh" else dh_t * (h > 0)
        da_all[t] = np.where(run > 0, da, 0)
        dh = np.where(run > 0, mm(da, w_hh), dh)
    dx = mm(da_all, w_ih)
    dw_ih = einsum("tbg,tbi->gi", da_all, x)
    dw_hh = einsum("tbg,tbh->gh", da_all, _h_prev(saved))
    db = _bias_grads(da_all, saved.has_bias)
    saved.consume()
    return dx, dh, dw_ih, dw_hh, db, None if db is None else db.copy()
