// Process-wide BLAS settings: one thread pool in the process, fastrnn's, so the BLAS runs
// single-threaded inside it (an OpenBLAS pool beside ours was measured up to 200x slower).
#include <cblas.h>

#include "cpu/blas_name.h"
#include "fastrnn/fastrnn.h"

namespace fastrnn {
namespace {
const int g_blas_single_threaded = (FASTRNN_BLAS(openblas_set_num_threads)(1), 0);
}  // namespace

const char* blas_info() { return FASTRNN_BLAS(openblas_get_config)(); }

}  // namespace fastrnn
