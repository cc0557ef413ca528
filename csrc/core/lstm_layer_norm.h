// The layer-normalized LSTM's time loops (Ba et al. 2016; the math in fastrnn/lstm.h), with
// zoneout and recurrent dropout as the plain loops take them. Written once for every backend.
//
// Layer norm needs a row's statistics before any of its activations, so a step is not the
// panel-fused GEMM of the plain loop: the recurrent GEMM writes W_hh h of the step's rows,
// then one pass per row (backend `rows`) normalizes it, forms the gates, the cell, its
// normalization and h. The x side is one GEMM over all steps and one row pass.
//
// Saved buffers besides the plain loop's (gates: activations; cells: c_0 .. c_T):
//   ln_ih (T, B, 4H)  normalized W_ih x; backward overwrites it with its products for dg_ih
//   ln_hh (T, B, 4H)  normalized W_hh h; backward overwrites it likewise
//   ln_cell (T, B, H) normalized c~_t (the cell before zoneout)
//   ln_rstd (T, B, 3) 1/std of the three
// Inference allocates them as workspace (the x side for all T: its memory grows with T).
#pragma once

#include "core/cell_math.h"
#include "core/layer_norm.h"
#include "core/loop_common.h"
#include "fastrnn/lstm.h"

FASTRNN_NS_BEGIN

// ============================================================================ forward

// One row b of step t: hh (W_hh h) normalized in place, the gates, the cell, its
// normalization, h; zoneout where given.
template <typename S>
struct LstmLayerNormStep {
  const S* xh;      // (B, 4H) normalized W_ih x of step t
  S* hh;            // (B, 4H) W_hh h in, normalized out
  S* rstd;          // (B, 3) of step t
  S* gates;         // (B, 4H) activations out
  const S* c_prev;  // (B, H)
  S* c;             // (B, H) c_t out (may be c_prev: inference)
  S* ch;            // (B, H) normalized c~_t out
  S* h;             // (B, H) y[t]
  const S* h_prev;  // (B, H)
  const S *g_ih, *g_hh, *g_c, *b_c, *b_ih, *b_hh;
  const S *d_h, *d_c;  // zoneout of step t, or null
  int64_t H;
  FASTRNN_HD void operator()(int64_t b) const {
    const int64_t G = 4 * H;
    S* q = hh + b * G;
    S* a = gates + b * G;
    const S* p = xh + b * G;
    rstd[b * 3 + 1] = normalize_row(q, G);
    for (int64_t n = 0; n < G; ++n)
      a[n] = g_ih[n] * p[n] + g_hh[n] * q[n] + (b_ih ? b_ih[n] : S(0)) + (b_hh ? b_hh[n] : S(0));
    S* cn = ch + b * H;
    for (int64_t j = 0; j < H; ++j) {
      a[j] = sigmoid(a[j]);
      a[H + j] = sigmoid(a[H + j]);
      a[2 * H + j] = tanh_(a[2 * H + j]);
      a[3 * H + j] = sigmoid(a[3 * H + j]);
      cn[j] = a[H + j] * c_prev[b * H + j] + a[j] * a[2 * H + j];  // c~_t
    }
    rstd[b * 3 + 2] = normalize_row(cn, H);
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = b * H + j;
      const S cp = c_prev[k];
      const S c_new = a[H + j] * cp + a[j] * a[2 * H + j];
      const S h_new = a[3 * H + j] * tanh_(g_c[j] * cn[j] + (b_c ? b_c[j] : S(0)));
      c[k] = d_c ? d_c[k] * cp + (S(1) - d_c[k]) * c_new : c_new;
      h[k] = d_h ? d_h[k] * h_prev[k] + (S(1) - d_h[k]) * h_new : h_new;
    }
  }
};

