// GRU forward time loop, written once for every backend, for both placements of the reset
// gate. Per call: W_hh packed once; the input projection a few steps ahead of use
// (StepGates), with b_ih and the r, z part of b_hh folded in (and b_hn too when reset comes
// before the GEMM).
//   reset_after:  one recurrent GEMM per step into gh (B, 3H), fused with GruAfterStep.
//   reset_before: n's GEMM needs r * h, so two fused GEMMs per step: h W_h{r,z}^T into the
//                 r, z gates (GruRzStep writes r * h), then (r * h) W_hn^T into n (GruNStep).
#pragma once

#include "core/cell_math.h"
#include "core/loop_common.h"
#include "fastrnn/gru.h"

FASTRNN_NS_BEGIN

template <typename S>
struct GruAfterStep {
  S* gates;         // (B, 3H) of step t: x-side pre-activations in, activations out
  const S* gh;      // (B, 3H) h_{t-1} W_hh^T
  const S* b_hn;    // (H) or null
  const S* h_prev;  // (B, H)
  S* h;             // (B, H) = y[t]
  S* hn;            // (B, H) W_hn h + b_hn, saved for backward
  int64_t H;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 3 * H;
    const S* q = gh + b * 3 * H;
    const int64_t k = b * H + j;
    S r = g[j] + q[j], z = g[H + j] + q[H + j];
    gru_rz_forward(r, z);
    const S hn_v = q[2 * H + j] + (b_hn ? b_hn[j] : S(0));
    const S n = tanh_(g[2 * H + j] + r * hn_v);
    h[k] = gru_update(z, n, h_prev[k]);
    g[j] = r;
    g[H + j] = z;
    g[2 * H + j] = n;
    hn[k] = hn_v;
  }
};

template <typename S>
struct GruRzStep {
  S* gates;         // (B, 3H): r, z pre-activations (x side + GEMM) in, activations out
  const S* h_prev;  // (B, H)
  S* rh;            // (B, H) r * h_{t-1}: the next GEMM's input, saved for backward
  int64_t H;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 3 * H;
    gru_rz_forward(g[j], g[H + j]);
    rh[b * H + j] = g[j] * h_prev[b * H + j];
  }
};

template <typename S>
struct GruNStep {
  S* gates;         // (B, 3H): n pre-activation in, activation out
  const S* h_prev;  // (B, H)
  S* h;             // (B, H) = y[t]
  int64_t H;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 3 * H;
    const S n = tanh_(g[2 * H + j]);
    g[2 * H + j] = n;
    h[b * H + j] = gru_update(g[H + j], n, h_prev[b * H + j]);
  }
};

template <typename S, typename Backend>
void gru_forward_loop(Backend& be, const GruForwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, H = a.H, BH = B * H, G3 = 3 * H;
  if (T == 0 || B == 0) {
    be.copy(BH, a.h0, a.h_n);
    return;
  }
  const int64_t extra_stride = a.training ? BH : 0;
  StepGates<S, Backend> gates(be, a.training ? a.gates : nullptr, T, B, a.I, G3, a.x, a.w_ih,
                              a.b_ih, a.b_hh, a.reset_after ? 2 * H : G3);
  if (a.reset_after) {
    const auto w = be.pack(a.w_hh, H, 1, 3, H, H, T);
    S* gh = be.alloc(B * G3);
    const S* b_hn = a.b_hh ? a.b_hh + 2 * H : nullptr;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t M = rows_at(a.batch_sizes, B, t);
      const S* h_prev = t == 0 ? a.h0 : a.y + (t - 1) * BH;
      const GruAfterStep<S> f{
          gates.at(t), gh, b_hn, h_prev, a.y + t * BH, a.extra + t * extra_stride, H};
      be.step(w, M, M, h_prev, H, gh, G3, S(0), f);
    }
  } else {
    const auto w_rz = be.pack(a.w_hh, H, 1, 2, H, H, T);
    const auto w_n = be.pack(a.w_hh + 2 * H * H, H, 1, 1, H, H, T);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t M = rows_at(a.batch_sizes, B, t);
      S* g = gates.at(t);
      const S* h_prev = t == 0 ? a.h0 : a.y + (t - 1) * BH;
      S* rh = a.extra + t * extra_stride;
      be.step(w_rz, M, M, h_prev, H, g, G3, S(1), GruRzStep<S>{g, h_prev, rh, H});
      be.step(w_n, M, M, rh, H, g + 2 * H, G3, S(1), GruNStep<S>{g, h_prev, a.y + t * BH, H});
    }
    // r * h of finished rows is never written; dW_hn = dn^T (r * h) reads every row.
    if (a.training) zero_finished_rows(be, a.batch_sizes, T, B, H, a.extra);
  }
  zero_finished_rows(be, a.batch_sizes, T, B, H, a.y);
  gather_final(be, a.batch_sizes, T, B, H, a.y, a.h0, a.h_n);
}

FASTRNN_NS_END
