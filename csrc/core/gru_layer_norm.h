// The layer-normalized GRU's time loops (reset after; the math in fastrnn/gru.h), with zoneout
// and recurrent dropout as the plain loops take them. Written once for every backend; the
// structure of core/lstm_layer_norm.h: the x side one GEMM and a row pass; each step the
// recurrent GEMM into its own buffer, then one pass per row (backend `rows`).
//
// Saved buffers besides the plain loop's (gates: r, z, n; extra: a^h_n = LN(W_hh h)_n + b_hn):
//   ln_ih (T, B, 3H)  normalized W_ih x; backward overwrites it with its products for dg_ih
//   ln_hh (T, B, 3H)  normalized W_hh h; backward overwrites it likewise
//   ln_rstd (T, B, 2) 1/std of the two
#pragma once

#include "core/cell_math.h"
#include "core/layer_norm.h"
#include "core/loop_common.h"
#include "fastrnn/gru.h"

FASTRNN_NS_BEGIN

// ============================================================================ forward

// One row b of step t: hh (W_hh h) normalized in place, the gates, h; zoneout where given.
template <typename S>
struct GruLayerNormStep {
  const S* xh;      // (B, 3H) normalized W_ih x of step t
  S* hh;            // (B, 3H) W_hh h in, normalized out
  S* rstd;          // (B, 2) of step t
  S* gates;         // (B, 3H) r, z, n out
  S* hn;            // (B, H) a^h_n out
  S* h;             // (B, H) y[t]
  const S* h_prev;  // (B, H)
  const S *g_ih, *g_hh, *b_ih, *b_hh;
  const S* d_h;  // zoneout of step t, or null
  int64_t H;
  FASTRNN_HD void operator()(int64_t b) const {
    const int64_t G = 3 * H;
    S* q = hh + b * G;
    S* a = gates + b * G;
    const S* p = xh + b * G;
    rstd[b * 2 + 1] = normalize_row(q, G);
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = b * H + j;
      S ax[3], ah[3];
      for (int g = 0; g < 3; ++g) {
        const int64_t n = g * H + j;
        ax[g] = g_ih[n] * p[n] + (b_ih ? b_ih[n] : S(0));
        ah[g] = g_hh[n] * q[n] + (b_hh ? b_hh[n] : S(0));
      }
      const S r = sigmoid(ax[0] + ah[0]), z = sigmoid(ax[1] + ah[1]);
      const S n = tanh_(ax[2] + r * ah[2]);
      a[j] = r;
      a[H + j] = z;
      a[2 * H + j] = n;
      hn[k] = ah[2];
      const S h_new = gru_update(z, n, h_prev[k]);
      h[k] = d_h ? d_h[k] * h_prev[k] + (S(1) - d_h[k]) * h_new : h_new;
    }
  }
};

template <typename S, typename Backend>
void gru_layer_norm_forward_loop(Backend& be, const GruForwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, H = a.H, BH = B * H, G3 = 3 * H, TB = T * B;
  const bool train = a.training;
  S* xh = train ? a.ln_ih : be.alloc(TB * G3);
  S* rstd = train ? a.ln_rstd : be.alloc(TB * 2);
  S* gates = train ? a.gates : be.alloc(B * G3);
  S* hh_work = train ? nullptr : be.alloc(B * G3);
  be.gemm(false, true, TB, G3, a.I, S(1), a.x, a.I, a.w_ih, a.I, S(0), xh, G3);
  be.rows(TB, G3, NormalizeRows<S>{xh, rstd, 2, G3});
  const auto w = be.pack(times_transposed(a.w_hh, 3, H, H), T, B);
  RecurrentInput<S, Backend> recurrent_input(be, B, H, a.recurrent_mask);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t M = rows_at(a.batch_sizes, B, t);
    const S* h_prev = t == 0 ? a.h0 : a.y + (t - 1) * BH;
    const S* h_in = recurrent_input(M, h_prev);
    S* hh = train ? a.ln_hh + t * B * G3 : hh_work;
    be.step(w, M, h_in, H, hh, G3, S(0));
    const GruLayerNormStep<S> f{xh + t * B * G3,
                                hh,
                                rstd + t * B * 2,
                                train ? gates + t * B * G3 : gates,
                                a.extra + (train ? t * BH : 0),
                                a.y + t * BH,
                                h_prev,
                                a.ln_ih_weight,
                                a.ln_hh_weight,
                                a.b_ih,
                                a.b_hh,
                                a.zoneout_h ? a.zoneout_h + t * BH : nullptr,
                                H};
    be.rows(M, G3, f);
  }
  zero_finished_rows(be, a.batch_sizes, T, B, H, a.y);
  gather_final(be, a.batch_sizes, T, B, H, a.y, a.h0, a.h_n);
}

// ============================================================================ backward

