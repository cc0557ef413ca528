// The CUDA backend's kernels, written as plain functors over explicit launch indices so that
// the host compiler builds them too: CudaDevice::launch (cuda_launch.cuh) runs them on the GPU,
// and
// emulated_device.h runs the very same bodies on the CPU, block by block and thread by
// thread, for the tests.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/bf16.h"
#include "core/cell_math.h"

FASTRNN_NS_BEGIN

// Where a thread sits in a 1-D launch.
struct ThreadIndex {
  int64_t block, thread, grid_dim, block_dim;
  FASTRNN_HD int64_t global() const { return block * block_dim + thread; }
  FASTRNN_HD int64_t stride() const { return grid_dim * block_dim; }
};

// 1-D launch shape for n independent items: 256 threads a block (8 warps), as many blocks as
// cover n, capped so that a huge n loops (grid-stride) rather than overflowing the grid.
struct LaunchDims {
  int64_t grid, block;
};
constexpr int64_t kBlock = 256;
constexpr int64_t kMaxGrid = 65535;
inline LaunchDims launch_dims(int64_t n) {
  return LaunchDims{std::max<int64_t>(1, std::min<int64_t>((n + kBlock - 1) / kBlock, kMaxGrid)),
                    kBlock};
}

// f(b, j) for every b < M, j < N: one item per element, grid-stride; the pointwise pass of a
// step (f is a cell functor from core/{lstm,gru,rnn}.h).
template <typename F>
struct Elementwise {
  int64_t M, N;
  F f;
  FASTRNN_HD void operator()(const ThreadIndex& ix) const {
    const int64_t n = M * N;
    for (int64_t i = ix.global(); i < n; i += ix.stride()) f(i / N, i % N);
  }
};

// f(b) for every b < M: one item per row, grid-stride (a row's work that needs its
// statistics, as layer norm's).
template <typename F>
struct EachRow {
  int64_t M;
  F f;
  FASTRNN_HD void operator()(const ThreadIndex& ix) const {
    for (int64_t b = ix.global(); b < M; b += ix.stride()) f(b);
  }
};

// out[j] = sum over m of A[m * lda + j]: one thread per column, rows added in order, so the
// result is deterministic (no atomics) and neighbouring threads read neighbouring addresses.
template <typename S>
struct ColumnSums {
  int64_t M, N;
  const S* A;
  int64_t lda;
  S* out;
  FASTRNN_HD void operator()(const ThreadIndex& ix) const {
    for (int64_t j = ix.global(); j < N; j += ix.stride()) {
      S s = S(0);
      for (int64_t m = 0; m < M; ++m) s += A[m * lda + j];
      out[j] = s;
    }
  }
};

// C[m, n] *= beta (beta == 0 writes zeros, NaN included): a GEMM with K == 0.
template <typename S>
struct ScaleRows {
  S* C;
  int64_t ldc;
  S beta;
  FASTRNN_HD void operator()(int64_t m, int64_t n) const {
    S& c = C[m * ldc + n];
    c = beta == S(0) ? S(0) : beta * c;
  }
};

// dst (rows, cols), dense = src (rows, cols) with row stride ld, each element rounded to the
// nearest bf16 (its bits): the operands of a bf16 product, as cuBLAS then reads them.
struct ToBf16 {
  int64_t rows, cols;
  const float* src;
  int64_t ld;
  uint16_t* dst;
  FASTRNN_HD void operator()(const ThreadIndex& ix) const {
    const int64_t n = rows * cols;
    for (int64_t i = ix.global(); i < n; i += ix.stride())
      dst[i] = bf16_bits(src[(i / cols) * ld + i % cols]);
  }
};

// dst[o, k, :] = src[o, perm[k], :] for (outer, rows, inner) arrays: the row reordering of
// variable-length batches (sort by length, and back).
template <typename S>
struct TakeRows {
  int64_t outer, rows, inner;
  const S* src;
  const int64_t* perm;  // (rows) device memory
  S* dst;
  FASTRNN_HD void operator()(const ThreadIndex& ix) const {
    const int64_t n = outer * rows * inner;
    for (int64_t i = ix.global(); i < n; i += ix.stride()) {
      const int64_t e = i % inner, k = (i / inner) % rows, o = i / (inner * rows);
      dst[i] = src[(o * rows + perm[k]) * inner + e];
    }
  }
};

FASTRNN_NS_END
