// The GRU's time loops, forward and backward (BPTT), written once for every backend and
// both placements of the reset gate.
//
// Saved buffers, the contract between a training forward and its backward (shapes as in
// fastrnn/gru.h). Rows of a sequence past its end are zero in y (and in reset_before's
// extra), unspecified elsewhere: backward reads only the rows that ran, and zeroes the others.
//   gates (T, B, 3H)  forward writes the activations r, z, n of every step; backward turns
//                     them into gradients in place (which ones: see the backward below)
//   extra (T, B, H)   reset_after:  W_hn h_{t-1} + b_hn; backward overwrites it with dn
//                     reset_before: r * h_{t-1}, the input of W_hn; read-only to backward
//   y     (T, B, H)   the forward's output h_1 .. h_T: with h0, the h_{t-1} of every step
// Inference saves nothing: gates is a few steps' workspace, extra one (B, H) buffer.
#pragma once

#include "core/cell_math.h"
#include "core/gru_layer_norm.h"
#include "core/loop_common.h"
#include "fastrnn/gru.h"

FASTRNN_NS_BEGIN

// ============================================================================ forward
// GRU forward time loop, written once for every backend, for both placements of the reset
// gate. Per call: W_hh packed once; the input projection a few steps ahead of use
// (StepGates), with b_ih and the r, z part of b_hh folded in (and b_hn too when reset comes
// before the GEMM).
//   reset_after:  one recurrent GEMM per step into gh (B, 3H), fused with GruAfterStep.
//   reset_before: n's GEMM needs r * h, so two fused GEMMs per step: h W_h{r,z}^T into the
//                 r, z gates (GruRzStep writes r * h), then (r * h) W_hn^T into n (GruNStep).

// Zoneout: d h_prev + (1 - d) h_new where d is given (X), else h_new.
template <bool X, typename S>
FASTRNN_HD S zoned(const S* d, int64_t k, S h_prev, S h_new) {
  if constexpr (X)
    if (d) return d[k] * h_prev + (S(1) - d[k]) * h_new;
  return h_new;
}

// X: with the extras (zoneout, recurrent dropout), a separate instantiation so that the
// plain pass carries no test for them. d_h: zoneout's factor of step t (B, H), or null.
template <typename S, bool X = false>
struct GruAfterStep {
  S* gates;         // (B, 3H) of step t: x-side pre-activations in, activations out
  const S* gh;      // (B, 3H) h_{t-1} W_hh^T (times the recurrent mask)
  const S* b_hn;    // (H) or null
  const S* h_prev;  // (B, H)
  S* h;             // (B, H) = y[t]
  S* hn;            // (B, H) W_hn h + b_hn, saved for backward
  int64_t H;
  const S* d_h = nullptr;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 3 * H;
    const S* q = gh + b * 3 * H;
    const int64_t k = b * H + j;
    S r = g[j] + q[j], z = g[H + j] + q[H + j];
    gru_rz_forward(r, z);
    const S hn_v = q[2 * H + j] + (b_hn ? b_hn[j] : S(0));
    const S n = tanh_(g[2 * H + j] + r * hn_v);
    h[k] = zoned<X>(d_h, k, h_prev[k], gru_update(z, n, h_prev[k]));
    g[j] = r;
    g[H + j] = z;
    g[2 * H + j] = n;
    hn[k] = hn_v;
  }
};

template <typename S>
struct GruRzStep {
  S* gates;         // (B, 3H): r, z pre-activations (x side + GEMM) in, activations out
  const S* h_prev;  // (B, H) h_{t-1} as it enters W_hh (times the recurrent mask)
  S* rh;            // (B, H) r * h_{t-1}: the next GEMM's input, saved for backward
  int64_t H;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 3 * H;
    gru_rz_forward(g[j], g[H + j]);
    rh[b * H + j] = g[j] * h_prev[b * H + j];
  }
};

template <typename S, bool X = false>
struct GruNStep {
  S* gates;         // (B, 3H): n pre-activation in, activation out
  const S* h_prev;  // (B, H)
  S* h;             // (B, H) = y[t]
  int64_t H;
  const S* d_h = nullptr;  // zoneout (B, H) with X, or null
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 3 * H;
    const S n = tanh_(g[2 * H + j]);
    g[2 * H + j] = n;
    const int64_t k = b * H + j;
    h[k] = zoned<X>(d_h, k, h_prev[k], gru_update(g[H + j], n, h_prev[k]));
  }
};

