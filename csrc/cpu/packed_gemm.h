// The recurrent GEMM of one time step, on weights packed once per call, with the cell's
// pointwise math fused behind it.
//
// Why not the BLAS: a per-step sgemm re-packs W_hh on every call, which dominates at small
// and medium batch (measured: ~45-55 GFLOP/s at B=16 against ~100+ on large GEMMs). Here
// W_hh is packed once per forward/backward call into panels, and each time step runs a
// register-blocked kernel over them.
//
// Panels. The output columns are cut into vectors of L lanes (L = vector bytes / sizeof(S)).
// A panel is up to 4 such vectors, stored K-major: panel[k][v][lane], so one k step of the
// kernel reads the panel's NV vectors contiguously. For the forward GEMM (C = A W^T, columns
// grouped by gate) a panel gathers the same L hidden units from every gate: after the panel
// is computed, the pointwise cell update for those units has all its inputs and runs while
// they are still in L1. For the backward GEMM (C = A W, C = dh) a panel is 4 contiguous
// vectors of units. Either way the pointwise pass for a panel touches only its own units.
//
// Written with GCC/Clang vector extensions and compiled once per ISA (see ns.h): the same
// source gives AVX-512, AVX2+FMA and baseline (SSE2 / NEON) code.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

#ifdef __AVX512BF16__
#include <immintrin.h>
#endif

#include "core/bf16.h"
#include "core/ns.h"
#include "core/recurrent_weight.h"
#include "cpu/thread_pool.h"

#ifndef FASTRNN_VEC_BYTES
#define FASTRNN_VEC_BYTES 16
#endif
#ifndef FASTRNN_VEC_REGS
#define FASTRNN_VEC_REGS 16
#endif

FASTRNN_NS_BEGIN

template <typename S>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(FASTRNN_VEC_BYTES)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(FASTRNN_VEC_BYTES)));
};

template <typename S>
constexpr int lanes() {
  return FASTRNN_VEC_BYTES / sizeof(S);
}

// Rows of the register tile for a panel of NV vectors: as many accumulators as leave room
// for the NV panel vectors and a broadcast.
constexpr int max_rows(int nv) { return std::min(8, (FASTRNN_VEC_REGS * 3 / 4) / nv); }

struct Panel {
  int64_t offset;                // into PackedWeights::data
  int nv;                        // vectors in the panel, 1..4
  int64_t col[4];                // first output column of each vector
  int width[4];                  // valid lanes of each vector (L but at the end of a gate)
  int64_t unit_begin, unit_end;  // the hidden units whose outputs this panel completes
};

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};

// Packed panels of a weight, or (data null) the weight as given, for a step that runs once.
template <typename S>
struct PackedWeights {
  RecurrentWeight<S> weight;  // the source
  std::vector<Panel> panels;
  std::unique_ptr<S, AlignedFree> data;
  std::vector<S> rounded;  // with bf16 products: W rounded to bf16, the source of the above
  // With bf16 products on a CPU with the bf16 dot product: the panels hold pairs of bf16
  // weights, (W(k, n), W(k + 1, n)) in one 32-bit word, panel[k / 2][v][lane] (data null).
  std::unique_ptr<uint32_t, AlignedFree> bf16_pairs;
};

template <typename S>
PackedWeights<S> unpacked_weights(const RecurrentWeight<S>& weight) {
  PackedWeights<S> pw;
  pw.weight = weight;
  return pw;
}

