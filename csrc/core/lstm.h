// The LSTM's time loops, forward and backward (BPTT), written once for every backend.
//
// Saved buffers, the contract between a training forward and its backward (shapes as in
// fastrnn/lstm.h). Rows of a sequence past its end are zero in y and m, unspecified in gates
// and cells: backward reads only the rows that ran, and zeroes the others of gates.
//   gates (T, B, 4H)     forward writes the activated gates (i, f, g, o) of every step;
//                        backward turns them into pre-activation gradients, in place
//   cells (T + 1, B, H)  c_0 .. c_T; read-only to backward
//   m     (T, B, H)      with a projection, o * tanh(c_t), the input of W_hr; read-only
//   y     (T, B, P)      the forward's output h_1 .. h_T: with h0, the h_{t-1} of every step
// Inference saves nothing: gates is a few steps' workspace, cells (and m) one (B, H) state
// updated in place.
#pragma once

#include "core/cell_math.h"
#include "core/loop_common.h"
#include "core/lstm_layer_norm.h"
#include "fastrnn/lstm.h"

FASTRNN_NS_BEGIN

// ============================================================================ forward
// LSTM forward time loop, written once for every backend.
// Per call: W_hh (and W_hr) packed once; the input projection a few steps ahead of use, in
// GEMMs of ~512 rows (StepGates).
// Per step t, on the rows still running:
//   gates_t += h_{t-1} W_hh^T, fused with the cell update (LstmForwardStep);
//   with a projection, h_t = m_t W_hr^T with m_t = o * tanh(c_t) (a second, small GEMM).

// One element (b, j) of step t: pre-activations in `gates` become activations in place.
template <typename S>
struct LstmForwardStep {
  S* gates;         // (B, 4H) of step t
  const S* c_prev;  // (B, H)
  S* c;             // (B, H); equals c_prev in inference (updated in place)
  S* h;             // (B, H): y[t], or m_t with a projection
  int64_t H;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 4 * H;
    const int64_t k = b * H + j;
    lstm_cell_forward(g[j], g[H + j], g[2 * H + j], g[3 * H + j], c_prev[k], c[k], h[k]);
  }
};

// LstmForwardStep with zoneout (either of d_h, d_c null: that state is not zoned out):
// h_t = d_h h_{t-1} + (1 - d_h) o tanh(c~_t), c_t = d_c c_{t-1} + (1 - d_c) c~_t. With a
// projection, d_h is null here and the loop zones out h_t after W_hr.
template <typename S, bool ZoneH, bool ZoneC>  // which states are zoned out (compile time:
struct LstmForwardStepZoneout {                // no per-element test, so the pass vectorizes)
  S* gates;
  const S* c_prev;
  S* c;
  S* h;
  int64_t H;
  const S* h_prev;  // (B, H) h_{t-1}
  const S* d_h;     // (B, H) of step t (ZoneH)
  const S* d_c;     // (B, H) of step t (ZoneC)
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 4 * H;
    const int64_t k = b * H + j;
    const S cp = c_prev[k];
    S c_new, h_new;
    lstm_cell_forward(g[j], g[H + j], g[2 * H + j], g[3 * H + j], cp, c_new, h_new);
    if constexpr (ZoneC) c_new = d_c[k] * cp + (S(1) - d_c[k]) * c_new;
    if constexpr (ZoneH) h_new = d_h[k] * h_prev[k] + (S(1) - d_h[k]) * h_new;
    c[k] = c_new;
    h[k] = h_new;
  }
};

// h = d h_prev + (1 - d) h: zoneout of a projected h_t.
template <typename S>
struct ZoneoutRows {
  S* h;
  const S* h_prev;
  const S* d;
  int64_t N;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    const int64_t k = b * N + j;
    h[k] = d[k] * h_prev[k] + (S(1) - d[k]) * h[k];
  }
};

