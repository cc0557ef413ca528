// LSTM, gates (i, f, g, o):  i, f, o = sigmoid(.), g = tanh(.),
//   c' = f * c + i * g,   h' = o * tanh(c').   Conventions: fastrnn.h.
#pragma once

#include <cstdint>

namespace fastrnn {

template <typename S>
struct LstmForwardArgs {
  int64_t T, B, I, H;
  const S* x;     // (T, B, I)
  const S* h0;    // (B, H)
  const S* c0;    // (B, H)
  const S* w_ih;  // (4H, I)
  const S* w_hh;  // (4H, H)
  const S* b_ih;  // (4H) or null
  const S* b_hh;  // (4H) or null
  S* y;           // (T, B, H) out: h_1 .. h_T
  S* h_n;         // (B, H) out
  S* c_n;         // (B, H) out
  bool training;
  // Training: saved for backward. Inference: workspace, gates (T, B, 4H), cells (B, H).
  S* gates;  // (T, B, 4H) activated gates
  S* cells;  // training (T + 1, B, H): c_0 .. c_T; inference (B, H)
};

template <typename S>
struct LstmBackwardArgs {
  int64_t T, B, I, H;
  const S* x;      // (T, B, I)   the forward's input
  const S* h0;     // (B, H)      the forward's h0
  const S* y;      // (T, B, H)   the forward's output (h_1 .. h_T)
  const S* w_ih;   // (4H, I)
  const S* w_hh;   // (4H, H)
  S* gates;        // (T, B, 4H)  saved gates in, gate gradients out (in place)
  const S* cells;  // (T + 1, B, H) saved c_0 .. c_T
  const S* dy;     // (T, B, H)
  const S* dh_n;   // (B, H)
  const S* dc_n;   // (B, H)
  S* dx;           // (T, B, I) out
  S* dh0;          // (B, H) out
  S* dc0;          // (B, H) out
  S* dw_ih;        // (4H, I) out
  S* dw_hh;        // (4H, H) out
  S* db_ih;        // (4H) out, or null (no bias)
  S* db_hh;        // (4H) out, or null (no bias)
};

template <typename S>
void lstm_forward(const LstmForwardArgs<S>& a);
template <typename S>
void lstm_backward(const LstmBackwardArgs<S>& a);

}  // namespace fastrnn
