// Per-element cell math shared by every backend: activations and the LSTM / GRU / RNN
// updates with their derivatives. Compiled by the host compiler and by nvcc, so the math the
// CPU tests check is the math the GPU runs.
//
// exp is our own branch-free implementation rather than std::exp, for two reasons:
//  - on the CPU the pointwise loops vectorize only if every call in them does (glibc's
//    vector exp needs -ffast-math, which would break NaN/Inf propagation);
//  - CPU and GPU then compute bit-for-bit the same activations, up to FMA contraction.
// Its error is ~1 ulp over the range used; NaN propagates; the result saturates at the
// clamp bounds instead of overflowing to inf, which sigmoid and tanh never notice.
// Derivatives are taken from saved outputs (sigmoid' = s (1 - s), tanh' = 1 - t^2).
#pragma once

#include <cstdint>
#include <cstring>

#include "core/ns.h"

#ifdef __CUDACC__
#define FASTRNN_HD __host__ __device__ __forceinline__
#else
#define FASTRNN_HD inline __attribute__((always_inline))
#endif

FASTRNN_NS_BEGIN

template <typename S>
struct ExpTraits;

template <>
struct ExpTraits<float> {
  using Bits = uint32_t;
  static constexpr float lo = -87.0f, hi = 88.0f;
  static constexpr float round_magic = 12582912.0f;  // 1.5 * 2^23: x + m - m rounds x
  static constexpr int mantissa_bits = 23, bias = 127, degree = 7;
  static constexpr int tanh_terms = 5;  // of tanh's series below |x| = 1/8 (see tanh_)
  static constexpr float ln2_hi = 0.693145751953125f, ln2_lo = 1.428606765330187e-06f;
};

template <>
struct ExpTraits<double> {
  using Bits = uint64_t;
  static constexpr double lo = -708.0, hi = 709.0;
  static constexpr double round_magic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr int mantissa_bits = 52, bias = 1023, degree = 12;
  static constexpr int tanh_terms = 8;
  static constexpr double ln2_hi = 0.6931471803691238, ln2_lo = 1.9082149292705877e-10;
};

// exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln2 / 2; exp(r) by its Taylor series
// to the degree where the remainder is below half an ulp.
template <typename S>
FASTRNN_HD S exp_(S x) {
  using E = ExpTraits<S>;
  using Bits = typename E::Bits;
  x = x > E::hi ? E::hi : x;  // comparisons are false for NaN: NaN passes through
  x = x < E::lo ? E::lo : x;
  const S shifted = x * S(1.4426950408889634) + E::round_magic;
  const S n = shifted - E::round_magic;
  const S r = (x - n * E::ln2_hi) - n * E::ln2_lo;
  S p = S(1);
  S inv_fact = S(1);
  // Horner from the top: 1 + r (1 + r/2 (1 + r/3 (...))).
  for (int k = E::degree; k >= 1; --k) {
    inv_fact = S(1) / S(k);
    p = S(1) + r * inv_fact * p;
  }
  // 2^n from the bits of `shifted`: its low mantissa bits hold n in two's complement.
  Bits nb, mb;
  const S magic = E::round_magic;
  std::memcpy(&nb, &shifted, sizeof(S));
  std::memcpy(&mb, &magic, sizeof(S));
  const Bits scale_bits = (nb - mb + Bits(E::bias)) << E::mantissa_bits;
  S scale;
  std::memcpy(&scale, &scale_bits, sizeof(S));
  return p * scale;
}

template <typename S>
FASTRNN_HD S sigmoid(S x) {
  return S(1) / (S(1) + exp_(-x));
}

// c_k of tanh's odd Taylor series, tanh x = x (c_0 + c_1 x^2 + c_2 x^4 + ...).
FASTRNN_HD constexpr double tanh_series_coefficient(int k) {
  return k == 0   ? 1.0
         : k == 1 ? -1.0 / 3
         : k == 2 ? 2.0 / 15
         : k == 3 ? -17.0 / 315
         : k == 4 ? 62.0 / 2835
         : k == 5 ? -1382.0 / 155925
         : k == 6 ? 21844.0 / 6081075
                  : -929569.0 / 638512875;
}