template <typename S, typename Backend>
void lstm_layer_norm_forward_loop(Backend& be, const LstmForwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, H = a.H, BH = B * H, G4 = 4 * H, TB = T * B;
  const bool train = a.training;
  const int64_t c_stride = train ? BH : 0;  // cells holds c_0 already (the caller's loop)
  // Saved in training; workspace in inference (one step's worth, but the x side).
  S* xh = train ? a.ln_ih : be.alloc(TB * G4);
  S* rstd = train ? a.ln_rstd : be.alloc(TB * 3);
  S* gates = train ? a.gates : be.alloc(B * G4);
  S* hh_work = train ? nullptr : be.alloc(B * G4);
  S* ch_work = train ? nullptr : be.alloc(BH);
  be.gemm(false, true, TB, G4, a.I, S(1), a.x, a.I, a.w_ih, a.I, S(0), xh, G4);
  be.rows(TB, G4, NormalizeRows<S>{xh, rstd, 3, G4});
  const auto w = be.pack(times_transposed(a.w_hh, 4, H, H), T, B);
  RecurrentInput<S, Backend> recurrent_input(be, B, H, a.recurrent_mask);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t M = rows_at(a.batch_sizes, B, t);
    const S* h_prev = t == 0 ? a.h0 : a.y + (t - 1) * BH;
    const S* h_in = recurrent_input(M, h_prev);
    S* hh = train ? a.ln_hh + t * B * G4 : hh_work;
    be.step(w, M, h_in, H, hh, G4, S(0));
    const LstmLayerNormStep<S> f{xh + t * B * G4,
                                 hh,
                                 rstd + t * B * 3,
                                 train ? gates + t * B * G4 : gates,
                                 a.cells + t * c_stride,
                                 a.cells + (t + 1) * c_stride,
                                 train ? a.ln_cell + t * BH : ch_work,
                                 a.y + t * BH,
                                 h_prev,
                                 a.ln_ih_weight,
                                 a.ln_hh_weight,
                                 a.ln_cell_weight,
                                 a.ln_cell_bias,
                                 a.b_ih,
                                 a.b_hh,
                                 a.zoneout_h ? a.zoneout_h + t * BH : nullptr,
                                 a.zoneout_c ? a.zoneout_c + t * BH : nullptr,
                                 H};
    be.rows(M, G4, f);
  }
  zero_finished_rows(be, a.batch_sizes, T, B, H, a.y);
  gather_final(be, a.batch_sizes, T, B, H, a.y, a.h0, a.h_n);
  if (train)
    gather_final(be, a.batch_sizes, T, B, H, a.cells + BH, a.c0, a.c_n);
  else
    be.copy(BH, a.cells, a.c_n);
}

// ============================================================================ backward

// One row b of step t, backward. The gradient reaching h_t as in the plain loop's extras
// (dy + carry + dgates_{t+1} W_hh times the mask, zoneout's share kept in carry); then the
// cell's layer norm, the gates (their pre-activation gradients da into gates), the hh side's
// layer norm: dph (the gradient of W_hh h) out, and ln_hh overwritten with da * its
// normalized value (for the gain's gradient). The cell norm's shares of its gain's and
// bias's gradients go to pc, dcb.
template <typename S>
struct LstmLayerNormBackStep {
  S* gates;         // (B, 4H) activations in, da out
  S* hh;            // (B, 4H) normalized W_hh h in, da * it out
  const S* ch;      // (B, H) normalized c~_t
  const S* rstd;    // (B, 3)
  const S* c_prev;  // (B, H)
  const S* dy;      // (B, H)
  S* carry;         // (B, H)
  const S* dhw;     // (B, H)
  const S* mask;    // (B, H) or null
  const S* d_h;     // (B, H) or null
  const S* d_c;     // (B, H) or null
  S* dc;            // (B, H) gradient reaching c_t in, c_{t-1} out
  S* dph;           // (B, 4H) out
  S* pc;            // (B, H) dcn * ch out
  S* dcb;           // (B, H) dcn out
  const S *g_hh, *g_c, *b_c;
  int64_t H;
  FASTRNN_HD void operator()(int64_t b) const {
    const int64_t G = 4 * H;
    S* a = gates + b * G;
    const S* cn = ch + b * H;
    S* dcn = dcb + b * H;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = b * H + j;
      const S dh = lstm_dh_extras(k, dy, carry, dhw, mask, d_h);
      const S o = a[3 * H + j];
      const S tc = tanh_(g_c[j] * cn[j] + (b_c ? b_c[j] : S(0)));
      const S d_o = dh * tc;
      dcn[j] = dh * o * (S(1) - tc * tc);
      a[3 * H + j] = d_o * o * (S(1) - o);
    }
    // dcn -> d c~ (through the cell's layer norm), into pc for now; pc then gets dcn * ch.
    S* dct = pc + b * H;
    layer_norm_row_backward(dcn, cn, rstd[b * 3 + 2], g_c, H, dct, static_cast<S*>(nullptr));
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = b * H + j;
      const S i = a[j], f = a[H + j], g = a[2 * H + j], cp = c_prev[k];
      const S dc_in = dc[k];
      const S dcell = (d_c ? (S(1) - d_c[k]) * dc_in : dc_in) + dct[j];
      a[j] = dcell * g * i * (S(1) - i);
      a[H + j] = dcell * cp * f * (S(1) - f);
      a[2 * H + j] = dcell * i * (S(1) - g * g);
      dc[k] = dcell * f + (d_c ? d_c[k] * dc_in : S(0));
      dct[j] = dcn[j] * cn[j];
    }
    layer_norm_row_backward(a, hh + b * G, rstd[b * 3 + 1], g_hh, G, dph + b * G, hh + b * G);
  }
};

