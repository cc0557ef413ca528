// CpuBackend: what the time loops in core/ need from a device, on the CPU.
//   gemm       row-major C = alpha op(A) op(B) + beta C, from the BLAS, rows split over the
//              pool (the BLAS itself runs single-threaded: one pool in the process); a
//              single row becomes a GEMV with its columns split over the pool
//   pack       a RecurrentWeight (core/recurrent_weight.h) into panels, once per call, when
//              more than one step will use it with more than one row (packed_gemm.h);
//              otherwise a handle on W as it is
//   step       one time step: the packed recurrent GEMM with the pointwise cell update
//              fused behind each panel, panels split over the pool (unpacked: one row, BLAS
//              GEMVs over unit blocks with the pointwise update behind each; more rows, the
//              BLAS, then the pointwise pass)
//   pointwise  f(b, j) over a (M, N) range, rows split over the pool
//   rows       f(b) over M whole rows, rows split over the pool (layer norm's row statistics)
//   colsum     bias gradients: out[j] = sum_m A[m, j], in a fixed order
//   alloc      workspace living as long as the backend object (one kernel call)
// With `bf16` set, every product takes bf16-rounded operands and accumulates in fp32 (the
// portable form of bf16 kernels, the same results class): gemm and step round their A and
// B operands into scratch copies, pack rounds W once.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

#include "core/loop_common.h"
#include "core/ns.h"
#include "cpu/blas.h"
#include "cpu/packed_gemm.h"
#include "cpu/thread_pool.h"

FASTRNN_NS_BEGIN

template <typename S>
class CpuBackend {
 public:
  using Packed = PackedWeights<S>;

  bool bf16 = false;  // products on bf16-rounded operands (see above)

