// LSTM forward time loop, written once for every backend.
// Per call: the input projection for all steps (one GEMM) and W_hh packed once.
// Per step: gates_t += h_{t-1} W_hh^T, fused with the cell update (LstmForwardStep).
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
  S* h;             // (B, H) = y[t]
  int64_t H;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 4 * H;
    const int64_t k = b * H + j;
    lstm_cell_forward(g[j], g[H + j], g[2 * H + j], g[3 * H + j], c_prev[k], c[k], h[k]);
  }
};

template <typename S, typename Backend>
void lstm_forward_loop(Backend& be, const LstmForwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, H = a.H, BH = B * H, G4 = 4 * H;
  // Training keeps every c_t (c_0 at index 0); inference overwrites one (B, H) buffer.
  const int64_t c_stride = a.training ? BH : 0;
  be.copy(BH, a.c0, a.cells);
  if (T == 0 || B == 0) {
    be.copy(BH, a.h0, a.h_n);
    be.copy(BH, a.c0, a.c_n);
    return;
  }
  input_projection(be, T * B, a.I, G4, a.x, a.w_ih, a.b_ih, a.b_hh, G4, a.gates);
  const auto w = be.pack(a.w_hh, H, 1, 4, H, H);
  for (int64_t t = 0; t < T; ++t) {
    S* g = a.gates + t * B * G4;
    const S* h_prev = t == 0 ? a.h0 : a.y + (t - 1) * BH;
    const LstmForwardStep<S> f{g, a.cells + t * c_stride, a.cells + (t + 1) * c_stride,
                               a.y + t * BH, H};
    be.step(w, B, h_prev, H, g, G4, S(1), f);
  }
  be.copy(BH, a.y + (T - 1) * BH, a.h_n);
  be.copy(BH, a.cells + T * c_stride, a.c_n);
}

FASTRNN_NS_END