// Packs the (K x groups * units) matrix Bm of a recurrent weight: for the forward's
// times_transposed (C = A W^T), a panel gathers the same units of every gate; for the
// backward's times (C = A W), it is up to 4 contiguous vectors of units.
// The panels of a weight (their columns and units) and their offsets, for panels of `k_rows`
// rows of L slots per vector: K rows of floats, or (K + 1) / 2 rows of bf16 pairs. *total:
// the slots of all panels.
template <typename S>
std::vector<Panel> panel_layout(const RecurrentWeight<S>& weight, int64_t k_rows, int64_t* total) {
  constexpr int L = lanes<S>();
  const int G = weight.groups;
  const int64_t H = weight.units;
  const int64_t unit_blocks = (H + L - 1) / L;
  const int blocks_per_panel = std::max(1, 4 / G);
  std::vector<Panel> panels;
  int64_t offset = 0;
  for (int64_t ub = 0; ub < unit_blocks; ub += blocks_per_panel) {
    Panel p{};
    p.offset = offset;
    p.unit_begin = ub * L;
    const int64_t ub_end = std::min<int64_t>(unit_blocks, ub + blocks_per_panel);
    p.unit_end = std::min<int64_t>(H, ub_end * L);
    for (int64_t b = ub; b < ub_end; ++b) {
      for (int g = 0; g < G; ++g) {
        p.col[p.nv] = g * H + b * L;
        p.width[p.nv] = static_cast<int>(std::min<int64_t>(L, H - b * L));
        ++p.nv;
      }
    }
    offset += k_rows * p.nv * L;
    panels.push_back(p);
  }
  *total = offset;
  return panels;
}

template <typename T>
T* aligned_array(int64_t n) {
  const size_t bytes = ((static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T) + 63) / 64) * 64;
  T* data = static_cast<T*>(std::aligned_alloc(64, bytes));
  if (!data) throw std::bad_alloc();
  return data;
}

// Packs the (K x groups * units) matrix Bm of a recurrent weight: for the forward's
// times_transposed (C = A W^T), a panel gathers the same units of every gate; for the
// backward's times (C = A W), it is up to 4 contiguous vectors of units.
template <typename S>
PackedWeights<S> pack_weights(const RecurrentWeight<S>& weight) {
  constexpr int L = lanes<S>();
  const S* W = weight.W;
  const int64_t K = weight.K;
  const int64_t stride_n = weight.stride_n(), stride_k = weight.stride_k();
  PackedWeights<S> pw = unpacked_weights(weight);
  int64_t total = 0;
  pw.panels = panel_layout(weight, K, &total);
  pw.data.reset(aligned_array<S>(total));
  S* data = pw.data.get();
  for (const Panel& p : pw.panels) {
    S* dst = data + p.offset;
    for (int64_t k = 0; k < K; ++k) {
      for (int v = 0; v < p.nv; ++v) {
        for (int l = 0; l < L; ++l) {
          *dst++ = l < p.width[v] ? W[(p.col[v] + l) * stride_n + k * stride_k] : S(0);
        }
      }
    }
  }
  return pw;
}

// C[r, col[v] + l] = beta * C[...] + sum_k A[r, k] * panel[k][v][l] for r < MR rows.
// beta == 0 never reads C (it may hold garbage).
template <typename S, int MR, int NV>
__attribute__((noinline)) void micro_tile(int64_t K, const S* A, int64_t lda, const S* P, S* C,
                                          int64_t ldc, const Panel& p, S beta) {
  using V = typename VecOf<S>::type;
  constexpr int L = lanes<S>();
  V acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  for (int64_t k = 0; k < K; ++k) {
    V b[NV];
    for (int v = 0; v < NV; ++v) std::memcpy(&b[v], P + (k * NV + v) * L, sizeof(V));
    for (int r = 0; r < MR; ++r) {
      const S a = A[r * lda + k];
      for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int v = 0; v < NV; ++v) {
      S* c = C + r * ldc + p.col[v];
      if (p.width[v] == L) {
        V old = V{};
        if (beta != S(0)) std::memcpy(&old, c, sizeof(V));
        const V out = beta != S(0) ? acc[r][v] + beta * old : acc[r][v];
        std::memcpy(c, &out, sizeof(V));
      } else {
        for (int l = 0; l < p.width[v]; ++l)
          c[l] = beta != S(0) ? acc[r][v][l] + beta * c[l] : acc[r][v][l];
      }
    }
  }
}

