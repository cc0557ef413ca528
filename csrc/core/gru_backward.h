// GRU backward (BPTT) time loop, written once for every backend, both reset placements.
// dh0's buffer carries the running dh: each step's pointwise pass leaves there the part of
// dh_{t-1} that bypasses the GEMMs (dh * z), and the next GEMM adds the rest (beta = 1).
//   reset_after:  gates_t become the h-side gradients (dr, dz, dn * r), the GEMM operand of
//                 dh_{t-1} and of dW_hh; extra_t (W_hn h + b_hn) becomes dn, the x side.
//   reset_before: gates_t become (dr, dz, dn), the x-side gradients; d(r * h) = dn W_hn is
//                 a second fused GEMM per step, whose pointwise pass (GruBeforeRStep)
//                 produces dr. dW_hn = dn^T (r * h) from the saved r * h.
#pragma once

#include "core/cell_math.h"
#include "core/loop_common.h"
#include "fastrnn/gru.h"

FASTRNN_NS_BEGIN

template <typename S>
struct GruAfterBackStep {
  S* gates;         // (B, 3H) r, z, n in; dr, dz, dn * r out
  S* extra;         // (B, H)  W_hn h + b_hn in; dn out
  const S* h_prev;  // (B, H)
  const S* dy;      // (B, H)
  S* dh;            // (B, H)  GEMM part of dh_t in (plus the direct part); dh * z out
  int64_t H;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 3 * H;
    const int64_t k = b * H + j;
    const S r = g[j], z = g[H + j], n = g[2 * H + j], hn = extra[k];
    S dn, dz, direct;
    gru_shared_backward(z, n, h_prev[k], dy[k] + dh[k], dn, dz, direct);
    g[j] = dn * hn * r * (S(1) - r);
    g[H + j] = dz;
    g[2 * H + j] = dn * r;
    extra[k] = dn;
    dh[k] = direct;
  }
};

template <typename S>
struct GruBeforeZnStep {
  S* gates;         // (B, 3H) z, n in; dz, dn out (r stays for GruBeforeRStep)
  const S* h_prev;  // (B, H)
  const S* dy;      // (B, H)
  S* dh;            // (B, H) as in GruAfterBackStep
  int64_t H;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 3 * H;
    const int64_t k = b * H + j;
    S dn, dz, direct;
    gru_shared_backward(g[H + j], g[2 * H + j], h_prev[k], dy[k] + dh[k], dn, dz, direct);
    g[H + j] = dz;
    g[2 * H + j] = dn;
    dh[k] = direct;
  }
};

template <typename S>
struct GruBeforeRStep {
  S* gates;         // (B, 3H) r in; dr out
  const S* h_prev;  // (B, H)
  const S* drh;     // (B, H) d(r * h) = dn W_hn
  S* dh;            // (B, H) direct part of dh_{t-1}, += d(r * h) * r
  int64_t H;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 3 * H;
    const int64_t k = b * H + j;
    const S r = g[j], d = drh[k];
    g[j] = d * h_prev[k] * r * (S(1) - r);
    dh[k] += d * r;
  }
};

template <typename S, typename Backend>
void gru_backward_loop(Backend& be, const GruBackwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, I = a.I, H = a.H, BH = B * H, G3 = 3 * H, TB = T * B;
  be.copy(BH, a.dh_n, a.dh0);
  if (T == 0 || B == 0) {
    zero_grads(be, T * B, I, G3, H, a.dx, a.dw_ih, a.dw_hh, a.db_ih, a.db_hh);
    return;
  }
  const int64_t* bs = a.batch_sizes;
  auto rows = [&](int64_t t) { return rows_at(bs, B, t); };
  auto h_prev = [&](int64_t t) { return t == 0 ? a.h0 : a.y + (t - 1) * BH; };
  auto gates = [&](int64_t t) { return a.gates + t * B * G3; };
  if (a.reset_after) {
    auto f = [&](int64_t t) {
      return GruAfterBackStep<S>{gates(t), a.extra + t * BH, h_prev(t), a.dy + t * BH, a.dh0, H};
    };
    const auto w = be.pack(a.w_hh, 1, H, 1, H, G3, T);  // W_hh (3H, H) as K x N
    be.pointwise(rows(T - 1), H, f(T - 1));
    for (int64_t t = T - 2; t >= 0; --t)
      be.step(w, rows(t + 1), rows(t), gates(t + 1), G3, a.dh0, H, S(1), f(t));
    be.step(w, rows(0), gates(0), G3, a.dh0, H, S(1));
    zero_finished_rows(be, bs, T, B, G3, a.gates);
    zero_finished_rows(be, bs, T, B, H, a.extra);

    // x side: rows r, z from gates, rows n from extra (= dn).
    input_side_grads(be, TB, I, 2 * H, a.gates, G3, a.x, a.w_ih, S(0), a.dx, a.dw_ih, a.db_ih);
    input_side_grads(be, TB, I, H, a.extra, H, a.x, a.w_ih + 2 * H * I, S(1), a.dx,
                     a.dw_ih + 2 * H * I, a.db_ih ? a.db_ih + 2 * H : nullptr);
    // h side: gates hold (dr, dz, dn * r) for all three row blocks.
    hidden_weight_grads(be, T, B, H, G3, a.gates, G3, a.h0, a.y, a.dw_hh);
    if (a.db_hh) be.colsum(TB, G3, a.gates, G3, a.db_hh);
  } else {
    const S* w_hn = a.w_hh + 2 * H * H;
    const auto w_rz = be.pack(a.w_hh, 1, H, 1, H, 2 * H, T);  // W_h{r,z} (2H, H) as K x N
    const auto w_n = be.pack(w_hn, 1, H, 1, H, H, T);         // W_hn (H, H) as K x N
    S* drh = be.alloc(BH);
    auto f_zn = [&](int64_t t) {
      return GruBeforeZnStep<S>{gates(t), h_prev(t), a.dy + t * BH, a.dh0, H};
    };
    auto r_step = [&](int64_t t) {
      be.step(w_n, rows(t), rows(t), gates(t) + 2 * H, G3, drh, H, S(0),
              GruBeforeRStep<S>{gates(t), h_prev(t), drh, a.dh0, H});
    };
    be.pointwise(rows(T - 1), H, f_zn(T - 1));
    r_step(T - 1);
    for (int64_t t = T - 2; t >= 0; --t) {
      be.step(w_rz, rows(t + 1), rows(t), gates(t + 1), G3, a.dh0, H, S(1), f_zn(t));
      r_step(t);
    }
    be.step(w_rz, rows(0), gates(0), G3, a.dh0, H, S(1));
    zero_finished_rows(be, bs, T, B, G3, a.gates);

    input_side_grads(be, TB, I, G3, a.gates, G3, a.x, a.w_ih, S(0), a.dx, a.dw_ih, a.db_ih);
    hidden_weight_grads(be, T, B, H, 2 * H, a.gates, G3, a.h0, a.y, a.dw_hh);
    be.gemm(true, false, H, H, TB, S(1), a.gates + 2 * H, G3, a.extra, H, S(0), a.dw_hh + 2 * H * H,
            H);
    if (a.db_hh) be.copy(G3, a.db_ih, a.db_hh);  // every b_hh enters where b_ih does
  }
}

FASTRNN_NS_END
