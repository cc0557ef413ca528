// LSTM, gates (i, f, g, o):  i, f, o = sigmoid(.), g = tanh(.),
//   c' = f * c + i * g,   h' = o * tanh(c'),
// or with a projection (LSTMP, proj_size P < H):  h' = W_hr (o * tanh(c')).
// P is the size of h: H without a projection. The arguments of lstm_forward and
// lstm_backward, which fastrnn.h declares with the conventions of every kernel.
#pragma once

#include <cstdint>

namespace fastrnn {

template <typename S>
struct LstmForwardArgs {
  int64_t T, B, I, H, P;
  const int64_t* batch_sizes;  // (T) sequences running at step t (non-increasing), or null
  const S* x;                  // (T, B, I)
  const S* h0;                 // (B, P)
  const S* c0;                 // (B, H)
  const S* w_ih;               // (4H, I)
  const S* w_hh;               // (4H, P)
  const S* b_ih;               // (4H) or null
  const S* b_hh;               // (4H) or null
  const S* w_hr;               // (P, H) or null (no projection: P == H)
  S* y;                        // (T, B, P) out: h_1 .. h_T, zero where a sequence has ended
  S* h_n;                      // (B, P) out: h at each sequence's last step
  S* c_n;                      // (B, H) out
  bool training;
  // Training: saved for backward. Inference: workspace (gates null: the kernel projects the
  // input a few steps at a time, so memory does not grow with T).
  S* gates;  // (T, B, 4H) activated gates
  S* cells;  // training (T + 1, B, H): c_0 .. c_T; inference (B, H)
  S* m;      // with w_hr: o * tanh(c), training (T, B, H), inference (B, H); else null
  // Matrix products on bf16-rounded operands with fp32 accumulation (everything else in
  // S); the backward of a bf16 forward runs in bf16 too.
  bool bf16 = false;
  // Regularization, fastrnn extras (null: off). zoneout_h (T, B, P), zoneout_c (T, B, H): the
  // factor d of h_t = d h_{t-1} + (1 - d) h~_t (and of c), h~ the cell's update -- a 0/1
  // draw in training, the probability p in evaluation; the outputs are the zoned-out h_t.
  // recurrent_mask (B, P): variational recurrent dropout, h_{t-1} enters W_hh as
  // h_{t-1} * mask (scaled by the caller). The backward takes the forward's.
  const S* zoneout_h = nullptr;
  const S* zoneout_c = nullptr;
  const S* recurrent_mask = nullptr;
  // Layer norm (fastrnn extra; null weights: off; no projection). a = LN(W_ih x; ln_ih_weight)
  // + LN(W_hh h; ln_hh_weight) + b_ih + b_hh, each over the row's 4H, and
  // h = o tanh(LN(c; ln_cell_weight, ln_cell_bias)) (LN(v; g, b) = g (v - mean) / std + b,
  // std with the biased variance + 1e-5). Training saves the normalized values, ln_ih and
  // ln_hh (T, B, 4H), ln_cell (T, B, H), and their 1/std in ln_rstd (T, B, 3) (ih, hh,
  // cell); inference needs none of them (null).
  const S* ln_ih_weight = nullptr;    // (4H)
  const S* ln_hh_weight = nullptr;    // (4H)
  const S* ln_cell_weight = nullptr;  // (H)
  const S* ln_cell_bias = nullptr;    // (H)
  S* ln_ih = nullptr;
  S* ln_hh = nullptr;
  S* ln_cell = nullptr;
  S* ln_rstd = nullptr;
};

template <typename S>
struct LstmBackwardArgs {
  int64_t T, B, I, H, P;
  const int64_t* batch_sizes;  // as in the forward
  const S* x;                  // (T, B, I)   the forward's input
  const S* h0;                 // (B, P)      the forward's h0
  const S* y;                  // (T, B, P)   the forward's output
  const S* w_ih;               // (4H, I)
  const S* w_hh;               // (4H, P)
  const S* w_hr;               // (P, H) or null
  S* gates;                    // (T, B, 4H)  saved gates in, gate gradients out (in place)
  const S* cells;              // (T + 1, B, H) saved c_0 .. c_T
  const S* m;                  // (T, B, H) saved o * tanh(c) with w_hr, else null
  const S* dy;                 // (T, B, P)
  const S* dh_n;               // (B, P)
  const S* dc_n;               // (B, H)
  S* dx;                       // (T, B, I) out
  S* dh0;                      // (B, P) out
  S* dc0;                      // (B, H) out
  S* dw_ih;                    // (4H, I) out
  S* dw_hh;                    // (4H, P) out
  S* dw_hr;                    // (P, H) out with w_hr, else null
  S* db_ih;                    // (4H) out, or null (no bias)
  S* db_hh;                    // (4H) out, or null (no bias)
  // Matrix products on bf16-rounded operands with fp32 accumulation (everything else in
  // S); the backward of a bf16 forward runs in bf16 too.
  bool bf16 = false;
  // Regularization, fastrnn extras (null: off). zoneout_h (T, B, P), zoneout_c (T, B, H): the
  // factor d of h_t = d h_{t-1} + (1 - d) h~_t (and of c), h~ the cell's update -- a 0/1
  // draw in training, the probability p in evaluation; the outputs are the zoned-out h_t.
  // recurrent_mask (B, P): variational recurrent dropout, h_{t-1} enters W_hh as
  // h_{t-1} * mask (scaled by the caller). The backward takes the forward's.
  const S* zoneout_h = nullptr;
  const S* zoneout_c = nullptr;
  const S* recurrent_mask = nullptr;
  // Layer norm: the forward's weights and saved values (ln_ih and ln_hh are overwritten), and
  // the gradients of the weights (out).
  const S* ln_ih_weight = nullptr;
  const S* ln_hh_weight = nullptr;
  const S* ln_cell_weight = nullptr;
  const S* ln_cell_bias = nullptr;
  S* ln_ih = nullptr;
  S* ln_hh = nullptr;
  const S* ln_cell = nullptr;
  const S* ln_rstd = nullptr;
  S* dln_ih_weight = nullptr;
  S* dln_hh_weight = nullptr;
  S* dln_cell_weight = nullptr;
  S* dln_cell_bias = nullptr;
};

}  // namespace fastrnn