template <bool X, typename S, typename Backend>
void gru_forward_impl(Backend& be, const GruForwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, H = a.H, BH = B * H, G3 = 3 * H;
  const int64_t extra_stride = a.training ? BH : 0;
  StepGates<S, Backend> gates(be, a.training ? a.gates : nullptr, T, B, a.I, G3, a.x, a.w_ih,
                              a.b_ih, a.b_hh, a.reset_after ? 2 * H : G3);
  RecurrentInput<S, Backend> recurrent_input(be, B, H, X ? a.recurrent_mask : nullptr);
  auto d_h = [&](int64_t t) -> const S* { return a.zoneout_h ? a.zoneout_h + t * BH : nullptr; };
  if (a.reset_after) {
    const auto w = be.pack(times_transposed(a.w_hh, 3, H, H), T, B);
    S* gh = be.alloc(B * G3);
    const S* b_hn = a.b_hh ? a.b_hh + 2 * H : nullptr;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t M = rows_at(a.batch_sizes, B, t);
      const S* h_prev = t == 0 ? a.h0 : a.y + (t - 1) * BH;
      const GruAfterStep<S, X> f{
          gates.at(t), gh, b_hn, h_prev, a.y + t * BH, a.extra + t * extra_stride, H, d_h(t)};
      be.step(w, M, M, recurrent_input(M, h_prev), H, gh, G3, S(0), f);
    }
  } else {
    const auto w_rz = be.pack(times_transposed(a.w_hh, 2, H, H), T, B);
    const auto w_n = be.pack(times_transposed(a.w_hh + 2 * H * H, 1, H, H), T, B);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t M = rows_at(a.batch_sizes, B, t);
      S* g = gates.at(t);
      const S* h_prev = t == 0 ? a.h0 : a.y + (t - 1) * BH;
      const S* hm = recurrent_input(M, h_prev);
      S* rh = a.extra + t * extra_stride;
      be.step(w_rz, M, M, hm, H, g, G3, S(1), GruRzStep<S>{g, hm, rh, H});
      be.step(w_n, M, M, rh, H, g + 2 * H, G3, S(1),
              GruNStep<S, X>{g, h_prev, a.y + t * BH, H, d_h(t)});
    }
    // r * h of finished rows is never written; dW_hn = dn^T (r * h) reads every row.
    if (a.training) zero_finished_rows(be, a.batch_sizes, T, B, H, a.extra);
  }
  zero_finished_rows(be, a.batch_sizes, T, B, H, a.y);
  gather_final(be, a.batch_sizes, T, B, H, a.y, a.h0, a.h_n);
}

template <typename S, typename Backend>
void gru_forward_loop(Backend& be, const GruForwardArgs<S>& a) {
  if (a.T == 0 || a.B == 0) {
    be.copy(a.B * a.H, a.h0, a.h_n);
    return;
  }
  if (a.ln_ih_weight) {
    gru_layer_norm_forward_loop(be, a);
    return;
  }
  if (a.zoneout_h || a.recurrent_mask)
    gru_forward_impl<true>(be, a);
  else
    gru_forward_impl<false>(be, a);
}

// ============================================================================ backward
// GRU backward (BPTT) time loop, written once for every backend, both reset placements.
// dh0's buffer carries the running dh: each step's pointwise pass leaves there the part of
// dh_{t-1} that bypasses the GEMMs (dh * z), and the next GEMM adds the rest (beta = 1).
//   reset_after:  gates_t become the h-side gradients (dr, dz, dn * r), the GEMM operand of
//                 dh_{t-1} and of dW_hh; extra_t (W_hn h + b_hn) becomes dn, the x side.
//   reset_before: gates_t become (dr, dz, dn), the x-side gradients; d(r * h) = dn W_hn is
//                 a second fused GEMM per step, whose pointwise pass (GruBeforeRStep)
//                 produces dr. dW_hn = dn^T (r * h) from the saved r * h.

