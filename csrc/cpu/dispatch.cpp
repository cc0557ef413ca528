// The public CPU entry points (fastrnn/*.h): each forwards to the build of kernels_isa.cpp for
// the best instruction set this CPU has, chosen once.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>

#include "cpu/thread_pool.h"
#include "fastrnn/fastrnn.h"

// Declarations of the per-ISA builds (defined in kernels_isa.cpp, one namespace per build).
#define FASTRNN_DECLARE_ISA(isa)                                   \
  namespace fastrnn {                                              \
  namespace isa {                                                  \
  template <typename S>                                            \
  void lstm_forward(const LstmForwardArgs<S>&);                    \
  template <typename S>                                            \
  void lstm_backward(const LstmBackwardArgs<S>&);                  \
  template <typename S>                                            \
  void gru_forward(const GruForwardArgs<S>&);                      \
  template <typename S>                                            \
  void gru_backward(const GruBackwardArgs<S>&);                    \
  template <typename S>                                            \
  void rnn_forward(const RnnForwardArgs<S>&);                      \
  template <typename S>                                            \
  void rnn_backward(const RnnBackwardArgs<S>&);                    \
  template <typename S>                                            \
  void gemm_nt(int64_t, int64_t, int64_t, const S*, const S*, S*); \
  }                                                                \
  }

FASTRNN_DECLARE_ISA(generic)
#ifdef FASTRNN_HAVE_X86_ISAS
FASTRNN_DECLARE_ISA(avx2)
FASTRNN_DECLARE_ISA(avx512)
#endif

namespace fastrnn {
namespace {

enum class Isa { Generic, Avx2, Avx512 };

Isa detect() {
#ifdef FASTRNN_HAVE_X86_ISAS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
  return Isa::Generic;
}

Isa parse(const std::string& name, Isa fallback) {
  if (name == "generic") return Isa::Generic;
  if (name == "avx2") return Isa::Avx2;
  if (name == "avx512") return Isa::Avx512;
  return fallback;
}

// The best ISA of this CPU, capped by FASTRNN_CPU_ISA=generic|avx2|avx512 when set.
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

void set_num_threads(int n) { ThreadPool::set_num_threads(n); }
int get_num_threads() { return ThreadPool::num_threads(); }

// Calls fn<S>(args...) of the ISA build selected for this CPU.
#ifdef FASTRNN_HAVE_X86_ISAS
#define FASTRNN_DISPATCH(fn, ...)                        \
  switch (selected()) {                                  \
    case Isa::Avx512: return avx512::fn<S>(__VA_ARGS__); \
    case Isa::Avx2: return avx2::fn<S>(__VA_ARGS__);     \
    default: return generic::fn<S>(__VA_ARGS__);         \
  }
#else
#define FASTRNN_DISPATCH(fn, ...) return generic::fn<S>(__VA_ARGS__);
#endif

#define FASTRNN_PUBLIC(fn, Args)        \
  template <typename S>                 \
  void fn(const Args<S>& a) {           \
    FASTRNN_DISPATCH(fn, a)             \
  }                                     \
  template void fn(const Args<float>&); \
  template void fn(const Args<double>&);

FASTRNN_PUBLIC(lstm_forward, LstmForwardArgs)
FASTRNN_PUBLIC(lstm_backward, LstmBackwardArgs)
FASTRNN_PUBLIC(gru_forward, GruForwardArgs)
FASTRNN_PUBLIC(gru_backward, GruBackwardArgs)
FASTRNN_PUBLIC(rnn_forward, RnnForwardArgs)
FASTRNN_PUBLIC(rnn_backward, RnnBackwardArgs)

template <typename S>
void gemm_nt(int64_t M, int64_t N, int64_t K, const S* A, const S* B, S* C) {
  FASTRNN_DISPATCH(gemm_nt, M, N, K, A, B, C)
}
template void gemm_nt(int64_t, int64_t, int64_t, const float*, const float*, float*);
template void gemm_nt(int64_t, int64_t, int64_t, const double*, const double*, double*);

}  // namespace fastrnn