  // Row-major C (M, N) = alpha op(A) op(B) + beta C, op(A) (M, K), op(B) (K, N).
  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, S alpha, const S* A,
            int64_t lda, const S* B, int64_t ldb, S beta, S* C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    if (K == 0) {
      scale_rows(M, N, beta, C, ldc);
      return;
    }
    if (bf16 && M == 1 && !trans_a && alpha == S(1)) {  // one row: B rounded as it is read
      const S* a = rounded(scratch_a_, A, 1, K, K);
      check_blas_ints({N, K, ldb});
      parallel_for(
          N,
          [&](int64_t n0, int64_t n1) {
            rounding_gemv(trans_b, K, n1 - n0, B + n0 * (trans_b ? ldb : 1), ldb, a, beta, C + n0);
          },
          256);
      return;
    }
#ifdef __AVX512BF16__
    // Large products with the bf16 dot product: op(B) packed as pairs, op(A) as pairs.
    if constexpr (std::is_same_v<S, float>)
      if (bf16 && alpha == S(1) && ldb == (trans_b ? K : N) && M * N * K >= (int64_t(1) << 20)) {
        bf16_gemm(trans_a, trans_b, M, N, K, A, lda, B, beta, C, ldc, scratch_pairs_, last_bf16_b_);
        return;
      }
#endif
    if (bf16) {  // the operands, as op() reads them, into rounded dense copies
      A = rounded(scratch_a_, A, trans_a ? K : M, trans_a ? M : K, lda);
      lda = trans_a ? M : K;
      B = rounded(scratch_b_, B, trans_b ? N : K, trans_b ? K : N, ldb);
      ldb = trans_b ? K : N;
    }
    check_blas_ints({M, N, K, lda, ldb, ldc});
    if (M == 1 && !trans_a && alpha == S(1)) {  // one row: a GEMV, columns split over the pool
      parallel_for(
          N,
          [&](int64_t n0, int64_t n1) {
            blas_gemv(trans_b, K, n1 - n0, B + n0 * (trans_b ? ldb : 1), ldb, A, beta, C + n0);
          },
          256);
      return;
    }
    // Split the rows of C; a row block of op(A) starts at row m (no transpose) or column m.
    // Each thread gets ~4 MFLOP at least: below that, waking a sleeping worker costs more
    // than it saves.
    const int64_t min_rows = std::max<int64_t>(16, (1 << 21) / std::max<int64_t>(1, N * K));
    parallel_for(
        M,
        [&](int64_t m0, int64_t m1) {
          const S* a = trans_a ? A + m0 : A + m0 * lda;
          blas_gemm(trans_a, trans_b, m1 - m0, N, K, alpha, a, lda, B, ldb, beta, C + m0 * ldc,
                    ldc);
        },
        min_rows);
  }

  // Packs W for `step`, if it pays: packing reads and writes all of W once, so for a weight
  // used by one step only (T = 1: single-cell calls) the handle keeps W as it is and `step`
  // calls the BLAS instead. Nor does it pay for steps of one row (batch 1) once W outgrows
  // L1/L2 (> 64 KiB): a step then reads each weight once, which the BLAS's GEMV does from W
  // as it is at the packed kernel's speed, and packing (a strided gather of all of W) cost
  // 20-40 such steps (measured, LSTM, T = 100, H = 256-1024: forward 20-32% faster without
  // it; training, T = 50: H = 256 1.8 vs 2.0 ms for GRU, 2.5 vs 2.8 for LSTM). Below that the
  // packed kernel wins by a few per cent (GRU H = 64: 151 vs 160 us).
  Packed pack(const RecurrentWeight<S>& w, int64_t uses, int64_t rows) {
#ifdef __AVX512BF16__
    // bf16 products with the bf16 dot product: W as bf16 pairs, at any batch (a batch-1 step
    // then reads half the bytes of the float GEMV).
    if constexpr (std::is_same_v<S, float>)
      if (bf16 && uses >= 2) return pack_weights_bf16(w);
#endif
    if (!bf16) return pack_as_is(w, uses, rows);
    // Steps of one row read W once each: step rounds it as it reads (gemv_step), no copy.
    if (rows <= 1) return unpacked_weights(w);
    // bf16 products elsewhere: a rounded copy of W, packed (or held) as a float weight.
    RecurrentWeight<S> r = w;
    std::vector<S> copy(w.W, w.W + w.K * w.N());
    for (S& v : copy) v = round_to_bf16(v);
    r.W = copy.data();
    Packed p = pack_as_is(r, uses, rows);
    p.rounded = std::move(copy);  // a vector's move keeps its data where r.W points
    return p;
  }

  // C[:M, panel columns] = A (M, K) . packed + beta C, then f(b, j) for b < M_f and the
  // units j of each panel, with the panel's outputs still in cache. Rows in [M, M_f) take
  // part in the pointwise pass only (in backward: sequences whose last step this is).
  template <typename F>
  void step(const Packed& w, int64_t M, int64_t M_f, const S* A, int64_t lda, S* C, int64_t ldc,
            S beta, const F& f) {
    if (std::max(M, M_f) == 0) return;
#ifdef __AVX512BF16__
    if constexpr (std::is_same_v<S, float>)
      if (w.bf16_pairs) {
        bf16_step(w, M, M_f, A, lda, C, ldc, beta, f);
        return;
      }
#endif
    if (bf16 && M > 0) {  // the step's rows of A, rounded (W was rounded by pack)
      A = rounded(scratch_step_, A, M, w.weight.K, lda);
      lda = w.weight.K;
    }
    if (!w.data && std::max(M, M_f) == 1) {  // one row: GEMVs fused with the pointwise pass
      // bf16 with W not rounded by pack (one row): rounded as the GEMV reads it.
      gemv_step(w.weight, M, M_f, A, C, beta, f, bf16 && w.rounded.empty());
      return;
    }
    if (!w.data) {  // not packed: one BLAS call over every column, then the pointwise pass
      if (M > 0) unpacked_gemm(w, M, A, lda, C, ldc, beta);
      if (M_f > 0) pointwise(M_f, w.weight.units, f);
      return;
    }
    // A thread is worth waking for ~128K flops or more (a wake-up and join cost microseconds;
    // between steps the workers are still spinning, so this is the usual case).
    panel_pass(w, M, M_f, f, 1 << 17,
               [&](const Panel& p) { panel_gemm(w, p, M, A, lda, C, ldc, beta); });
  }

