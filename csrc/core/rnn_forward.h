// Elman RNN forward time loop, written once for every backend: the input projection a few
// steps ahead of use (StepGates), and per step gates_t += h_{t-1} W_hh^T fused with the
// activation.
#pragma once

#include "core/cell_math.h"
#include "core/loop_common.h"
#include "fastrnn/rnn.h"

FASTRNN_NS_BEGIN

template <typename S>
struct RnnForwardStep {
  const S* gates;  // (B, H) pre-activations of step t
  S* h;            // (B, H) = y[t]
  int64_t H;
  bool is_tanh;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    h[b * H + j] = rnn_activation(is_tanh, gates[b * H + j]);
  }
};

template <typename S, typename Backend>
void rnn_forward_loop(Backend& be, const RnnForwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, H = a.H, BH = B * H;
  if (T == 0 || B == 0) {
    be.copy(BH, a.h0, a.h_n);
    return;
  }
  const bool is_tanh = a.act == Activation::Tanh;
  StepGates<S, Backend> gates(be, a.gates, T, B, a.I, H, a.x, a.w_ih, a.b_ih, a.b_hh, H);
  const auto w = be.pack(a.w_hh, H, 1, 1, H, H, T);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t M = rows_at(a.batch_sizes, B, t);
    S* g = gates.at(t);
    const S* h_prev = t == 0 ? a.h0 : a.y + (t - 1) * BH;
    be.step(w, M, M, h_prev, H, g, H, S(1), RnnForwardStep<S>{g, a.y + t * BH, H, is_tanh});
  }
  zero_finished_rows(be, a.batch_sizes, T, B, H, a.y);
  gather_final(be, a.batch_sizes, T, B, H, a.y, a.h0, a.h_n);
}

FASTRNN_NS_END