template <typename S, bool X = false>
struct GruAfterBackStep {
  S* gates;         // (B, 3H) r, z, n in; dr, dz, dn * r out
  S* extra;         // (B, H)  W_hn h + b_hn in; dn out
  const S* h_prev;  // (B, H)
  const S* dy;      // (B, H)
  S* dh;            // (B, H)  GEMM part of dh_t in (plus the direct part); dh * z out
  int64_t H;
  GruBackExtras<S> x{};
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 3 * H;
    const int64_t k = b * H + j;
    const S r = g[j], z = g[H + j], n = g[2 * H + j], hn = extra[k];
    S dn, dz, direct, keep;
    const S total = gru_dh_total<X>(k, dy, dh, x.dhw, x.mask, x.d_h, &keep);
    gru_shared_backward(z, n, h_prev[k], total, dn, dz, direct);
    g[j] = dn * hn * r * (S(1) - r);
    g[H + j] = dz;
    g[2 * H + j] = dn * r;
    extra[k] = dn;
    dh[k] = direct + keep;
  }
};

template <typename S, bool X = false>
struct GruBeforeZnStep {
  S* gates;         // (B, 3H) z, n in; dz, dn out (r stays for GruBeforeRStep)
  const S* h_prev;  // (B, H)
  const S* dy;      // (B, H)
  S* dh;            // (B, H) as in GruAfterBackStep
  int64_t H;
  GruBackExtras<S> x{};
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 3 * H;
    const int64_t k = b * H + j;
    S dn, dz, direct, keep;
    const S total = gru_dh_total<X>(k, dy, dh, x.dhw, x.mask, x.d_h, &keep);
    gru_shared_backward(g[H + j], g[2 * H + j], h_prev[k], total, dn, dz, direct);
    g[H + j] = dz;
    g[2 * H + j] = dn;
    dh[k] = direct + keep;
  }
};

template <typename S>
struct GruBeforeRStep {
  S* gates;       // (B, 3H) r in; dr out
  const S* h_in;  // (B, H) h_{t-1} as it entered W_hh (times the recurrent mask)
  const S* drh;   // (B, H) d(r * h) = dn W_hn
  S* dh;          // (B, H) direct part of dh_{t-1}, += d(r * h) * r (* mask)
  const S* mask;  // (B, H) the recurrent mask, or null
  int64_t H;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 3 * H;
    const int64_t k = b * H + j;
    const S r = g[j], d = drh[k];
    g[j] = d * h_in[k] * r * (S(1) - r);
    dh[k] += mask ? d * r * mask[k] : d * r;
  }
};