template <typename S, typename Backend>
void lstm_forward_loop(Backend& be, const LstmForwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, H = a.H, P = a.P, BH = B * H, BP = B * P, G4 = 4 * H;
  // Training keeps every c_t (c_0 at index 0); inference updates one (B, H) buffer in place,
  // where a finished sequence's row keeps its last value. The same for m with a projection.
  const int64_t c_stride = a.training ? BH : 0;
  be.copy(BH, a.c0, a.cells);
  if (T == 0 || B == 0) {
    be.copy(BP, a.h0, a.h_n);
    be.copy(BH, a.c0, a.c_n);
    return;
  }
  if (a.ln_ih_weight) {
    lstm_layer_norm_forward_loop(be, a);
    return;
  }
  StepGates<S, Backend> gates(be, a.training ? a.gates : nullptr, T, B, a.I, G4, a.x, a.w_ih,
                              a.b_ih, a.b_hh, G4);
  const auto w = be.pack(times_transposed(a.w_hh, 4, H, P), T, B);
  const bool proj = a.w_hr != nullptr;
  typename Backend::Packed w_r;
  if (proj) w_r = be.pack(times_transposed(a.w_hr, 1, P, H), T, B);
  const bool zoneout = a.zoneout_h || a.zoneout_c;
  RecurrentInput<S, Backend> recurrent_input(be, B, P, a.recurrent_mask);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t M = rows_at(a.batch_sizes, B, t);
    S* g = gates.at(t);
    const S* h_prev = t == 0 ? a.h0 : a.y + (t - 1) * BP;
    const S* h_in = recurrent_input(M, h_prev);  // what enters W_hh
    S* y_t = a.y + t * BP;
    S* m_t = proj ? a.m + t * c_stride : y_t;
    S* c_prev = a.cells + t * c_stride;
    S* c = a.cells + (t + 1) * c_stride;
    if (zoneout) {
      const S* d_h = a.zoneout_h && !proj ? a.zoneout_h + t * BP : nullptr;
      const S* d_c = a.zoneout_c ? a.zoneout_c + t * BH : nullptr;
      auto zoned = [&](auto f) { be.step(w, M, M, h_in, P, g, G4, S(1), f); };
      if (d_h && d_c)
        zoned(LstmForwardStepZoneout<S, true, true>{g, c_prev, c, m_t, H, h_prev, d_h, d_c});
      else if (d_h)
        zoned(LstmForwardStepZoneout<S, true, false>{g, c_prev, c, m_t, H, h_prev, d_h, d_c});
      else if (d_c)
        zoned(LstmForwardStepZoneout<S, false, true>{g, c_prev, c, m_t, H, h_prev, d_h, d_c});
      else  // h zoned out after the projection, below
        zoned(LstmForwardStep<S>{g, c_prev, c, m_t, H});
    } else {
      be.step(w, M, M, h_in, P, g, G4, S(1), LstmForwardStep<S>{g, c_prev, c, m_t, H});
    }
    if (proj) be.step(w_r, M, m_t, H, y_t, P, S(0));
    if (proj && a.zoneout_h)
      be.pointwise(M, P, ZoneoutRows<S>{y_t, h_prev, a.zoneout_h + t * BP, P});
  }
  zero_finished_rows(be, a.batch_sizes, T, B, P, a.y);
  gather_final(be, a.batch_sizes, T, B, P, a.y, a.h0, a.h_n);
  if (a.training) {
    if (proj) zero_finished_rows(be, a.batch_sizes, T, B, H, a.m);
    gather_final(be, a.batch_sizes, T, B, H, a.cells + BH, a.c0, a.c_n);
  } else {
    be.copy(BH, a.cells, a.c_n);
  }
}

