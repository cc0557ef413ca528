// The Elman RNN's time loops, forward and backward (BPTT), written once for every backend.
//
// Saved buffers, the contract between a training forward and its backward (shapes as in
// fastrnn/rnn.h):
//   y     (T, B, H)  the forward's output, zero past each sequence's end: with h0, all that
//                    backward needs (act' is taken from the output itself)
//   gates (T, B, H)  forward's workspace for the input projection; backward reuses it for the
//                    pre-activation gradients (its contents in are not read)
// Inference: gates null, the projection runs a few steps at a time.
#pragma once

#include "core/cell_math.h"
#include "core/loop_common.h"
#include "fastrnn/rnn.h"

FASTRNN_NS_BEGIN

// ============================================================================ forward
// Elman RNN forward time loop, written once for every backend: the input projection a few
// steps ahead of use (StepGates), and per step gates_t += h_{t-1} W_hh^T fused with the
// activation.

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
  const auto w = be.pack(times_transposed(a.w_hh, 1, H, H), T, B);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t M = rows_at(a.batch_sizes, B, t);
    S* g = gates.at(t);
    const S* h_prev = t == 0 ? a.h0 : a.y + (t - 1) * BH;
    be.step(w, M, M, h_prev, H, g, H, S(1), RnnForwardStep<S>{g, a.y + t * BH, H, is_tanh});
  }
  zero_finished_rows(be, a.batch_sizes, T, B, H, a.y);
  gather_final(be, a.batch_sizes, T, B, H, a.y, a.h0, a.h_n);
}

// ============================================================================ backward
// Elman RNN backward (BPTT) time loop, written once for every backend. Per step:
// dh_t = dy_t + da_{t+1} W_hh fused with da_t = dh_t * act'(h_t), act' taken from the saved
// output. After the loop: dx, dW_ih, dW_hh as large GEMMs, the biases as column sums.

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
  const auto w = be.pack(times(a.w_hh, H, H), T, B);
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
