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

template <typename S, typename Backend>
void lstm_backward_loop(Backend& be, const LstmBackwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, I = a.I, H = a.H, P = a.P, BH = B * H, BP = B * P, G4 = 4 * H;
  const int64_t* bs = a.batch_sizes;
  be.copy(BP, a.dh_n, a.dh0);  // dh0 doubles as the carry of dh
  be.copy(BH, a.dc_n, a.dc0);  // and dc0 as the running dc
  if (T == 0 || B == 0) {
    if (a.dw_hr) be.fill_zero(P * H, a.dw_hr);
    zero_grads(be, T * B, I, G4, P, a.dx, a.dw_ih, a.dw_hh, a.db_ih, a.db_hh);
    return;
  }
  // W_hh (4H, P) as the K x N right operand of dh = dgates W_hh; W_hr (P, H) likewise.
  const auto w = be.pack(a.w_hh, 1, P, 1, P, G4, T);
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
    const auto w_r = be.pack(a.w_hr, 1, H, 1, H, P, T);
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

FASTRNN_NS_END