// ============================================================================ backward
// LSTM backward (BPTT) time loop, written once for every backend.
// Per step t (from T-1 down), on the rows still running at t:
//   dh_t = dy_t + dgates_{t+1} W_hh: the packed GEMM into a carry buffer (dh0's), fused with
//   the cell's backward, which turns the saved gates of step t into their gradients in place
//   and carries dc. Rows whose sequence ends at t join with dh_n and dc_n, which wait in the
//   carry buffers until then.
//   With a projection: the fused pass stores dh_t (for dW_hr), then dm_t = dh_t W_hr is a
//   second GEMM fused with the cell's backward.
// After the loop: dx, dW_ih, dW_hh (and dW_hr) as large GEMMs over all steps, the bias
// gradients as column sums.

template <typename S>
struct LstmBackwardStep {
  S* gates;         // (B, 4H) of step t: activations in, pre-activation gradients out
  const S* c_prev;  // (B, H) c_{t-1}
  const S* c;       // (B, H) c_t
  const S* dy;      // (B, H) dy_t (zeros with a projection: dy enters through dh_t)
  const S* dh_rec;  // (B, H) gradient reaching h_t (m_t with a projection) from later steps
  S* dc;            // (B, H) gradient reaching c_t in, c_{t-1} out
  int64_t H;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 4 * H;
    const int64_t k = b * H + j;
    lstm_cell_backward(g[j], g[H + j], g[2 * H + j], g[3 * H + j], c_prev[k], c[k],
                       dy[k] + dh_rec[k], dc[k]);
  }
};

// With a projection: dh_t = dy_t + (the carry from step t+1), kept for dW_hr and the GEMM
// to dm_t.
template <typename S>
struct LstmProjDh {
  S* dh;           // (B, P) of step t, out
  const S* dy;     // (B, P)
  const S* carry;  // (B, P)
  int64_t P;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    dh[b * P + j] = dy[b * P + j] + carry[b * P + j];
  }
};

// LstmBackwardStep with the extras. Without a projection the gradient reaching h_t comes
// from lstm_dh_extras; with one, from dm (m_t's, after W_hr; dh_t's extras were taken by
// LstmProjDhExtras). Zoneout on c: c~_t (before zoneout) recomputed from the gates, the cell
// takes (1 - d_c) of dc and c_{t-1} gets d_c of it besides the cell's share.
template <typename S>
struct LstmBackwardStepExtras {
  S* gates;
  const S* c_prev;
  const S* dy;    // (B, P) dy_t; unused with a projection
  S* carry;       // (B, P)
  const S* dhw;   // (B, P) dgates_{t+1} W_hh, zero in rows step t+1 did not run
  const S* mask;  // (B, P) recurrent mask, or null
  const S* d_h;   // (B, P) zoneout of step t, or null
  const S* dm;    // (B, H) with a projection, else null
  S* dc;          // (B, H) gradient reaching c_t in, c_{t-1} out
  const S* d_c;   // (B, H) zoneout of step t, or null
  int64_t H;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    S* g = gates + b * 4 * H;
    const int64_t k = b * H + j;
    const S dh = dm ? dm[k] : lstm_dh_extras(k, dy, carry, dhw, mask, d_h);
    const S c_new = g[H + j] * c_prev[k] + g[j] * g[2 * H + j];  // f c_{t-1} + i g
    const S dc_in = dc[k];
    S dcell = d_c ? (S(1) - d_c[k]) * dc_in : dc_in;
    lstm_cell_backward(g[j], g[H + j], g[2 * H + j], g[3 * H + j], c_prev[k], c_new, dh, dcell);
    dc[k] = d_c ? dcell + d_c[k] * dc_in : dcell;
  }
};

// With a projection and extras: dh_t (kept for dW_hr and the GEMM to dm_t) from
// lstm_dh_extras.
template <typename S>
struct LstmProjDhExtras {
  S* dh;  // (B, P) of step t, out
  const S* dy;
  S* carry;
  const S* dhw;
  const S* mask;
  const S* d_h;
  int64_t P;
  FASTRNN_HD void operator()(int64_t b, int64_t j) const {
    const int64_t k = b * P + j;
    dh[k] = lstm_dh_extras(k, dy, carry, dhw, mask, d_h);
  }
};

