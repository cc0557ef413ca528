// Elman RNN, one gate:  h' = act(W_ih x + b_ih + W_hh h + b_hh), act in {tanh, relu}.
// The arguments of rnn_forward and rnn_backward, which fastrnn.h declares with the
// conventions of every kernel.
#pragma once

#include <cstdint>

namespace fastrnn {

enum class Activation { Tanh, Relu };

template <typename S>
struct RnnForwardArgs {
  int64_t T, B, I, H;
  const int64_t* batch_sizes;  // (T) sequences running at step t (non-increasing), or null
  const S* x;                  // (T, B, I)
  const S* h0;                 // (B, H)
  const S* w_ih;               // (H, I)
  const S* w_hh;               // (H, H)
  const S* b_ih;               // (H) or null
  const S* b_hh;               // (H) or null
  S* y;                        // (T, B, H) out; with h0, all that backward needs
  S* h_n;                      // (B, H) out: h at each sequence's last step
  Activation act;
  S* gates;  // (T, B, H) workspace for the input projection (training: backward reuses it),
             // or null: the kernel then projects a few steps at a time (memory flat in T)
  // Matrix products on bf16-rounded operands with fp32 accumulation (everything else in
  // S); the backward of a bf16 forward runs in bf16 too.
  bool bf16 = false;
};

template <typename S>
struct RnnBackwardArgs {
  int64_t T, B, I, H;
  const int64_t* batch_sizes;  // (T) sequences running at step t (non-increasing), or null
  Activation act;
  const S* x;     // (T, B, I)
  const S* h0;    // (B, H)
  const S* y;     // (T, B, H)
  const S* w_ih;  // (H, I)
  const S* w_hh;  // (H, H)
  S* gates;       // (T, B, H) workspace: pre-activation gradients
  const S* dy;    // (T, B, H)
  const S* dh_n;  // (B, H)
  S* dx;          // (T, B, I) out
  S* dh0;         // (B, H) out
  S* dw_ih;       // (H, I) out
  S* dw_hh;       // (H, H) out
  S* db_ih;       // (H) out, or null
  S* db_hh;       // (H) out, or null
  // Matrix products on bf16-rounded operands with fp32 accumulation (everything else in
  // S); the backward of a bf16 forward runs in bf16 too.
  bool bf16 = false;
};

}  // namespace fastrnn
