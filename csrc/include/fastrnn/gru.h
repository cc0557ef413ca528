// GRU, gates (r, z, n):  r, z = sigmoid(W_i{r,z} x + b_i{r,z} + W_h{r,z} h + b_h{r,z}),
//   reset_after = true  (cuDNN, PyTorch):  n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
//   reset_after = false (Cho et al. 2014): n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)
//   h' = (1 - z) * n + z * h.
// The arguments of gru_forward and gru_backward, which fastrnn.h declares with the
// conventions of every kernel.
#pragma once

#include <cstdint>

namespace fastrnn {

template <typename S>
struct GruForwardArgs {
  int64_t T, B, I, H;
  const int64_t* batch_sizes;  // (T) sequences running at step t (non-increasing), or null
  const S* x;                  // (T, B, I)
  const S* h0;                 // (B, H)
  const S* w_ih;               // (3H, I)
  const S* w_hh;               // (3H, H)
  const S* b_ih;               // (3H) or null
  const S* b_hh;               // (3H) or null
  S* y;                        // (T, B, H) out, zero where a sequence has ended
  S* h_n;                      // (B, H) out: h at each sequence's last step
  bool training;
  bool reset_after;
  // Training: saved for backward. Inference: gates null (the kernel projects the input a few
  // steps at a time, so memory does not grow with T), extra (B, H) workspace.
  S* gates;  // (T, B, 3H) activated r, z, n
  S* extra;  // training (T, B, H): reset_after: W_hn h + b_hn; reset_before: r * h
  // Matrix products on bf16-rounded operands with fp32 accumulation (everything else in
  // S); the backward of a bf16 forward runs in bf16 too.
  bool bf16 = false;
  // Regularization, fastrnn extras (null: off). zoneout_h (T, B, H): the factor d of
  // h_t = d h_{t-1} + (1 - d) h~_t, h~ the cell's update (a 0/1 draw in training, p in
  // evaluation; the outputs are the zoned-out h_t). recurrent_mask (B, H): variational
  // recurrent dropout, h_{t-1} enters W_hh as h_{t-1} * mask (z h_{t-1} takes h as it is).
  // The backward takes the forward's.
  const S* zoneout_h = nullptr;
  const S* recurrent_mask = nullptr;
  // Layer norm (fastrnn extra; null weights: off; reset_after only): a^x = LN(W_ih x;
  // ln_ih_weight) + b_ih, a^h = LN(W_hh h; ln_hh_weight) + b_hh, each over the row's 3H (LN as
  // in fastrnn/lstm.h). Training saves the normalized values, ln_ih and ln_hh (T, B, 3H),
  // and their 1/std in ln_rstd (T, B, 2); inference needs none of them (null).
  const S* ln_ih_weight = nullptr;  // (3H)
  const S* ln_hh_weight = nullptr;  // (3H)
  S* ln_ih = nullptr;
  S* ln_hh = nullptr;
  S* ln_rstd = nullptr;
};

template <typename S>
struct GruBackwardArgs {
  int64_t T, B, I, H;
  const int64_t* batch_sizes;  // (T) sequences running at step t (non-increasing), or null
  bool reset_after;
  const S* x;     // (T, B, I)
  const S* h0;    // (B, H)
  const S* y;     // (T, B, H)
  const S* w_ih;  // (3H, I)
  const S* w_hh;  // (3H, H)
  S* gates;       // (T, B, 3H) saved gates in, gate gradients out (in place)
  S* extra;       // (T, B, H) saved extra in; reset_after: d(W_in x) out (in place)
  const S* dy;    // (T, B, H)
  const S* dh_n;  // (B, H)
  S* dx;          // (T, B, I) out
  S* dh0;         // (B, H) out
  S* dw_ih;       // (3H, I) out
  S* dw_hh;       // (3H, H) out
  S* db_ih;       // (3H) out, or null
  S* db_hh;       // (3H) out, or null
  // Matrix products on bf16-rounded operands with fp32 accumulation (everything else in
  // S); the backward of a bf16 forward runs in bf16 too.
  bool bf16 = false;
  // Regularization, fastrnn extras (null: off). zoneout_h (T, B, H): the factor d of
  // h_t = d h_{t-1} + (1 - d) h~_t, h~ the cell's update (a 0/1 draw in training, p in
  // evaluation; the outputs are the zoned-out h_t). recurrent_mask (B, H): variational
  // recurrent dropout, h_{t-1} enters W_hh as h_{t-1} * mask (z h_{t-1} takes h as it is).
  // The backward takes the forward's.
  const S* zoneout_h = nullptr;
  const S* recurrent_mask = nullptr;
  // Layer norm: the forward's weights and saved values (ln_ih and ln_hh are overwritten), and
  // the gradients of the weights (out).
  const S* ln_ih_weight = nullptr;
  const S* ln_hh_weight = nullptr;
  S* ln_ih = nullptr;
  S* ln_hh = nullptr;
  const S* ln_rstd = nullptr;
  S* dln_ih_weight = nullptr;
  S* dln_hh_weight = nullptr;
};

}  // namespace fastrnn