template <typename S, typename Backend>
void lstm_backward_with_extras(Backend& be, const LstmBackwardArgs<S>& a);

template <typename S, typename Backend>
void lstm_backward_loop(Backend& be, const LstmBackwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, I = a.I, H = a.H, P = a.P, BH = B * H, BP = B * P, G4 = 4 * H;
  const int64_t* bs = a.batch_sizes;
  be.copy(BP, a.dh_n, a.dh0);  // dh0 doubles as the carry of dh
  be.copy(BH, a.dc_n, a.dc0);  // and dc0 as the running dc
  if (T == 0 || B == 0) {
    if (a.dw_hr) be.fill_zero(P * H, a.dw_hr);
    if (a.dln_ih_weight) {
      be.fill_zero(G4, a.dln_ih_weight);
      be.fill_zero(G4, a.dln_hh_weight);
      be.fill_zero(H, a.dln_cell_weight);
      be.fill_zero(H, a.dln_cell_bias);
    }
    zero_grads(be, T * B, I, G4, P, a.dx, a.dw_ih, a.dw_hh, a.db_ih, a.db_hh);
    return;
  }
  if (a.ln_ih_weight) {
    lstm_layer_norm_backward_loop(be, a);
    return;
  }
  if (a.zoneout_h || a.zoneout_c || a.recurrent_mask) {
    lstm_backward_with_extras(be, a);
    return;
  }
  // dh = dgates W_hh (and, with a projection, dm = dh W_hr).
  const auto w = be.pack(times(a.w_hh, G4, P), T, B);
  auto gates = [&](int64_t t) { return a.gates + t * B * G4; };
  auto cell_step = [&](int64_t t, const S* dy, const S* dh_rec) {
    return LstmBackwardStep<S>{
        gates(t), a.cells + t * BH, a.cells + (t + 1) * BH, dy, dh_rec, a.dc0, H};
  };
  // Step t's fused pass covers rows(t); its GEMM only rows(t + 1), the rows whose dh comes
  // from step t + 1 (the others still hold dh_n).
  auto rows = [&](int64_t t) { return rows_at(bs, B, t); };

  if (!a.w_hr) {
    be.pointwise(rows(T - 1), H, cell_step(T - 1, a.dy + (T - 1) * BH, a.dh0));
    for (int64_t t = T - 2; t >= 0; --t)
      be.step(w, rows(t + 1), rows(t), gates(t + 1), G4, a.dh0, H, S(0),
              cell_step(t, a.dy + t * BH, a.dh0));
  } else {
    const auto w_r = be.pack(times(a.w_hr, P, H), T, B);
    S* dh = be.alloc(T * BP);  // dh_t for every step, for dW_hr
    S* dm = be.alloc(BH);
    S* zeros = be.alloc(BH);
    be.fill_zero(BH, zeros);
    for (int64_t t = T - 1; t >= 0; --t) {
      const LstmProjDh<S> f{dh + t * BP, a.dy + t * BP, a.dh0, P};
      if (t == T - 1)
        be.pointwise(rows(t), P, f);
      else
        be.step(w, rows(t + 1), rows(t), gates(t + 1), G4, a.dh0, P, S(0), f);
      be.step(w_r, rows(t), rows(t), dh + t * BP, P, dm, H, S(0), cell_step(t, zeros, dm));
    }
    zero_finished_rows(be, bs, T, B, P, dh);
    be.gemm(true, false, P, H, T * B, S(1), dh, P, a.m, H, S(0), a.dw_hr, H);
  }
  // dh0 = dgates_0 W_hh on the rows that ran; rows of length 0 keep dh_n.
  be.step(w, rows(0), gates(0), G4, a.dh0, P, S(0));

  zero_finished_rows(be, bs, T, B, G4, a.gates);
  input_side_grads(be, T * B, I, G4, a.gates, G4, a.x, a.w_ih, S(0), a.dx, a.dw_ih, a.db_ih);
  hidden_weight_grads(be, T, B, P, G4, a.gates, G4, a.h0, a.y, a.dw_hh);
  if (a.db_hh) be.copy(G4, a.db_ih, a.db_hh);  // b_ih and b_hh enter the same sum
}

