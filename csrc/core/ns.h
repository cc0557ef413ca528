// Everything compiled per instruction set lives in an inline namespace named after it
// (fastrnn::avx512, fastrnn::avx2, fastrnn::generic, fastrnn::cuda). The CPU kernels are
// compiled once per ISA and picked at run time; without distinct names the linker would
// merge their inline functions and could run AVX-512 code on a CPU without it.
#pragma once

#ifndef FASTRNN_ISA
#define FASTRNN_ISA generic
#endif

#define FASTRNN_NS_BEGIN \
  namespace fastrnn {    \
  inline namespace FASTRNN_ISA {
#define FASTRNN_NS_END \
  }                    \
  }