// The rows [0, M) of one panel, MR at a time; the last few rows by a smaller tile.
template <typename S, int NV, int MR = max_rows(NV)>
void panel_rows(int64_t M, int64_t K, const S* A, int64_t lda, const S* P, S* C, int64_t ldc,
                const Panel& p, S beta) {
  if constexpr (MR >= 1) {
    int64_t m = 0;
    for (; m + MR <= M; m += MR)
      micro_tile<S, MR, NV>(K, A + m * lda, lda, P, C + m * ldc, ldc, p, beta);
    if (m < M) panel_rows<S, NV, MR - 1>(M - m, K, A + m * lda, lda, P, C + m * ldc, ldc, p, beta);
  }
}

// Every row tile passes over the whole panel (K x NV x L): the panel streams from L2 in k
// order, which the prefetchers follow. Cutting K into L1-sized chunks was measured slower
// (LSTM step, AMD Zen 4, one thread: 85 against 102 GFLOP/s at B = 64, H = 1024; 75 against
// 95 at B = 16): each chunk re-reads and re-writes the C tile, and the panel's L1 slice left
// no room for A's rows.
template <typename S>
void panel_gemm(const PackedWeights<S>& w, const Panel& p, int64_t M, const S* A, int64_t lda, S* C,
                int64_t ldc, S beta) {
  const S* P = w.data.get() + p.offset;
  const int64_t K = w.weight.K;
  if (K == 0) {  // an empty sum: C = beta * C
    for (int64_t r = 0; r < M; ++r)
      for (int v = 0; v < p.nv; ++v)
        for (int l = 0; l < p.width[v]; ++l) {
          S& c = C[r * ldc + p.col[v] + l];
          c = beta != S(0) ? beta * c : S(0);
        }
    return;
  }
  switch (p.nv) {
    case 1: panel_rows<S, 1>(M, K, A, lda, P, C, ldc, p, beta); break;
    case 2: panel_rows<S, 2>(M, K, A, lda, P, C, ldc, p, beta); break;
    case 3: panel_rows<S, 3>(M, K, A, lda, P, C, ldc, p, beta); break;
    default: panel_rows<S, 4>(M, K, A, lda, P, C, ldc, p, beta); break;
  }
}

// ---------------------------------------------------------------------------- bf16 rounding
// Built on bf16_bits (core/bf16.h), the one rounding rule, shared with the CUDA backend.

inline uint32_t bf16_pair(float lo, float hi) {
  return static_cast<uint32_t>(bf16_bits(lo)) | (static_cast<uint32_t>(bf16_bits(hi)) << 16);
}

// x rounded to the nearest bf16 and back; NaN is returned as it is; float64 goes through
// float.
template <typename S>
inline S round_to_bf16(S x) {
  const float f = static_cast<float>(x);
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u = bf16_rounded_word(u);
  float r;
  std::memcpy(&r, &u, sizeof r);
  return f != f ? x : static_cast<S>(r);  // a select, not a branch: loops over it vectorize
}

