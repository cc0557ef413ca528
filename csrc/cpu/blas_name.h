// FASTRNN_BLAS(cblas_sgemm) names a BLAS symbol with the prefix of the BLAS in use
// (scipy-openblas32 prefixes every symbol with `scipy_`; FASTRNN_BLAS_PREFIX overrides).
#pragma once

#ifndef FASTRNN_BLAS_PREFIX
#define FASTRNN_BLAS_PREFIX scipy_
#endif
#define FASTRNN_CAT2(a, b) a##b
#define FASTRNN_CAT(a, b) FASTRNN_CAT2(a, b)
#define FASTRNN_BLAS(name) FASTRNN_CAT(FASTRNN_BLAS_PREFIX, name)
