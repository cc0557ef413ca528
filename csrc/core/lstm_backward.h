// LSTM backward (BPTT) time loop, written once for every backend.
// Per step t (from T-1 down): dh_t = dy_t + dgates_{t+1} W_hh (the packed GEMM, C = dh0's
// buffer), fused with the cell's backward, which turns the saved gates of step t into
// their gradients in place and carries dc. After the loop: dx, dW_ih, dW_hh as large
// GEMMs over all steps and the bias gradients as column sums.
#pragma once

#include "core/cell_math.h"
#include "core/loop_common.h"
#include "fastrnn/lstm.h"

FASTRNN_NS_BEGIN

template <typename S>
struct LstmBackwardStep {
  S* gates;         // (B, 4H) of step t: activations in, pre-activation gradients out
  const S* c_prev;  // (B, H) c_{t-1}
  const S* c;       // (B, H) c_t
  const S* dy;      // (B, H) dy_t
  const S* dh_rec;  // (B, H) gradient reaching h_t through step t+1
  S* dc;            // (B, H) gradient reaching c_t in, c_{t-1} out
  int64_t H;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 4 * H;
    const int64_t k = b * H + j;
    lstm_cell_backward(g[j], g[H + j], g[2 * H + j], g[3 * H + j], c_prev[k], c[k],
                       dy[k] + dh_rec[k], dc[k]);
  }
};

template <typename S, typename Backend>
void lstm_backward_loop(Backend& be, const LstmBackwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, I = a.I, H = a.H, BH = B * H, G4 = 4 * H;
  be.copy(BH, a.dh_n, a.dh0);  // dh0 doubles as the running dh buffer
  be.copy(BH, a.dc_n, a.dc0);  // and dc0 as the running dc
  if (T == 0 || B == 0) {
    be.fill_zero(G4 * I, a.dw_ih);
    be.fill_zero(G4 * H, a.dw_hh);
    if (a.db_ih) be.fill_zero(G4, a.db_ih);
    if (a.db_hh) be.fill_zero(G4, a.db_hh);
    be.fill_zero(T * B * I, a.dx);
    return;
  }
  auto f = [&](int64_t t) {
    return LstmBackwardStep<S>{a.gates + t * B * G4,
                               a.cells + t * BH,
                               a.cells + (t + 1) * BH,
                               a.dy + t * BH,
                               a.dh0,
                               a.dc0,
                               H};
  };
  // W_hh (4H, H) as the K x N right operand of dh = dgates W_hh.
  const auto w = be.pack(a.w_hh, 1, H, 1, H, G4);
  be.pointwise(B, H, f(T - 1));
  for (int64_t t = T - 2; t >= 0; --t)
    be.step(w, B, a.gates + (t + 1) * B * G4, G4, a.dh0, H, S(0), f(t));
  be.gemm(false, false, B, H, G4, S(1), a.gates, G4, a.w_hh, H, S(0), a.dh0, H);

  input_side_grads(be, T * B, I, G4, a.gates, G4, a.x, a.w_ih, S(0), a.dx, a.dw_ih, a.db_ih);
  hidden_weight_grads(be, T, B, H, G4, a.gates, G4, a.h0, a.y, a.dw_hh);
  if (a.db_hh) be.copy(G4, a.db_ih, a.db_hh);  // b_ih and b_hh enter the same sum
}

FASTRNN_NS_END
