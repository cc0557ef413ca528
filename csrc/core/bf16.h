// The one rounding rule of bf16 products, for every backend (the CPU builds and nvcc): to the
// nearest bf16, ties to even. The CPU packs and rounds with it (cpu/packed_gemm.h), the CUDA
// backend converts GEMM operands with it (cuda/kernels.h: ToBf16).
#pragma once

#include <cstdint>
#include <cstring>

#include "core/cell_math.h"  // FASTRNN_HD

FASTRNN_NS_BEGIN

// The float with bits u rounded to the nearest bf16, as float bits (the low 16 bits zero);
// not for NaN. Branch-free, so that loops over it vectorize.
FASTRNN_HD uint32_t bf16_rounded_word(uint32_t u) {
  return (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
}

// The bits of x rounded to the nearest bf16; a NaN stays a (quiet) NaN.
FASTRNN_HD uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>(bf16_rounded_word(u) >> 16);
}

// The float a bf16's bits stand for (exact).
FASTRNN_HD float bf16_value(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

FASTRNN_NS_END