// lstm_backward_loop with zoneout or recurrent dropout (T, B > 0). The recurrent GEMM writes
// dgates_{t+1} W_hh into its own buffer (dhw), which the fused pass of step t reads (times
// the mask) beside dy_t and the carry in dh0 (dh_n, then zoneout's share); dW_hh takes the
// masked h_{t-1}.
template <typename S, typename Backend>
void lstm_backward_with_extras(Backend& be, const LstmBackwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, I = a.I, H = a.H, P = a.P, BH = B * H, BP = B * P, G4 = 4 * H;
  const int64_t* bs = a.batch_sizes;
  const auto w = be.pack(times(a.w_hh, G4, P), T, B);
  auto gates = [&](int64_t t) { return a.gates + t * B * G4; };
  auto rows = [&](int64_t t) { return rows_at(bs, B, t); };
  auto d_h = [&](int64_t t) { return a.zoneout_h ? a.zoneout_h + t * BP : nullptr; };
  auto d_c = [&](int64_t t) { return a.zoneout_c ? a.zoneout_c + t * BH : nullptr; };
  // Rows of dhw that no GEMM has written (steps past a sequence's end) stay zero.
  S* dhw = be.alloc(BP);
  be.fill_zero(BP, dhw);
  const S* mask = a.recurrent_mask;
  if (!a.w_hr) {
    for (int64_t t = T - 1; t >= 0; --t) {
      const LstmBackwardStepExtras<S> f{gates(t), a.cells + t * BH, a.dy + t * BP, a.dh0, dhw,
                                        mask,     d_h(t),           nullptr,       a.dc0, d_c(t),
                                        H};
      if (t == T - 1)
        be.pointwise(rows(t), H, f);
      else
        be.step(w, rows(t + 1), rows(t), gates(t + 1), G4, dhw, P, S(0), f);
    }
  } else {
    const auto w_r = be.pack(times(a.w_hr, P, H), T, B);
    S* dh = be.alloc(T * BP);  // dh_t (the update's share) for every step, for dW_hr
    S* dm = be.alloc(BH);
    for (int64_t t = T - 1; t >= 0; --t) {
      const LstmProjDhExtras<S> f{dh + t * BP, a.dy + t * BP, a.dh0, dhw, mask, d_h(t), P};
      if (t == T - 1)
        be.pointwise(rows(t), P, f);
      else
        be.step(w, rows(t + 1), rows(t), gates(t + 1), G4, dhw, P, S(0), f);
      const LstmBackwardStepExtras<S> cell{gates(t), a.cells + t * BH, nullptr, nullptr,
                                           nullptr,  nullptr,          nullptr, dm,
                                           a.dc0,    d_c(t),           H};
      be.step(w_r, rows(t), rows(t), dh + t * BP, P, dm, H, S(0), cell);
    }
    zero_finished_rows(be, bs, T, B, P, dh);
    be.gemm(true, false, P, H, T * B, S(1), dh, P, a.m, H, S(0), a.dw_hr, H);
  }
  // dh0 = carry + (dgates_0 W_hh) * mask on the rows that ran; rows of length 0 keep dh_n.
  be.step(w, rows(0), gates(0), G4, dhw, P, S(0));
  be.pointwise(rows(0), P, AddMaskedRows<S>{a.dh0, dhw, mask, P});

  zero_finished_rows(be, bs, T, B, G4, a.gates);
  input_side_grads(be, T * B, I, G4, a.gates, G4, a.x, a.w_ih, S(0), a.dx, a.dw_ih, a.db_ih);
  recurrent_weight_grads(be, T, B, P, G4, a.gates, G4, a.h0, a.y, mask, a.dw_hh);
  if (a.db_hh) be.copy(G4, a.db_ih, a.db_hh);
}

FASTRNN_NS_END
