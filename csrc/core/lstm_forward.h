// LSTM forward time loop, written once for every backend.
// Per call: W_hh (and W_hr) packed once; the input projection a few steps ahead of use, in
// GEMMs of ~512 rows (StepGates).
// Per step t, on the rows still running:
//   gates_t += h_{t-1} W_hh^T, fused with the cell update (LstmForwardStep);
//   with a projection, h_t = m_t W_hr^T with m_t = o * tanh(c_t) (a second, small GEMM).
#pragma once

#include "core/cell_math.h"
#include "core/loop_common.h"
#include "fastrnn/lstm.h"

FASTRNN_NS_BEGIN

// One element (b, j) of step t: pre-activations in `gates` become activations in place.
template <typename S>
struct LstmForwardStep {
  S* gates;         // (B, 4H) of step t
  const S* c_prev;  // (B, H)
  S* c;             // (B, H); equals c_prev in inference (updated in place)
  S* h;             // (B, H): y[t], or m_t with a projection
  int64_t H;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 4 * H;
    const int64_t k = b * H + j;
    lstm_cell_forward(g[j], g[H + j], g[2 * H + j], g[3 * H + j], c_prev[k], c[k], h[k]);
  }
};

template <typename S, typename Backend>
void lstm_forward_loop(Backend& be, const LstmForwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, H = a.H, P = a.P, BH = B * H, BP = B * P, G4 = 4 * H;
  // Training keeps every c_t (c_0 at index 0); inference updates one (B, H) buffer in place,
  // where a finished sequence's row keeps its last value. The same for m with a projection.
  const int64_t c_stride = a.training ? BH : 0;
  be.copy(BH, a.c0, a.cells);
  if (T == 0 || B == 0) {
    be.copy(BP, a.h0, a.h_n);
    be.copy(BH, a.c0, a.c_n);
    return;
  }
  StepGates<S, Backend> gates(be, a.training ? a.gates : nullptr, T, B, a.I, G4, a.x, a.w_ih,
                              a.b_ih, a.b_hh, G4);
  const auto w = be.pack(a.w_hh, P, 1, 4, H, P, T);
  const bool proj = a.w_hr != nullptr;
  typename Backend::Packed w_r;
  if (proj) w_r = be.pack(a.w_hr, H, 1, 1, P, H, T);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t M = rows_at(a.batch_sizes, B, t);
    S* g = gates.at(t);
    const S* h_prev = t == 0 ? a.h0 : a.y + (t - 1) * BP;
    S* y_t = a.y + t * BP;
    S* m_t = proj ? a.m + t * c_stride : y_t;
    be.step(w, M, M, h_prev, P, g, G4, S(1),
            LstmForwardStep<S>{g, a.cells + t * c_stride, a.cells + (t + 1) * c_stride, m_t, H});
    if (proj) be.step(w_r, M, m_t, H, y_t, P, S(0));
  }
  zero_finished_rows(be, a.batch_sizes, T, B, P, a.y);
  gather_final(be, a.batch_sizes, T, B, P, a.y, a.h0, a.h_n);
  if (a.training) {
    if (proj) zero_finished_rows(be, a.batch_sizes, T, B, H, a.m);
    gather_final(be, a.batch_sizes, T, B, H, a.cells + BH, a.c0, a.c_n);
  } else {
    be.copy(BH, a.cells, a.c_n);
  }
}

FASTRNN_NS_END
