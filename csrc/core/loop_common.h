// Pieces the time loops of every cell share: variable-length bookkeeping, the input
// projection of each step (StepGates), and the large GEMMs and reductions after the backward
// loop. Backend-agnostic.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/cell_math.h"
#include "core/recurrent_weight.h"

FASTRNN_NS_BEGIN

// Variable lengths arrive packed, as cuDNN takes them: sequences sorted by decreasing length,
// and batch_sizes[t] = the number still running at step t (non-increasing). Step t then works
// on rows [0, batch_sizes[t]) only. Null batch_sizes: every row runs every step. batch_sizes
// is host memory for every backend: only the loop, never a kernel, reads it.
inline int64_t rows_at(const int64_t* batch_sizes, int64_t B, int64_t t) {
  return batch_sizes ? batch_sizes[t] : B;
}

// out[b] = the state after row b's last step: seq[L_b - 1][b] (seq (T, B, N) holds the
// state after each step), or init[b] for a row that never ran. Rows are sorted by length, so
// the rows that end at the same step are contiguous: one copy per distinct length, all driven
// from batch_sizes on the host (no kernel reads batch_sizes).
template <typename S, typename Backend>
void gather_final(Backend& be, const int64_t* batch_sizes, int64_t T, int64_t B, int64_t N,
                  const S* seq, const S* init, S* out) {
  int64_t running = B;  // rows [0, running) ran at least up to step t
  for (int64_t t = 0; t <= T && running > 0; ++t) {
    const int64_t next = t < T ? rows_at(batch_sizes, B, t) : 0;  // rows still running at t
    if (next < running) {
      // Rows [next, running) end before step t: after step t - 1, or never ran (t = 0).
      const S* src = t == 0 ? init + next * N : seq + ((t - 1) * B + next) * N;
      be.copy((running - next) * N, src, out + next * N);
    }
    running = next;
  }
}

// Zeroes the rows of each step that take no part in it: buf (T, B, N).
template <typename S, typename Backend>
void zero_finished_rows(Backend& be, const int64_t* batch_sizes, int64_t T, int64_t B, int64_t N,
                        S* buf) {
  if (!batch_sizes) return;
  for (int64_t t = 0; t < T; ++t)
    if (batch_sizes[t] < B)
      be.fill_zero((B - batch_sizes[t]) * N, buf + (t * B + batch_sizes[t]) * N);
}

// gates[m, n] += b_ih[n] + b_hh[n]; either bias may be null (b_hh only for the columns
// where it folds into the input projection: all but GRU's n gate).
template <typename S>
struct AddBias {
  S* gates;  // (M, N)
  int64_t N;
  const S* b_ih;    // (N) or null
  const S* b_hh;    // (N) or null
  int64_t hh_cols;  // columns [0, hh_cols) take b_hh
  FASTRNN_HD void operator()(int64_t m, int64_t n) const {
    S v = gates[m * N + n];
    if (b_ih) v += b_ih[n];
    if (b_hh && n < hh_cols) v += b_hh[n];
    gates[m * N + n] = v;
  }
};

// gates (T*B, G*H) = x (T*B, I) w_ih^T + b_ih + b_hh[:hh_cols]: one GEMM for all steps.
template <typename S, typename Backend>
void input_projection(Backend& be, int64_t TB, int64_t I, int64_t GH, const S* x, const S* w_ih,
                      const S* b_ih, const S* b_hh, int64_t hh_cols, S* gates) {
  be.gemm(false, true, TB, GH, I, S(1), x, I, w_ih, I, S(0), gates, GH);
  if (b_ih || b_hh) be.pointwise(TB, GH, AddBias<S>{gates, GH, b_ih, b_hh, hh_cols});
}

// The gates of each step, starting from the input projection, computed a few steps ahead of
// use (~512 rows per GEMM, enough for the BLAS to run at full speed) so that each step finds
// its gates in cache. Training writes them into the saved (T, B, GH) buffer; inference into a
// small workspace, so its memory does not grow with T.
template <typename S, typename Backend>
class StepGates {
 public:
  StepGates(Backend& be, S* saved, int64_t T, int64_t B, int64_t I, int64_t GH, const S* x,
            const S* w_ih, const S* b_ih, const S* b_hh, int64_t hh_cols)
      : be_(be),
        saved_(saved),
        T_(T),
        B_(B),
        I_(I),
        GH_(GH),
        x_(x),
        w_ih_(w_ih),
        b_ih_(b_ih),
        b_hh_(b_hh),
        hh_cols_(hh_cols) {
    chunk_ = std::min<int64_t>(T, (512 + B - 1) / std::max<int64_t>(B, 1));
    if (!saved) workspace_ = be.alloc(chunk_ * B * GH);
  }