#ifdef __AVX512BF16__
// rounding_gemv's y = W x, W (N, K), on the bf16 dot product: each 32 elements of a row of W
// and of x converted to bf16 (vcvtne2ps2bf16: to nearest even, as round_to_bf16) and
// multiplied pairwise into float32 lanes (vdpbf16ps); four rows at a time, four independent
// sums. Denormal operands count as zero (the instructions' only difference).
inline void rounding_gemv_nk_bf16(int64_t K, int64_t N, const float* W, int64_t ldw, const float* x,
                                  float beta, float* y) {
  const int64_t K32 = K / 32 * 32;
  auto pairs = [](const float* p) {
    return _mm512_cvtne2ps_pbh(_mm512_loadu_ps(p + 16), _mm512_loadu_ps(p));
  };
  auto finish = [&](int64_t n, __m512 acc) {
    const float* w = W + n * ldw;
    float s = _mm512_reduce_add_ps(acc);
    for (int64_t k = K32; k < K; ++k) s += round_to_bf16(w[k]) * x[k];
    y[n] = beta == 0.0f ? s : beta * y[n] + s;
  };
  int64_t n = 0;
  for (; n + 4 <= N; n += 4) {
    const float* w = W + n * ldw;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t k = 0; k < K32; k += 32) {
      const __m512bh xb = pairs(x + k);
      a0 = _mm512_dpbf16_ps(a0, pairs(w + k), xb);
      a1 = _mm512_dpbf16_ps(a1, pairs(w + ldw + k), xb);
      a2 = _mm512_dpbf16_ps(a2, pairs(w + 2 * ldw + k), xb);
      a3 = _mm512_dpbf16_ps(a3, pairs(w + 3 * ldw + k), xb);
    }
    finish(n, a0), finish(n + 1, a1), finish(n + 2, a2), finish(n + 3, a3);
  }
  for (; n < N; ++n) {
    const float* w = W + n * ldw;
    __m512 a = _mm512_setzero_ps();
    for (int64_t k = 0; k < K32; k += 32) a = _mm512_dpbf16_ps(a, pairs(w + k), pairs(x + k));
    finish(n, a);
  }
}
#endif

// y (N) = beta y + op(W) x for one row x (K), already rounded to bf16, with W's elements
// rounded to bf16 as they are read: a single row's bf16 product reads each weight once, so a
// rounded copy of W (or bf16 pairs) would cost more than the product. W stored (N, K) with
// row stride ldw when w_is_nk (y = W x), else (K, N) (y = W^T x). Sums in S, in a fixed order
// per output (16 interleaved partial sums along k for W (N, K), so that they vectorize).
template <typename S>
void rounding_gemv(bool w_is_nk, int64_t K, int64_t N, const S* W, int64_t ldw, const S* x, S beta,
                   S* y) {
#ifdef __AVX512BF16__
  if constexpr (std::is_same_v<S, float>)
    if (w_is_nk) {
      rounding_gemv_nk_bf16(K, N, W, ldw, x, beta, y);
      return;
    }
#endif
  if (w_is_nk) {
    constexpr int V = 16;
    for (int64_t n = 0; n < N; ++n) {
      const S* w = W + n * ldw;
      S part[V] = {};
      int64_t k = 0;
      for (; k + V <= K; k += V)
        for (int l = 0; l < V; ++l) part[l] += round_to_bf16(w[k + l]) * x[k + l];
      S acc = S(0);
      for (int l = 0; l < V; ++l) acc += part[l];
      for (; k < K; ++k) acc += round_to_bf16(w[k]) * x[k];
      y[n] = beta == S(0) ? acc : beta * y[n] + acc;
    }
    return;
  }
  for (int64_t n = 0; n < N; ++n) y[n] = beta == S(0) ? S(0) : beta * y[n];
  for (int64_t k = 0; k < K; ++k) {
    const S* w = W + k * ldw;
    const S xk = x[k];
    for (int64_t n = 0; n < N; ++n) y[n] += round_to_bf16(w[n]) * xk;
  }
}

#ifdef __AVX512BF16__
// ---------------------------------------------------------------------------- bf16 panels
// With bf16 products on a CPU with AVX512-BF16: W packed as bf16 pairs along k and each
// step's A rounded to pairs, then vdpbf16ps (16 lanes x 2 products per instruction, float32
// accumulation; denormal operands count as zero, the instruction's only difference from
// rounding the operands and summing in float32). float only: 16 lanes per vector.