// tanh x = 1 - 2 / (exp(2x) + 1) loses its relative accuracy near 0 to cancellation (in
// float32, tanh(1e-5) came out 1.001e-5 and tanh(1e-8) 0), so below |x| = 1/8 the odd Taylor
// series takes over: with x^2 <= 1/64 each term is < 1/150 of the one before, and
// tanh_terms of them leave a remainder below half an ulp. Both are computed and one
// selected, so the pointwise loops still vectorize; NaN fails the comparison and propagates.
template <typename S>
FASTRNN_HD S tanh_(S x) {
  const S x2 = x * x;
  S p = S(tanh_series_coefficient(ExpTraits<S>::tanh_terms - 1));
  for (int k = ExpTraits<S>::tanh_terms - 2; k >= 0; --k)
    p = p * x2 + S(tanh_series_coefficient(k));
  const S near_zero = x * p;
  const S elsewhere = S(1) - S(2) / (exp_(S(2) * x) + S(1));
  return x2 < S(1.0 / 64) ? near_zero : elsewhere;
}

template <typename S>
FASTRNN_HD S relu(S x) {
  return x < S(0) ? S(0) : x;  // NaN stays NaN
}

// ---------------------------------------------------------------------------- LSTM

// One unit of one sequence: pre-activations in, activations and new state out.
template <typename S>
FASTRNN_HD void lstm_cell_forward(S& i, S& f, S& g, S& o, S c_prev, S& c, S& h) {
  i = sigmoid(i);
  f = sigmoid(f);
  g = tanh_(g);
  o = sigmoid(o);
  c = f * c_prev + i * g;
  h = o * tanh_(c);
}

// Activations in (i, f, g, o), pre-activation gradients out, in place. dh is the total
// gradient reaching h_t; dc the gradient reaching c_t from step t+1, replaced by the one
// reaching c_{t-1}. tanh(c_t) is the one transcendental recomputed: saving it would cost a
// (T, B, H) buffer for one exp per element.
template <typename S>
FASTRNN_HD void lstm_cell_backward(S& i, S& f, S& g, S& o, S c_prev, S c, S dh, S& dc) {
  const S tc = tanh_(c);
  const S dc_total = dc + dh * o * (S(1) - tc * tc);
  const S di = dc_total * g * i * (S(1) - i);
  const S df = dc_total * c_prev * f * (S(1) - f);
  const S dg = dc_total * i * (S(1) - g * g);
  const S d_o = dh * tc * o * (S(1) - o);
  dc = dc_total * f;
  i = di;
  f = df;
  g = dg;
  o = d_o;
}

// ---------------------------------------------------------------------------- GRU

template <typename S>
FASTRNN_HD void gru_rz_forward(S& r, S& z) {
  r = sigmoid(r);
  z = sigmoid(z);
}

// n from its pre-activation, then the new state.
template <typename S>
FASTRNN_HD S gru_update(S z, S n, S h_prev) {
  return (S(1) - z) * n + z * h_prev;
}

// Gradients that both GRU forms share: from dh (total, reaching h_t) and the activations.
// Returns d(n pre-activation) and d(z pre-activation); dh_direct = dh * z is the part of
// dh_{t-1} that bypasses the GEMMs.
template <typename S>
FASTRNN_HD void gru_shared_backward(S z, S n, S h_prev, S dh, S& dn_pre, S& dz_pre, S& dh_direct) {
  dn_pre = dh * (S(1) - z) * (S(1) - n * n);
  dz_pre = dh * (h_prev - n) * z * (S(1) - z);
  dh_direct = dh * z;
}

// ---------------------------------------------------------------------------- RNN

template <typename S>
FASTRNN_HD S rnn_activation(bool is_tanh, S a) {
  return is_tanh ? tanh_(a) : relu(a);
}

// d(pre-activation) from the saved output h.
template <typename S>
FASTRNN_HD S rnn_activation_backward(bool is_tanh, S h, S dh) {
  return is_tanh ? dh * (S(1) - h * h) : (h > S(0) ? dh : S(0));
}

FASTRNN_NS_END