  // (B, GH) gates of step t; steps must be visited in increasing order.
  S* at(int64_t t) {
    if (t >= end_) {
      begin_ = t;
      end_ = std::min(T_, t + chunk_);
      input_projection(be_, (end_ - t) * B_, I_, GH_, x_ + t * B_ * I_, w_ih_, b_ih_, b_hh_,
                       hh_cols_, chunk_start());
    }
    return chunk_start() + (t - begin_) * B_ * GH_;
  }

 private:
  S* chunk_start() const { return saved_ ? saved_ + begin_ * B_ * GH_ : workspace_; }

  Backend& be_;
  S* saved_;
  S* workspace_ = nullptr;
  int64_t T_, B_, I_, GH_;
  const S *x_, *w_ih_, *b_ih_, *b_hh_;
  int64_t hh_cols_, chunk_ = 0, begin_ = 0, end_ = 0;
};

// The gradients of a call with nothing to run (T = 0 or B = 0): zero weights and dx.
template <typename S, typename Backend>
void zero_grads(Backend& be, int64_t TB, int64_t I, int64_t GH, int64_t P, S* dx, S* dw_ih,
                S* dw_hh, S* db_ih, S* db_hh) {
  be.fill_zero(TB * I, dx);
  be.fill_zero(GH * I, dw_ih);
  be.fill_zero(GH * P, dw_hh);
  if (db_ih) be.fill_zero(GH, db_ih);
  if (db_hh) be.fill_zero(GH, db_hh);
}

// Gradients of an input-side weight block from its pre-activation gradients over all steps:
//   dx (TB, I) (+)= dg (TB, rows) w_rows (rows, I)       (beta 0 or 1)
//   dw (rows, I)   = dg^T x
//   db (rows)      = column sums of dg   (if db is not null)
template <typename S, typename Backend>
void input_side_grads(Backend& be, int64_t TB, int64_t I, int64_t rows, const S* dg, int64_t ldg,
                      const S* x, const S* w_rows, S dx_beta, S* dx, S* dw, S* db) {
  be.gemm(false, false, TB, I, rows, S(1), dg, ldg, w_rows, I, dx_beta, dx, I);
  be.gemm(true, false, rows, I, TB, S(1), dg, ldg, x, I, S(0), dw, I);
  if (db) be.colsum(TB, rows, dg, ldg, db);
}

// dw (rows, H) = sum_t dg_t^T h_{t-1}, with h_{-1} = h0 and h_t = y[t]: two GEMMs, because
// h0 and y are separate arrays.
template <typename S, typename Backend>
void hidden_weight_grads(Backend& be, int64_t T, int64_t B, int64_t H, int64_t rows, const S* dg,
                         int64_t ldg, const S* h0, const S* y, S* dw) {
  be.gemm(true, false, rows, H, B, S(1), dg, ldg, h0, H, S(0), dw, H);
  if (T > 1) be.gemm(true, false, rows, H, (T - 1) * B, S(1), dg + B * ldg, ldg, y, H, S(1), dw, H);
}

// ---------------------------------------------------------------------------- extras
// Shared by the LSTM's and GRU's regularization extras (zoneout, recurrent dropout).

// out = a * mask (B, N rows): h_{t-1} as it enters W_hh under recurrent dropout.
template <typename S>
struct MaskRows {
  S* out;
  const S* a;
  const S* mask;
  int64_t N;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    out[b * N + j] = a[b * N + j] * mask[b * N + j];
  }
};

// carry += dhw * mask (or dhw): dh0 after the loop with the extras.
template <typename S>
struct AddMaskedRows {
  S* carry;
  const S* dhw;
  const S* mask;
  int64_t N;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    const int64_t k = b * N + j;
    carry[k] += mask ? mask[k] * dhw[k] : dhw[k];
  }
};