// Packs W as bf16 pairs in the panel layout of pack_weights.
inline PackedWeights<float> pack_weights_bf16(const RecurrentWeight<float>& weight) {
  const int64_t K = weight.K, KP = (K + 1) / 2;
  const int64_t stride_n = weight.stride_n(), stride_k = weight.stride_k();
  const float* W = weight.W;
  PackedWeights<float> pw = unpacked_weights(weight);
  int64_t total = 0;
  pw.panels = panel_layout(weight, KP, &total);
  pw.bf16_pairs.reset(aligned_array<uint32_t>(total));
  uint32_t* data = pw.bf16_pairs.get();
  const std::vector<Panel>& panels = pw.panels;
  parallel_for(static_cast<int64_t>(panels.size()), [&](int64_t p0, int64_t p1) {
    for (int64_t pi = p0; pi < p1; ++pi) {
      const Panel& p = panels[pi];
      uint32_t* dst = data + p.offset;
      for (int64_t kp = 0; kp < KP; ++kp) {
        const int64_t k = 2 * kp;
        for (int v = 0; v < p.nv; ++v) {
          for (int l = 0; l < 16; ++l) {
            const bool in = l < p.width[v];
            const int64_t n = p.col[v] + l;
            const float lo = in ? W[n * stride_n + k * stride_k] : 0.0f;
            const float hi = in && k + 1 < K ? W[n * stride_n + (k + 1) * stride_k] : 0.0f;
            *dst++ = bf16_pair(lo, hi);
          }
        }
      }
    }
  });
  return pw;
}

// rows x K of A (row stride lda) as bf16 pairs, densely (KP per row) into buf.
inline const uint32_t* bf16_rows(std::vector<uint32_t>& buf, const float* A, int64_t rows,
                                 int64_t K, int64_t lda) {
  const int64_t KP = (K + 1) / 2;
  buf.resize(static_cast<size_t>(rows * KP));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t kp = 0; kp < KP; ++kp) {
      const float lo = A[r * lda + 2 * kp];
      const float hi = 2 * kp + 1 < K ? A[r * lda + 2 * kp + 1] : 0.0f;
      buf[r * KP + kp] = bf16_pair(lo, hi);
    }
  return buf.data();
}

// op(A)'s rows (M x K; op(A) = A (M x K, row stride lda) or A^T with A (K x M)) as bf16
// pairs, densely (KP = (K + 1) / 2 per row) into buf; blocked, and split over the pool.
inline const uint32_t* bf16_op_rows(std::vector<uint32_t>& buf, const float* A, bool trans,
                                    int64_t M, int64_t K, int64_t lda) {
  if (!trans) return bf16_rows(buf, A, M, K, lda);
  const int64_t KP = (K + 1) / 2, block = 64;
  buf.resize(static_cast<size_t>(M * KP));
  uint32_t* out = buf.data();
  parallel_for((M + block - 1) / block, [&](int64_t b0, int64_t b1) {
    for (int64_t m0 = b0 * block; m0 < std::min(M, b1 * block); m0 += block)
      for (int64_t kp0 = 0; kp0 < KP; kp0 += block)
        for (int64_t kp = kp0; kp < std::min(KP, kp0 + block); ++kp) {
          const float* lo = A + (2 * kp) * lda;
          const float* hi = 2 * kp + 1 < K ? A + (2 * kp + 1) * lda : nullptr;
          for (int64_t m = m0; m < std::min(M, m0 + block); ++m)
            out[m * KP + kp] = bf16_pair(lo[m], hi ? hi[m] : 0.0f);
        }
  });
  return out;
}

template <int MR, int NV>
__attribute__((noinline)) void micro_tile_bf16(int64_t KP, const uint32_t* A, int64_t lda,
                                               const uint32_t* P, float* C, int64_t ldc,
                                               const Panel& p, float beta) {
  __m512 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t kp = 0; kp < KP; ++kp) {
    __m512i b[NV];
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_si512(P + (kp * NV + v) * 16);
    for (int r = 0; r < MR; ++r) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(A[r * lda + kp]));
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, (__m512bh)b[v]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int v = 0; v < NV; ++v) {
      float* c = C + r * ldc + p.col[v];
      alignas(64) float out[16];
      _mm512_store_ps(out, acc[r][v]);
      for (int l = 0; l < p.width[v]; ++l) c[l] = beta != 0.0f ? out[l] + beta * c[l] : out[l];
    }
  }
}

