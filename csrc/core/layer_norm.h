// Layer norm's row operations, shared by the layer-normalized cells' loops (and compiled by
// nvcc): LN(v; g, b) = g (v - mean(v)) / sqrt(var(v) + eps) + b over a row, var the biased
// variance, as torch.nn.LayerNorm.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/cell_math.h"

FASTRNN_NS_BEGIN

constexpr double kLayerNormEps = 1e-5;  // torch.nn.LayerNorm's default

template <typename S>
FASTRNN_HD S inverse_sqrt(S v) {
#ifdef __CUDA_ARCH__
  return S(1) / sqrt(v);
#else
  return S(1) / std::sqrt(v);
#endif
}

// sum of f(n) over n < N, in 16 interleaved partial sums (a fixed order, so the result does not
// depend on the compiler, and one the compiler vectorizes without reassociating).
template <typename S, typename F>
FASTRNN_HD S row_sum(int64_t N, const F& f) {
  constexpr int V = 16;
  S part[V] = {};
  int64_t n = 0;
  for (; n + V <= N; n += V)
    for (int l = 0; l < V; ++l) part[l] += f(n + l);
  S total = S(0);
  for (int l = 0; l < V; ++l) total += part[l];
  for (; n < N; ++n) total += f(n);
  return total;
}

// v (N) normalized in place, (v - mean) / std with the biased variance; returns 1/std.
template <typename S>
FASTRNN_HD S normalize_row(S* v, int64_t N) {
  const S mean = row_sum<S>(N, [&](int64_t n) { return v[n]; }) / S(N);
  const S var = row_sum<S>(N, [&](int64_t n) { return (v[n] - mean) * (v[n] - mean); }) / S(N);
  const S rstd = inverse_sqrt(var + S(kLayerNormEps));
  for (int64_t n = 0; n < N; ++n) v[n] = (v[n] - mean) * rstd;
  return rstd;
}

// Layer norm's backward for one row: the input's gradient from d(out) = dout, the normalized
// values v_hat and 1/std, the gain g: rstd (dv - mean(dv) - v_hat mean(dv v_hat)) with
// dv = dout * g. Writes it to dx (which may be dout); prod, if given, gets dout * v_hat
// (the row's share of g's gradient; may be v_hat).
template <typename S>
FASTRNN_HD void layer_norm_row_backward(const S* dout, const S* v_hat, S rstd, const S* g,
                                        int64_t N, S* dx, S* prod) {
  const S m1 = row_sum<S>(N, [&](int64_t n) { return dout[n] * g[n]; }) / S(N);
  const S m2 = row_sum<S>(N, [&](int64_t n) { return dout[n] * g[n] * v_hat[n]; }) / S(N);
  for (int64_t n = 0; n < N; ++n) {
    const S d = dout[n], vh = v_hat[n];
    if (prod) prod[n] = d * vh;
    dx[n] = rstd * (d * g[n] - m1 - vh * m2);
  }
}

// Normalizes rows of `v` (M, N) in place, 1/std to rstd[b * rstd_stride].
template <typename S>
struct NormalizeRows {
  S* v;
  S* rstd;
  int64_t rstd_stride, N;
  FASTRNN_HD void operator()(int64_t b) const {
    rstd[b * rstd_stride] = normalize_row(v + b * N, N);
  }
};

// The x side of a layer-normalized cell's backward, one row of (TB, G): da (gates) -> the
// gradient of W_ih x through its layer norm (in place), and xh <- da * its normalized value
// (the row's share of the gain's gradient); 1/std at rstd[b * rstd_stride].
template <typename S>
struct LayerNormInputRows {
  S* gates;
  S* xh;
  const S* rstd;
  int64_t rstd_stride;
  const S* g_ih;
  int64_t G;
  FASTRNN_HD void operator()(int64_t b) const {
    layer_norm_row_backward(gates + b * G, xh + b * G, rstd[b * rstd_stride], g_ih, G,
                            gates + b * G, xh + b * G);
  }
};

FASTRNN_NS_END