// The backward of the extras (zoneout, recurrent dropout): the gradient reaching h_t is
// dy_t + carry (dh_n, or the zoneout share step t+1 left for h_t) + dgates_{t+1} W_hh times
// the recurrent mask (h_t entered step t+1's product as h_t * mask). With zoneout on h,
// the update h~_t takes (1 - d_h) of it and carry keeps d_h of it for h_{t-1} (else 0).
template <typename S>
FASTRNN_HD S lstm_dh_extras(int64_t k, const S* dy, S* carry, const S* dhw, const S* mask,
                            const S* d_h) {
  const S total = dy[k] + carry[k] + (mask ? mask[k] * dhw[k] : dhw[k]);
  carry[k] = d_h ? d_h[k] * total : S(0);
  return d_h ? (S(1) - d_h[k]) * total : total;
}

// The extras' share of a backward step (X): the gradient reaching h_t is dy_t + dh (the
// running carry: dh_n, or what step t+1 left for h_t besides its GEMM) + dhw (the GEMM,
// dgates_{t+1} W_hh, written apart) times the recurrent mask; zoneout's update takes
// (1 - d) of it, and d of it goes to h_{t-1} directly (*keep). Without X: dy_t + dh (the
// GEMM already added into dh).
template <bool X, typename S>
FASTRNN_HD S gru_dh_total(int64_t k, const S* dy, const S* dh, const S* dhw, const S* mask,
                          const S* d_h, S* keep) {
  S total = dy[k] + dh[k];
  *keep = S(0);
  if constexpr (X) {
    total += mask ? mask[k] * dhw[k] : dhw[k];
    if (d_h) {
      *keep = d_h[k] * total;
      total = (S(1) - d_h[k]) * total;
    }
  }
  return total;
}

// The extras of a backward pass (X): the GEMM's output dhw, the recurrent mask and zoneout's
// factor of the step, each null when absent.
template <typename S>
struct GruBackExtras {
  const S* dhw = nullptr;
  const S* mask = nullptr;
  const S* d_h = nullptr;
};

// (T, B, N) workspace: h_{t-1} * mask for every step (h0, then y[0 .. T-2]): what W_hh
// multiplied under recurrent dropout, for dW_hh (and the reset-before GRU's dr).
template <typename S, typename Backend>
const S* masked_states(Backend& be, int64_t T, int64_t B, int64_t N, const S* h0, const S* y,
                       const S* mask) {
  S* out = be.alloc(T * B * N);
  be.pointwise(B, N, MaskRows<S>{out, h0, mask, N});
  for (int64_t t = 0; t + 1 < T; ++t)
    be.pointwise(B, N, MaskRows<S>{out + (t + 1) * B * N, y + t * B * N, mask, N});
  return out;
}

// dW_hh (rows, N) = sum over steps of dg_t^T h_{t-1} with the states as W_hh multiplied them:
// times the recurrent mask where there is one (hidden_weight_grads on masked_states).
template <typename S, typename Backend>
void recurrent_weight_grads(Backend& be, int64_t T, int64_t B, int64_t N, int64_t rows, const S* dg,
                            int64_t ldg, const S* h0, const S* y, const S* mask, S* dw) {
  const S* hm = mask ? masked_states(be, T, B, N, h0, y, mask) : nullptr;
  hidden_weight_grads(be, T, B, N, rows, dg, ldg, hm ? hm : h0, hm ? hm + B * N : y, dw);
}

// h_{t-1} as it enters W_hh: itself, or under recurrent dropout h_{t-1} * mask, written for
// the step's rows into a (B, N) buffer of its own.
template <typename S, typename Backend>
class RecurrentInput {
 public:
  RecurrentInput(Backend& be, int64_t B, int64_t N, const S* mask)
      : be_(be), N_(N), mask_(mask), masked_(mask ? be.alloc(B * N) : nullptr) {}

  const S* operator()(int64_t M, const S* h_prev) {
    if (!mask_) return h_prev;
    be_.pointwise(M, N_, MaskRows<S>{masked_, h_prev, mask_, N_});
    return masked_;
  }

 private:
  Backend& be_;
  int64_t N_;
  const S* mask_;
  S* masked_;
};

FASTRNN_NS_END
