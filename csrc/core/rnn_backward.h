// Elman RNN backward (BPTT) time loop, written once for every backend. Per step:
// dh_t = dy_t + da_{t+1} W_hh fused with da_t = dh_t * act'(h_t), act' taken from the saved
// output. After the loop: dx, dW_ih, dW_hh as large GEMMs, the biases as column sums.
#pragma once

#include "core/cell_math.h"
#include "core/loop_common.h"
#include "fastrnn/rnn.h"

FASTRNN_NS_BEGIN

template <typename S>
struct RnnBackwardStep {
  S* da;            // (B, H) out: pre-activation gradient of step t
  const S* h;       // (B, H) y[t]
  const S* dy;      // (B, H)
  const S* dh_rec;  // (B, H) gradient reaching h_t through step t+1
  int64_t H;
  bool is_tanh;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    const int64_t k = b * H + j;
    da[k] = rnn_activation_backward(is_tanh, h[k], dy[k] + dh_rec[k]);
  }
};

template <typename S, typename Backend>
void rnn_backward_loop(Backend& be, const RnnBackwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, I = a.I, H = a.H, BH = B * H;
  be.copy(BH, a.dh_n, a.dh0);
  if (T == 0 || B == 0) {
    zero_grads(be, T * B, I, H, H, a.dx, a.dw_ih, a.dw_hh, a.db_ih, a.db_hh);
    return;
  }
  const bool is_tanh = a.act == Activation::Tanh;
  auto f = [&](int64_t t) {
    return RnnBackwardStep<S>{a.gates + t * BH, a.y + t * BH, a.dy + t * BH, a.dh0, H, is_tanh};
  };
  auto rows = [&](int64_t t) { return rows_at(a.batch_sizes, B, t); };
  const auto w = be.pack(a.w_hh, 1, H, 1, H, H, T);
  be.pointwise(rows(T - 1), H, f(T - 1));
  for (int64_t t = T - 2; t >= 0; --t)
    be.step(w, rows(t + 1), rows(t), a.gates + (t + 1) * BH, H, a.dh0, H, S(0), f(t));
  be.step(w, rows(0), a.gates, H, a.dh0, H, S(0));
  zero_finished_rows(be, a.batch_sizes, T, B, H, a.gates);

  input_side_grads(be, T * B, I, H, a.gates, H, a.x, a.w_ih, S(0), a.dx, a.dw_ih, a.db_ih);
  hidden_weight_grads(be, T, B, H, H, a.gates, H, a.h0, a.y, a.dw_hh);
  if (a.db_hh) be.copy(H, a.db_ih, a.db_hh);
}

FASTRNN_NS_END
