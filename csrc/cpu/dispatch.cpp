// The public CPU entry points (fastrnn/fastrnn.h) and the controls of cpu/dispatch.h: each
// entry point forwards to the build of kernels_isa.cpp for the selected instruction set, the
// best this CPU has unless set_cpu_isa or FASTRNN_CPU_ISA says otherwise.
#include "cpu/dispatch.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include "cpu/thread_pool.h"
#include "fastrnn/fastrnn.h"

// Declarations of the per-ISA builds (defined in kernels_isa.cpp, one namespace per build).
#define FASTRNN_DECLARE_ISA_KERNEL(name, Args) \
  template <typename S>                        \
  void name(const Args<S>&);
#define FASTRNN_DECLARE_ISA(isa)                                                              \
  namespace fastrnn {                                                                         \
  namespace isa {                                                                             \
  FASTRNN_FOR_EACH_KERNEL(FASTRNN_DECLARE_ISA_KERNEL)                                         \
  template <typename S>                                                                       \
  void gemm_nt(int64_t, int64_t, int64_t, const S*, const S*, S*, bool);                      \
  template <typename S>                                                                       \
  double time_recurrent_step(int64_t, int, int64_t, int64_t, const S*, const S*, S*, int64_t, \
                             bool);                                                           \
  }                                                                                           \
  }

FASTRNN_DECLARE_ISA(generic)
#ifdef FASTRNN_HAVE_X86_ISAS
FASTRNN_DECLARE_ISA(avx2)
FASTRNN_DECLARE_ISA(avx512)
FASTRNN_DECLARE_ISA(avx512bf16)
#endif

namespace fastrnn {
namespace {

enum class Isa { Generic, Avx2, Avx512, Avx512Bf16 };

Isa detect() {
#ifdef FASTRNN_HAVE_X86_ISAS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return __builtin_cpu_supports("avx512bf16") ? Isa::Avx512Bf16 : Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
  return Isa::Generic;
}

Isa parse(const std::string& name, Isa fallback) {
  if (name == "generic") return Isa::Generic;
  if (name == "avx2") return Isa::Avx2;
  if (name == "avx512") return Isa::Avx512;
  if (name == "avx512bf16") return Isa::Avx512Bf16;
  return fallback;
}

// The best ISA of this CPU, capped by FASTRNN_CPU_ISA=generic|avx2|avx512|avx512bf16 when set.
std::atomic<Isa>& current() {
  static std::atomic<Isa> isa{[] {
    const Isa best = detect();
    const char* cap = std::getenv("FASTRNN_CPU_ISA");
    return cap ? std::min(best, parse(cap, best)) : best;
  }()};
  return isa;
}

Isa selected() { return current().load(std::memory_order_relaxed); }

}  // namespace

static const char* cpu_isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512Bf16: return "avx512bf16";
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "generic";
  }
}

const char* cpu_isa() { return cpu_isa_name(selected()); }

bool set_cpu_isa(const char* name) {
  const Isa want = parse(name, Isa::Generic);
  if (want > detect() || std::string(name) != cpu_isa_name(want)) return false;
  current().store(want);
  return true;
}

std::vector<std::string> supported_cpu_isas() {
  std::vector<std::string> isas;
  for (Isa isa : {Isa::Generic, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16})
    if (isa <= detect()) isas.push_back(cpu_isa_name(isa));
  return isas;
}

void set_num_threads(int n) { ThreadPool::set_num_threads(n); }
int get_num_threads() { return ThreadPool::num_threads(); }

// Calls fn<S>(args...) of the ISA build selected for this CPU.
#ifdef FASTRNN_HAVE_X86_ISAS
#define FASTRNN_DISPATCH(fn, ...)                                \
  switch (selected()) {                                          \
    case Isa::Avx512Bf16: return avx512bf16::fn<S>(__VA_ARGS__); \
    case Isa::Avx512: return avx512::fn<S>(__VA_ARGS__);         \
    case Isa::Avx2: return avx2::fn<S>(__VA_ARGS__);             \
    default: return generic::fn<S>(__VA_ARGS__);                 \
  }
#else
#define FASTRNN_DISPATCH(fn, ...) return generic::fn<S>(__VA_ARGS__);
#endif

#define FASTRNN_PUBLIC_KERNEL(name, Args) \
  template <typename S>                   \
  void name(const Args<S>& a) {           \
    FASTRNN_DISPATCH(name, a)             \
  }                                       \
  template void name(const Args<float>&); \
  template void name(const Args<double>&);
FASTRNN_FOR_EACH_KERNEL(FASTRNN_PUBLIC_KERNEL)
#undef FASTRNN_PUBLIC_KERNEL

template <typename S>
void gemm_nt(int64_t M, int64_t N, int64_t K, const S* A, const S* B, S* C, bool bf16) {
  FASTRNN_DISPATCH(gemm_nt, M, N, K, A, B, C, bf16)
}
template void gemm_nt(int64_t, int64_t, int64_t, const float*, const float*, float*, bool);
template void gemm_nt(int64_t, int64_t, int64_t, const double*, const double*, double*, bool);

template <typename S>
double time_recurrent_step(int64_t M, int groups, int64_t units, int64_t K, const S* A, const S* W,
                           S* C, int64_t reps, bool bf16) {
  FASTRNN_DISPATCH(time_recurrent_step, M, groups, units, K, A, W, C, reps, bf16)
}
template double time_recurrent_step(int64_t, int, int64_t, int64_t, const float*, const float*,
                                    float*, int64_t, bool);
template double time_recurrent_step(int64_t, int, int64_t, int64_t, const double*, const double*,
                                    double*, int64_t, bool);

}  // namespace fastrnn