template <typename S, typename Backend>
void lstm_layer_norm_backward_loop(Backend& be, const LstmBackwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, I = a.I, H = a.H, BH = B * H, G4 = 4 * H, TB = T * B;
  const int64_t* bs = a.batch_sizes;
  auto rows = [&](int64_t t) { return rows_at(bs, B, t); };
  const auto w = be.pack(times(a.w_hh, G4, H), T, B);
  S* dhw = be.alloc(BH);
  S* dph = be.alloc(TB * G4);  // the gradient of W_hh h of every step
  S* pc = be.alloc(TB * H);
  S* dcb = be.alloc(TB * H);
  be.fill_zero(BH, dhw);  // rows no GEMM wrote stay zero
  be.fill_zero(TB * G4, dph);
  be.fill_zero(TB * H, pc);
  be.fill_zero(TB * H, dcb);
  const S* mask = a.recurrent_mask;
  for (int64_t t = T - 1; t >= 0; --t) {
    if (t < T - 1) be.step(w, rows(t + 1), dph + (t + 1) * B * G4, G4, dhw, H, S(0));
    const LstmLayerNormBackStep<S> f{a.gates + t * B * G4,
                                     a.ln_hh + t * B * G4,
                                     a.ln_cell + t * BH,
                                     a.ln_rstd + t * B * 3,
                                     a.cells + t * BH,
                                     a.dy + t * BH,
                                     a.dh0,
                                     dhw,
                                     mask,
                                     a.zoneout_h ? a.zoneout_h + t * BH : nullptr,
                                     a.zoneout_c ? a.zoneout_c + t * BH : nullptr,
                                     a.dc0,
                                     dph + t * B * G4,
                                     pc + t * BH,
                                     dcb + t * BH,
                                     a.ln_hh_weight,
                                     a.ln_cell_weight,
                                     a.ln_cell_bias,
                                     H};
    be.rows(rows(t), G4, f);
  }
  // dh0 = carry + (dph_0 W_hh) * mask on the rows that ran; rows of length 0 keep dh_n.
  be.step(w, rows(0), dph, G4, dhw, H, S(0));
  be.pointwise(rows(0), H, AddMaskedRows<S>{a.dh0, dhw, mask, H});

  zero_finished_rows(be, bs, T, B, G4, a.gates);
  zero_finished_rows(be, bs, T, B, G4, a.ln_hh);
  be.colsum(TB, G4, a.ln_hh, G4, a.dln_hh_weight);
  be.colsum(TB, H, pc, H, a.dln_cell_weight);
  be.colsum(TB, H, dcb, H, a.dln_cell_bias);
  if (a.db_ih) {
    be.colsum(TB, G4, a.gates, G4, a.db_ih);
    be.copy(G4, a.db_ih, a.db_hh);  // b_ih and b_hh enter the same sum
  }
  // x side: da -> the gradient of W_ih x through its layer norm, then the large GEMMs.
  be.rows(TB, G4, LayerNormInputRows<S>{a.gates, a.ln_ih, a.ln_rstd, 3, a.ln_ih_weight, G4});
  zero_finished_rows(be, bs, T, B, G4, a.ln_ih);
  be.colsum(TB, G4, a.ln_ih, G4, a.dln_ih_weight);
  input_side_grads(be, TB, I, G4, a.gates, G4, a.x, a.w_ih, S(0), a.dx, a.dw_ih,
                   static_cast<S*>(nullptr));
  recurrent_weight_grads(be, T, B, H, G4, dph, G4, a.h0, a.y, mask, a.dw_hh);
}

FASTRNN_NS_END