// The backward loop; X: with the extras, whose recurrent GEMMs write dgates W_hh into dhw
// (beta = 0) for the pointwise pass to take times the mask, where the plain loop adds them
// into the carry (beta = 1).
template <bool X, typename S, typename Backend>
void gru_backward_impl(Backend& be, const GruBackwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, I = a.I, H = a.H, BH = B * H, G3 = 3 * H, TB = T * B;
  const int64_t* bs = a.batch_sizes;
  auto rows = [&](int64_t t) { return rows_at(bs, B, t); };
  auto h_prev = [&](int64_t t) { return t == 0 ? a.h0 : a.y + (t - 1) * BH; };
  auto gates = [&](int64_t t) { return a.gates + t * B * G3; };
  const S* mask = X ? a.recurrent_mask : nullptr;
  // h_{t-1} as W_hh multiplied it: the masked states with recurrent dropout.
  const S* hm = mask ? masked_states(be, T, B, H, a.h0, a.y, mask) : nullptr;
  auto h_in = [&](int64_t t) { return hm ? hm + t * BH : h_prev(t); };
  S* dhw = nullptr;  // X: the recurrent GEMMs' output; rows no GEMM wrote stay zero
  if (X) {
    dhw = be.alloc(BH);
    be.fill_zero(BH, dhw);
  }
  GruBackExtras<S> ex{dhw, mask, nullptr};
  auto extras = [&](int64_t t) {
    GruBackExtras<S> e = ex;
    e.d_h = X && a.zoneout_h ? a.zoneout_h + t * BH : nullptr;
    return e;
  };
  S* gemm_out = X ? dhw : a.dh0;  // where dgates_{t+1} W_hh goes
  const S beta = X ? S(0) : S(1);
  if (a.reset_after) {
    auto f = [&](int64_t t) {
      return GruAfterBackStep<S, X>{gates(t), a.extra + t * BH, h_prev(t), a.dy + t * BH, a.dh0,
                                    H,        extras(t)};
    };
    const auto w = be.pack(times(a.w_hh, G3, H), T, B);
    be.pointwise(rows(T - 1), H, f(T - 1));
    for (int64_t t = T - 2; t >= 0; --t)
      be.step(w, rows(t + 1), rows(t), gates(t + 1), G3, gemm_out, H, beta, f(t));
    be.step(w, rows(0), gates(0), G3, gemm_out, H, beta);
    if (X) be.pointwise(rows(0), H, AddMaskedRows<S>{a.dh0, dhw, mask, H});
    zero_finished_rows(be, bs, T, B, G3, a.gates);
    zero_finished_rows(be, bs, T, B, H, a.extra);

    // x side: rows r, z from gates, rows n from extra (= dn).
    input_side_grads(be, TB, I, 2 * H, a.gates, G3, a.x, a.w_ih, S(0), a.dx, a.dw_ih, a.db_ih);
    input_side_grads(be, TB, I, H, a.extra, H, a.x, a.w_ih + 2 * H * I, S(1), a.dx,
                     a.dw_ih + 2 * H * I, a.db_ih ? a.db_ih + 2 * H : nullptr);
    // h side: gates hold (dr, dz, dn * r) for all three row blocks.
    hidden_weight_grads(be, T, B, H, G3, a.gates, G3, hm ? hm : a.h0, hm ? hm + BH : a.y, a.dw_hh);
    if (a.db_hh) be.colsum(TB, G3, a.gates, G3, a.db_hh);
  } else {
    const S* w_hn = a.w_hh + 2 * H * H;
    const auto w_rz = be.pack(times(a.w_hh, 2 * H, H), T, B);  // d(h) from dr, dz
    const auto w_n = be.pack(times(w_hn, H, H), T, B);         // d(r * h) from dn
    S* drh = be.alloc(BH);
    auto f_zn = [&](int64_t t) {
      return GruBeforeZnStep<S, X>{gates(t), h_prev(t), a.dy + t * BH, a.dh0, H, extras(t)};
    };
    auto r_step = [&](int64_t t) {
      be.step(w_n, rows(t), rows(t), gates(t) + 2 * H, G3, drh, H, S(0),
              GruBeforeRStep<S>{gates(t), h_in(t), drh, a.dh0, mask, H});
    };
    be.pointwise(rows(T - 1), H, f_zn(T - 1));
    r_step(T - 1);
    for (int64_t t = T - 2; t >= 0; --t) {
      be.step(w_rz, rows(t + 1), rows(t), gates(t + 1), G3, gemm_out, H, beta, f_zn(t));
      r_step(t);
    }
    be.step(w_rz, rows(0), gates(0), G3, gemm_out, H, beta);
    if (X) be.pointwise(rows(0), H, AddMaskedRows<S>{a.dh0, dhw, mask, H});
    zero_finished_rows(be, bs, T, B, G3, a.gates);

    input_side_grads(be, TB, I, G3, a.gates, G3, a.x, a.w_ih, S(0), a.dx, a.dw_ih, a.db_ih);
    hidden_weight_grads(be, T, B, H, 2 * H, a.gates, G3, hm ? hm : a.h0, hm ? hm + BH : a.y,
                        a.dw_hh);
    be.gemm(true, false, H, H, TB, S(1), a.gates + 2 * H, G3, a.extra, H, S(0), a.dw_hh + 2 * H * H,
            H);
    if (a.db_hh) be.copy(G3, a.db_ih, a.db_hh);  // every b_hh enters where b_ih does
  }
}

template <typename S, typename Backend>
void gru_backward_loop(Backend& be, const GruBackwardArgs<S>& a) {
  be.copy(a.B * a.H, a.dh_n, a.dh0);
  if (a.T == 0 || a.B == 0) {
    zero_grads(be, a.T * a.B, a.I, 3 * a.H, a.H, a.dx, a.dw_ih, a.dw_hh, a.db_ih, a.db_hh);
    if (a.dln_ih_weight) {
      be.fill_zero(3 * a.H, a.dln_ih_weight);
      be.fill_zero(3 * a.H, a.dln_hh_weight);
    }
    return;
  }
  if (a.ln_ih_weight) {
    gru_layer_norm_backward_loop(be, a);
    return;
  }
  if (a.zoneout_h || a.recurrent_mask)
    gru_backward_impl<true>(be, a);
  else
    gru_backward_impl<false>(be, a);
}

FASTRNN_NS_END