#ifdef __AVX512BF16__
  // `step` on bf16 pair panels: A's rows rounded to pairs once, then as the float step.
  template <typename F>
  void bf16_step(const Packed& w, int64_t M, int64_t M_f, const float* A, int64_t lda, float* C,
                 int64_t ldc, float beta, const F& f) {
    const uint32_t* A2 = M > 0 ? bf16_rows(scratch_pairs_, A, M, w.weight.K, lda) : nullptr;
    // Twice the float step's rate: a thread is worth ~256K flops.
    panel_pass(w, M, M_f, f, 1 << 18,
               [&](const Panel& p) { panel_gemm_bf16(w, p, M, A2, C, ldc, beta); });
  }
#endif

  // C = A . packed + beta C over M rows, nothing fused.
  void step(const Packed& w, int64_t M, const S* A, int64_t lda, S* C, int64_t ldc, S beta) {
    step(w, M, 0, A, lda, C, ldc, beta, [](int64_t, int64_t) {});
  }

  // f(b, j) for b < M, j < N.
  template <typename F>
  void pointwise(int64_t M, int64_t N, const F& f) {
    if (M == 0 || N == 0) return;
    parallel_for(
        M,
        [&](int64_t m0, int64_t m1) {
          for (int64_t b = m0; b < m1; ++b) run_row(f, b, 0, N);
        },
        std::max<int64_t>(1, 32768 / N));
  }

  // f(b) for b < M: a whole row each (what needs the row's statistics: layer norm), rows split
  // over the pool; `width` the row's elements, to size the threads' shares.
  template <typename F>
  void rows(int64_t M, int64_t width, const F& f) {
    if (M == 0) return;
    parallel_for(
        M,
        [&](int64_t m0, int64_t m1) {
          for (int64_t b = m0; b < m1; ++b) f(b);
        },
        std::max<int64_t>(1, 8192 / std::max<int64_t>(width, 1)));
  }

  // out[j] = sum over m of A[m, j] (m in order, so the result never depends on threads).
  void colsum(int64_t M, int64_t N, const S* A, int64_t lda, S* out) {
    parallel_for(
        N,
        [&](int64_t j0, int64_t j1) {
          std::fill(out + j0, out + j1, S(0));
          for (int64_t m = 0; m < M; ++m) {
            const S* a = A + m * lda;
#pragma omp simd
            for (int64_t j = j0; j < j1; ++j) out[j] += a[j];
          }
        },
        256);
  }

  void copy(int64_t n, const S* src, S* dst) {
    if (n) std::memcpy(dst, src, n * sizeof(S));
  }

  void fill_zero(int64_t n, S* dst) { std::fill(dst, dst + n, S(0)); }

  S* alloc(int64_t n) {
    buffers_.emplace_back(new S[std::max<int64_t>(n, 1)]);
    return buffers_.back().get();
  }

 private:
  // W packed into float panels, or held as it is where packing does not pay (see pack).
  static Packed pack_as_is(const RecurrentWeight<S>& w, int64_t uses, int64_t rows) {
    const bool small = w.K * w.N() * static_cast<int64_t>(sizeof(S)) <= 64 * 1024;
    if (uses < 2 || (rows < 2 && !small)) return unpacked_weights(w);
    return pack_weights(w);
  }

  // The panels split over the pool: each runs gemm(panel) (if M > 0), then f on the panel's
  // units for rows b < M_f; a thread gets min_flops or more.
  template <typename F, typename G>
  void panel_pass(const Packed& w, int64_t M, int64_t M_f, const F& f, int64_t min_flops,
                  const G& gemm) {
    const int64_t panels = static_cast<int64_t>(w.panels.size());
    const int64_t panel_flops =
        2 * std::max<int64_t>(M, 1) * w.weight.K * 4 * lanes<S>() + M_f * 64;
    const int64_t min_panels = std::max<int64_t>(1, min_flops / std::max<int64_t>(panel_flops, 1));
    parallel_for(
        panels,
        [&](int64_t p0, int64_t p1) {
          for (int64_t pi = p0; pi < p1; ++pi) {
            const Panel& p = w.panels[pi];
            if (M > 0) gemm(p);
            for (int64_t b = 0; b < M_f; ++b) run_row(f, b, p.unit_begin, p.unit_end);
          }
        },
        min_panels);
  }

  template <typename F>
  static void run_row(const F& f, int64_t b, int64_t j0, int64_t j1) {
#pragma omp simd
    for (int64_t j = j0; j < j1; ++j) f(b, j);
  }

  // One row: C (1, N) = A (1, K) Bm + beta C (if M = 1), then f(0, j) (if M_f = 1) for every unit
  // j, with the units split over the pool in blocks; a block runs one GEMV per group (gate) over
  // its units' columns, then f on those units while their outputs are in cache.
  template <typename F>
  void gemv_step(const RecurrentWeight<S>& b, int64_t M, int64_t M_f, const S* A, S* C, S beta,
                 const F& f, bool round_w) {
    const int64_t units = b.units, K = b.K, ld = b.ld();
    // A thread is worth waking for ~128K flops (as for the packed step).
    const int64_t min_units =
        std::max<int64_t>(16, (1 << 17) / std::max<int64_t>(1, 2 * b.groups * K));
    parallel_for(
        units,
        [&](int64_t u0, int64_t u1) {
          if (M > 0)
            for (int g = 0; g < b.groups; ++g) {
              const int64_t n0 = g * units + u0;
              const S* w = b.W + n0 * (b.transposed ? ld : 1);
              if (round_w)
                rounding_gemv(b.transposed, K, u1 - u0, w, ld, A, beta, C + n0);
              else
                blas_gemv(b.transposed, K, u1 - u0, w, ld, A, beta, C + n0);
            }
          if (M_f > 0) run_row(f, 0, u0, u1);
        },
        min_units);
  }

  // C (M, N) = A (M, K) Bm + beta C for an unpacked handle: one BLAS call.
  void unpacked_gemm(const Packed& w, int64_t M, const S* A, int64_t lda, S* C, int64_t ldc,
                     S beta) {
    const RecurrentWeight<S>& b = w.weight;
    gemm(false, b.transposed, M, b.N(), b.K, S(1), A, lda, b.W, b.ld(), beta, C, ldc);
  }

  // rows x cols of src (row stride ld), rounded to bf16, densely into buf; returns buf's data.
  static const S* rounded(std::vector<S>& buf, const S* src, int64_t rows, int64_t cols,
                          int64_t ld) {
    buf.resize(static_cast<size_t>(rows * cols));
    S* out = buf.data();
    parallel_for(
        rows,
        [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r)
            for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = round_to_bf16(src[r * ld + c]);
        },
        std::max<int64_t>(1, 65536 / std::max<int64_t>(cols, 1)));
    return out;
  }

  static void scale_rows(int64_t M, int64_t N, S beta, S* C, int64_t ldc) {
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = beta == S(0) ? S(0) : beta * C[m * ldc + n];
  }

  std::vector<std::unique_ptr<S[]>> buffers_;
  std::vector<S> scratch_a_, scratch_b_, scratch_step_;  // rounded operands (bf16)
  std::vector<uint32_t> scratch_pairs_;                  // a step's A as bf16 pairs
  PackedWeights<S> last_bf16_b_;  // bf16_gemm's last op(B), reused while B comes back
};

FASTRNN_NS_END