// One row b of step t, backward: the gradient reaching h_t (gru_dh_total: dy + carry +
// dgates_{t+1} W_hh times the mask, zoneout's share kept in carry); gates <- the x side's
// pre-activation gradients (dr, dz, dn); extra <- dn * r (a^h_n's); the hh side through its
// layer norm into dph, and ln_hh <- d(a^h) * its normalized value.
template <typename S>
struct GruLayerNormBackStep {
  S* gates;         // (B, 3H) r, z, n in; dr, dz, dn out
  S* extra;         // (B, H) a^h_n in; dn * r out
  S* hh;            // (B, 3H) normalized W_hh h in; d(a^h) * it out
  const S* rstd;    // (B, 2)
  const S* h_prev;  // (B, H)
  const S* dy;      // (B, H)
  S* dh;            // (B, H) the carry
  GruBackExtras<S> x;
  S* dah;  // (B, 3H) scratch row: d(a^h)
  S* dph;  // (B, 3H) out
  const S* g_hh;
  int64_t H;
  FASTRNN_HD void operator()(int64_t b) const {
    const int64_t G = 3 * H;
    S* g = gates + b * G;
    S* d = dah + b * G;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = b * H + j;
      const S r = g[j], z = g[H + j], n = g[2 * H + j], hn = extra[k];
      S dn, dz, direct, keep;
      const S total = gru_dh_total<true>(k, dy, dh, x.dhw, x.mask, x.d_h, &keep);
      gru_shared_backward(z, n, h_prev[k], total, dn, dz, direct);
      const S dr = dn * hn * r * (S(1) - r);
      g[j] = dr;
      g[H + j] = dz;
      g[2 * H + j] = dn;
      d[j] = dr;
      d[H + j] = dz;
      d[2 * H + j] = extra[k] = dn * r;
      dh[k] = direct + keep;
    }
    layer_norm_row_backward(d, hh + b * G, rstd[b * 2 + 1], g_hh, G, dph + b * G, hh + b * G);
  }
};

template <typename S, typename Backend>
void gru_layer_norm_backward_loop(Backend& be, const GruBackwardArgs<S>& a) {
  const int64_t T = a.T, B = a.B, I = a.I, H = a.H, BH = B * H, G3 = 3 * H, TB = T * B;
  const int64_t* bs = a.batch_sizes;
  auto rows = [&](int64_t t) { return rows_at(bs, B, t); };
  auto h_prev = [&](int64_t t) { return t == 0 ? a.h0 : a.y + (t - 1) * BH; };
  const auto w = be.pack(times(a.w_hh, G3, H), T, B);
  S* dhw = be.alloc(BH);
  S* dph = be.alloc(TB * G3);
  S* dah = be.alloc(B * G3);
  be.fill_zero(BH, dhw);  // rows no GEMM wrote stay zero
  be.fill_zero(TB * G3, dph);
  const S* mask = a.recurrent_mask;
  for (int64_t t = T - 1; t >= 0; --t) {
    if (t < T - 1) be.step(w, rows(t + 1), dph + (t + 1) * B * G3, G3, dhw, H, S(0));
    const GruBackExtras<S> x{dhw, mask, a.zoneout_h ? a.zoneout_h + t * BH : nullptr};
    const GruLayerNormBackStep<S> f{a.gates + t * B * G3,
                                    a.extra + t * BH,
                                    a.ln_hh + t * B * G3,
                                    a.ln_rstd + t * B * 2,
                                    h_prev(t),
                                    a.dy + t * BH,
                                    a.dh0,
                                    x,
                                    dah,
                                    dph + t * B * G3,
                                    a.ln_hh_weight,
                                    H};
    be.rows(rows(t), G3, f);
  }
  // dh0 = carry + (dph_0 W_hh) * mask on the rows that ran; rows of length 0 keep dh_n.
  be.step(w, rows(0), dph, G3, dhw, H, S(0));
  be.pointwise(rows(0), H, AddMaskedRows<S>{a.dh0, dhw, mask, H});

  zero_finished_rows(be, bs, T, B, G3, a.gates);
  zero_finished_rows(be, bs, T, B, H, a.extra);
  zero_finished_rows(be, bs, T, B, G3, a.ln_hh);
  be.colsum(TB, G3, a.ln_hh, G3, a.dln_hh_weight);
  if (a.db_ih) {
    be.colsum(TB, G3, a.gates, G3, a.db_ih);
    be.copy(2 * H, a.db_ih, a.db_hh);  // r, z: b_hh enters where b_ih does
    be.colsum(TB, H, a.extra, H, a.db_hh + 2 * H);
  }
  be.rows(TB, G3, LayerNormInputRows<S>{a.gates, a.ln_ih, a.ln_rstd, 2, a.ln_ih_weight, G3});
  zero_finished_rows(be, bs, T, B, G3, a.ln_ih);
  be.colsum(TB, G3, a.ln_ih, G3, a.dln_ih_weight);
  input_side_grads(be, TB, I, G3, a.gates, G3, a.x, a.w_ih, S(0), a.dx, a.dw_ih,
                   static_cast<S*>(nullptr));
  recurrent_weight_grads(be, T, B, H, G3, dph, G3, a.h0, a.y, mask, a.dw_hh);
}

FASTRNN_NS_END