template <int NV, int MR = max_rows(NV)>
void panel_rows_bf16(int64_t M, int64_t KP, const uint32_t* A, int64_t lda, const uint32_t* P,
                     float* C, int64_t ldc, const Panel& p, float beta) {
  if constexpr (MR >= 1) {
    int64_t m = 0;
    for (; m + MR <= M; m += MR)
      micro_tile_bf16<MR, NV>(KP, A + m * lda, lda, P, C + m * ldc, ldc, p, beta);
    if (m < M)
      panel_rows_bf16<NV, MR - 1>(M - m, KP, A + m * lda, lda, P, C + m * ldc, ldc, p, beta);
  }
}

// C[:M, the panel's columns] = A2 (M rows of KP pairs) . panel + beta C.
inline void panel_gemm_bf16(const PackedWeights<float>& w, const Panel& p, int64_t M,
                            const uint32_t* A2, float* C, int64_t ldc, float beta);

// C (M, N) = op(A) op(B) + beta C on bf16 operands with float32 sums; op(B) dense (ldb = N,
// or K when transposed). op(B) packed as pairs once, op(A) rounded to pairs once; row blocks
// of A outer and each thread's panels inner, so both stay in cache.
// `packed`: the pair panels of the last op(B), kept by the caller (the backend of one kernel
// call) and reused while the same B comes back (the input projection's W_ih, chunk after
// chunk); B must not change within that backend's lifetime, which one kernel call ensures.
inline void bf16_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                      int64_t lda, const float* B, float beta, float* C, int64_t ldc,
                      std::vector<uint32_t>& scratch, PackedWeights<float>& packed) {
  const RecurrentWeight<float> b = trans_b ? times_transposed(B, 1, N, K) : times(B, K, N);
  const RecurrentWeight<float>& held = packed.weight;
  if (!packed.bf16_pairs || held.W != B || held.transposed != b.transposed || held.K != K ||
      held.N() != N)
    packed = pack_weights_bf16(b);
  const PackedWeights<float>& w = packed;
  const int64_t KP = (K + 1) / 2;
  const uint32_t* A2 = bf16_op_rows(scratch, A, trans_a, M, K, lda);
  const int64_t panels = static_cast<int64_t>(w.panels.size()), rows = 192;
  parallel_for(panels, [&](int64_t p0, int64_t p1) {
    for (int64_t m0 = 0; m0 < M; m0 += rows)
      for (int64_t pi = p0; pi < p1; ++pi)
        panel_gemm_bf16(w, w.panels[pi], std::min(rows, M - m0), A2 + m0 * KP, C + m0 * ldc, ldc,
                        beta);
  });
}

inline void panel_gemm_bf16(const PackedWeights<float>& w, const Panel& p, int64_t M,
                            const uint32_t* A2, float* C, int64_t ldc, float beta) {
  const int64_t KP = (w.weight.K + 1) / 2;
  const uint32_t* P = w.bf16_pairs.get() + p.offset;
  switch (p.nv) {
    case 1: panel_rows_bf16<1>(M, KP, A2, KP, P, C, ldc, p, beta); break;
    case 2: panel_rows_bf16<2>(M, KP, A2, KP, P, C, ldc, p, beta); break;
    case 3: panel_rows_bf16<3>(M, KP, A2, KP, P, C, ldc, p, beta); break;
    default: panel_rows_bf16<4>(M, KP, A2, KP, P, C, ldc, p, beta); break;
  }
}
#endif

FASTRNN_NS_END
