// The kernel bindings of every backend module, one per row of FASTRNN_FOR_EACH_KERNEL. Every
// argument is keyword-only, named as the kernel's C++ parameter (`<kernel>_params`, beside
// each function: the names pybind11 binds, in order), so that two same-shaped arrays cannot
// be swapped unnoticed. Each binding checks every array for dtype, C-contiguity, writability
// and its exact shape (named in the message) before any kernel runs, and releases the GIL
// around the kernel. Allocation and policy live in Python (fastrnn/ops.py), which validates
// user input first with friendlier messages; these checks guard the C++ against a caller that
// skips ops.py.
//
// One template per kernel, over an `Arrays` policy that says how to read an array argument
// and which kernel to run: NumpyArrays (below: host memory, the CPU kernels) or
// DeviceArrays<Device> (device_module.h: __cuda_array_interface__, the CUDA backend).
// batch_sizes is a NumPy array for every backend.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fastrnn/fastrnn.h"

namespace fastrnn_bindings {

namespace py = pybind11;
using fastrnn::Activation;

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << (s.size() == 1 ? ",)" : ")");
  return o.str();
}

// Checks one argument of kernel `fn` and returns its data pointer (null for None when
// `optional`).
template <typename S>
S* numpy_arg(const char* fn, const char* name, const py::object& obj, std::vector<int64_t> shape,
             bool writable, bool optional = false) {
  if (obj.is_none()) {
    if (optional) return nullptr;
    throw py::value_error(std::string(fn) + ": argument '" + name + "' must not be None");
  }
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(fn) + ": argument '" + name + "' must be a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<S>()))
    throw py::type_error(std::string(fn) + ": argument '" + name + "' has dtype " +
                         std::string(py::str(a.dtype())) + ", expected " +
                         std::string(py::str(py::dtype::of<S>())));
  std::vector<int64_t> got(a.shape(), a.shape() + a.ndim());
  if (got != shape)
    throw py::value_error(std::string(fn) + ": argument '" + name + "' has shape " +
                          shape_str(got) + ", expected " + shape_str(shape));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(fn) + ": argument '" + name + "' must be C-contiguous");
  if (writable && !a.writeable())
    throw py::value_error(std::string(fn) + ": argument '" + name + "' must be writeable");
  return static_cast<S*>(const_cast<void*>(a.data()));
}

// Whether argument `name` (the one that sets a call's dtype) is float64 rather than float32.
inline bool numpy_is_f64(const char* fn, const char* name, const py::object& x) {
  if (!py::isinstance<py::array>(x))
    throw py::type_error(std::string(fn) + ": argument '" + name + "' must be a numpy array");
  py::dtype dt = py::reinterpret_borrow<py::array>(x).dtype();
  if (dt.is(py::dtype::of<double>())) return true;
  if (dt.is(py::dtype::of<float>())) return false;
  throw py::type_error(std::string(fn) + ": argument '" + name + "' has dtype " +
                       std::string(py::str(dt)) + ", expected float32 or float64");
}

inline int64_t numpy_dim(const py::object& x, int i) {
  py::array a = py::reinterpret_borrow<py::array>(x);
  if (a.ndim() != 3) throw py::value_error("argument 'x' must be 3-D (T, B, I)");
  return a.shape(i);
}

// batch_sizes: null (None) or int64 (T,), non-increasing, each in [0, B]. Checked here in
// full, since the kernels index rows by it.
inline const int64_t* batch_sizes_arg(const char* fn, const py::object& obj, int64_t T, int64_t B) {
  if (obj.is_none()) return nullptr;
  const int64_t* bs = numpy_arg<int64_t>(fn, "batch_sizes", obj, {T}, false);
  for (int64_t t = 0; t < T; ++t) {
    if (bs[t] < 0 || bs[t] > B || (t > 0 && bs[t] > bs[t - 1]))
      throw py::value_error(
          std::string(fn) + ": batch_sizes must be non-increasing, each in [0, B=" +
          std::to_string(B) + "]; got " + std::to_string(bs[t]) + " at step " + std::to_string(t));
  }
  return bs;
}

// bf16=True (bf16 products) rounds float32 operands: a float64 call is refused.
template <typename S>
void check_bf16(const char* fn, bool bf16) {
  if (bf16 && !std::is_same_v<S, float>)
    throw py::type_error(std::string(fn) + ": bf16=True rounds float32 operands; x is float64");
}

// Host arrays, CPU kernels.
struct NumpyArrays {
  template <typename S>
  static S* arg(const char* fn, const char* name, const py::object& obj, std::vector<int64_t> shape,
                bool writable, bool optional = false) {
    return numpy_arg<S>(fn, name, obj, std::move(shape), writable, optional);
  }
  static bool is_f64(const char* fn, const char* name, const py::object& x) {
    return numpy_is_f64(fn, name, x);
  }
  static int64_t dim(const py::object& x, int i) { return numpy_dim(x, i); }
#define FASTRNN_RUN_ON_CPU(name, Args)         \
  template <typename S>                        \
  static void run(const fastrnn::Args<S>& a) { \
    fastrnn::name(a);                          \
  }
  FASTRNN_FOR_EACH_KERNEL(FASTRNN_RUN_ON_CPU)
#undef FASTRNN_RUN_ON_CPU
};

// ---------------------------------------------------------------------------- LSTM

inline constexpr const char* lstm_forward_params[] = {"x",
                                                      "h0",
                                                      "c0",
                                                      "w_ih",
                                                      "w_hh",
                                                      "b_ih",
                                                      "b_hh",
                                                      "w_hr",
                                                      "batch_sizes",
                                                      "y",
                                                      "h_n",
                                                      "c_n",
                                                      "gates",
                                                      "cells",
                                                      "m",
                                                      "training",
                                                      "H",
                                                      "P",
                                                      "bf16",
                                                      "zoneout_h",
                                                      "zoneout_c",
                                                      "recurrent_mask",
                                                      "ln_ih_weight",
                                                      "ln_hh_weight",
                                                      "ln_cell_weight",
                                                      "ln_cell_bias",
                                                      "ln_ih",
                                                      "ln_hh",
                                                      "ln_cell",
                                                      "ln_rstd"};
template <typename Arrays, typename S>
void lstm_forward(py::object x, py::object h0, py::object c0, py::object w_ih, py::object w_hh,
                  py::object b_ih, py::object b_hh, py::object w_hr, py::object batch_sizes,
                  py::object y, py::object h_n, py::object c_n, py::object gates, py::object cells,
                  py::object m, bool training, int64_t H, int64_t P, bool bf16,
                  py::object zoneout_h, py::object zoneout_c, py::object recurrent_mask,
                  py::object ln_ih_weight, py::object ln_hh_weight, py::object ln_cell_weight,
                  py::object ln_cell_bias, py::object ln_ih, py::object ln_hh, py::object ln_cell,
                  py::object ln_rstd) {
  const char* fn = "lstm_forward";
  const int64_t T = Arrays::dim(x, 0), B = Arrays::dim(x, 1), I = Arrays::dim(x, 2), G = 4 * H;
  fastrnn::LstmForwardArgs<S> a{};
  a.T = T, a.B = B, a.I = I, a.H = H, a.P = P;
  a.batch_sizes = batch_sizes_arg(fn, batch_sizes, T, B);
  a.x = Arrays::template arg<S>(fn, "x", x, {T, B, I}, false);
  a.h0 = Arrays::template arg<S>(fn, "h0", h0, {B, P}, false);
  a.c0 = Arrays::template arg<S>(fn, "c0", c0, {B, H}, false);
  a.w_ih = Arrays::template arg<S>(fn, "w_ih", w_ih, {G, I}, false);
  a.w_hh = Arrays::template arg<S>(fn, "w_hh", w_hh, {G, P}, false);
  a.b_ih = Arrays::template arg<S>(fn, "b_ih", b_ih, {G}, false, true);
  a.b_hh = Arrays::template arg<S>(fn, "b_hh", b_hh, {G}, false, true);
  a.w_hr = Arrays::template arg<S>(fn, "w_hr", w_hr, {P, H}, false, true);
  if (!a.w_hr && P != H) throw py::value_error("lstm_forward: P != H needs w_hr");
  a.y = Arrays::template arg<S>(fn, "y", y, {T, B, P}, true);
  a.h_n = Arrays::template arg<S>(fn, "h_n", h_n, {B, P}, true);
  a.c_n = Arrays::template arg<S>(fn, "c_n", c_n, {B, H}, true);
  a.training = training;
  a.gates = Arrays::template arg<S>(fn, "gates", gates, {T, B, G}, true, !training);
  std::vector<int64_t> state =
      training ? std::vector<int64_t>{T + 1, B, H} : std::vector<int64_t>{B, H};
  a.cells = Arrays::template arg<S>(fn, "cells", cells, state, true);
  if (a.w_hr) {
    state[0] -= training ? 1 : 0;
    a.m = Arrays::template arg<S>(fn, "m", m, state, true);
  }
  a.bf16 = bf16;
  check_bf16<S>(fn, bf16);
  a.zoneout_h = Arrays::template arg<S>(fn, "zoneout_h", zoneout_h, {T, B, P}, false, true);
  a.zoneout_c = Arrays::template arg<S>(fn, "zoneout_c", zoneout_c, {T, B, H}, false, true);
  a.recurrent_mask =
      Arrays::template arg<S>(fn, "recurrent_mask", recurrent_mask, {B, P}, false, true);
  a.ln_ih_weight = Arrays::template arg<S>(fn, "ln_ih_weight", ln_ih_weight, {G}, false, true);
  if (a.ln_ih_weight) {
    if (a.w_hr) throw py::value_error("lstm_forward: layer norm takes no projection (w_hr)");
    a.ln_hh_weight = Arrays::template arg<S>(fn, "ln_hh_weight", ln_hh_weight, {G}, false);
    a.ln_cell_weight = Arrays::template arg<S>(fn, "ln_cell_weight", ln_cell_weight, {H}, false);
    a.ln_cell_bias = Arrays::template arg<S>(fn, "ln_cell_bias", ln_cell_bias, {H}, false);
    if (training) {
      a.ln_ih = Arrays::template arg<S>(fn, "ln_ih", ln_ih, {T, B, G}, true);
      a.ln_hh = Arrays::template arg<S>(fn, "ln_hh", ln_hh, {T, B, G}, true);
      a.ln_cell = Arrays::template arg<S>(fn, "ln_cell", ln_cell, {T, B, H}, true);
      a.ln_rstd = Arrays::template arg<S>(fn, "ln_rstd", ln_rstd, {T, B, 3}, true);
    }
  }
  py::gil_scoped_release release;
  Arrays::run(a);
}

inline constexpr const char* lstm_backward_params[] = {"x",
                                                       "h0",
                                                       "y",
                                                       "w_ih",
                                                       "w_hh",
                                                       "w_hr",
                                                       "batch_sizes",
                                                       "gates",
                                                       "cells",
                                                       "m",
                                                       "dy",
                                                       "dh_n",
                                                       "dc_n",
                                                       "dx",
                                                       "dh0",
                                                       "dc0",
                                                       "dw_ih",
                                                       "dw_hh",
                                                       "dw_hr",
                                                       "db_ih",
                                                       "db_hh",
                                                       "H",
                                                       "P",
                                                       "bf16",
                                                       "zoneout_h",
                                                       "zoneout_c",
                                                       "recurrent_mask",
                                                       "ln_ih_weight",
                                                       "ln_hh_weight",
                                                       "ln_cell_weight",
                                                       "ln_cell_bias",
                                                       "ln_ih",
                                                       "ln_hh",
                                                       "ln_cell",
                                                       "ln_rstd",
                                                       "dln_ih_weight",
                                                       "dln_hh_weight",
                                                       "dln_cell_weight",
                                                       "dln_cell_bias"};
template <typename Arrays, typename S>
void lstm_backward(py::object x, py::object h0, py::object y, py::object w_ih, py::object w_hh,
                   py::object w_hr, py::object batch_sizes, py::object gates, py::object cells,
                   py::object m, py::object dy, py::object dh_n, py::object dc_n, py::object dx,
                   py::object dh0, py::object dc0, py::object dw_ih, py::object dw_hh,
                   py::object dw_hr, py::object db_ih, py::object db_hh, int64_t H, int64_t P,
                   bool bf16, py::object zoneout_h, py::object zoneout_c, py::object recurrent_mask,
                   py::object ln_ih_weight, py::object ln_hh_weight, py::object ln_cell_weight,
                   py::object ln_cell_bias, py::object ln_ih, py::object ln_hh, py::object ln_cell,
                   py::object ln_rstd, py::object dln_ih_weight, py::object dln_hh_weight,
                   py::object dln_cell_weight, py::object dln_cell_bias) {
  const char* fn = "lstm_backward";
  const int64_t T = Arrays::dim(x, 0), B = Arrays::dim(x, 1), I = Arrays::dim(x, 2), G = 4 * H;
  fastrnn::LstmBackwardArgs<S> a{};
  a.T = T, a.B = B, a.I = I, a.H = H, a.P = P;
  a.batch_sizes = batch_sizes_arg(fn, batch_sizes, T, B);
  a.x = Arrays::template arg<S>(fn, "x", x, {T, B, I}, false);
  a.h0 = Arrays::template arg<S>(fn, "h0", h0, {B, P}, false);
  a.y = Arrays::template arg<S>(fn, "y", y, {T, B, P}, false);
  a.w_ih = Arrays::template arg<S>(fn, "w_ih", w_ih, {G, I}, false);
  a.w_hh = Arrays::template arg<S>(fn, "w_hh", w_hh, {G, P}, false);
  a.w_hr = Arrays::template arg<S>(fn, "w_hr", w_hr, {P, H}, false, true);
  if (!a.w_hr && P != H) throw py::value_error("lstm_backward: P != H needs w_hr");
  a.gates = Arrays::template arg<S>(fn, "gates", gates, {T, B, G}, true);
  a.cells = Arrays::template arg<S>(fn, "cells", cells, {T + 1, B, H}, false);
  a.dy = Arrays::template arg<S>(fn, "dy", dy, {T, B, P}, false);
  a.dh_n = Arrays::template arg<S>(fn, "dh_n", dh_n, {B, P}, false);
  a.dc_n = Arrays::template arg<S>(fn, "dc_n", dc_n, {B, H}, false);
  a.dx = Arrays::template arg<S>(fn, "dx", dx, {T, B, I}, true);
  a.dh0 = Arrays::template arg<S>(fn, "dh0", dh0, {B, P}, true);
  a.dc0 = Arrays::template arg<S>(fn, "dc0", dc0, {B, H}, true);
  a.dw_ih = Arrays::template arg<S>(fn, "dw_ih", dw_ih, {G, I}, true);
  a.dw_hh = Arrays::template arg<S>(fn, "dw_hh", dw_hh, {G, P}, true);
  if (a.w_hr) {
    a.m = Arrays::template arg<S>(fn, "m", m, {T, B, H}, false);
    a.dw_hr = Arrays::template arg<S>(fn, "dw_hr", dw_hr, {P, H}, true);
  }
  a.db_ih = Arrays::template arg<S>(fn, "db_ih", db_ih, {G}, true, true);
  a.db_hh = Arrays::template arg<S>(fn, "db_hh", db_hh, {G}, true, true);
  if (!a.db_ih != !a.db_hh) throw py::value_error("lstm_backward: db_ih and db_hh go together");
  a.bf16 = bf16;
  check_bf16<S>(fn, bf16);
  a.zoneout_h = Arrays::template arg<S>(fn, "zoneout_h", zoneout_h, {T, B, P}, false, true);
  a.zoneout_c = Arrays::template arg<S>(fn, "zoneout_c", zoneout_c, {T, B, H}, false, true);
  a.recurrent_mask =
      Arrays::template arg<S>(fn, "recurrent_mask", recurrent_mask, {B, P}, false, true);
  a.ln_ih_weight = Arrays::template arg<S>(fn, "ln_ih_weight", ln_ih_weight, {G}, false, true);
  if (a.ln_ih_weight) {
    if (a.w_hr) throw py::value_error("lstm_backward: layer norm takes no projection (w_hr)");
    a.ln_hh_weight = Arrays::template arg<S>(fn, "ln_hh_weight", ln_hh_weight, {G}, false);
    a.ln_cell_weight = Arrays::template arg<S>(fn, "ln_cell_weight", ln_cell_weight, {H}, false);
    a.ln_cell_bias = Arrays::template arg<S>(fn, "ln_cell_bias", ln_cell_bias, {H}, false);
    a.ln_ih = Arrays::template arg<S>(fn, "ln_ih", ln_ih, {T, B, G}, true);
    a.ln_hh = Arrays::template arg<S>(fn, "ln_hh", ln_hh, {T, B, G}, true);
    a.ln_cell = Arrays::template arg<S>(fn, "ln_cell", ln_cell, {T, B, H}, false);
    a.ln_rstd = Arrays::template arg<S>(fn, "ln_rstd", ln_rstd, {T, B, 3}, false);
    a.dln_ih_weight = Arrays::template arg<S>(fn, "dln_ih_weight", dln_ih_weight, {G}, true);
    a.dln_hh_weight = Arrays::template arg<S>(fn, "dln_hh_weight", dln_hh_weight, {G}, true);
    a.dln_cell_weight = Arrays::template arg<S>(fn, "dln_cell_weight", dln_cell_weight, {H}, true);
    a.dln_cell_bias = Arrays::template arg<S>(fn, "dln_cell_bias", dln_cell_bias, {H}, true);
  }
  py::gil_scoped_release release;
  Arrays::run(a);
}

// ---------------------------------------------------------------------------- GRU

inline constexpr const char* gru_forward_params[] = {"x",
                                                     "h0",
                                                     "w_ih",
                                                     "w_hh",
                                                     "b_ih",
                                                     "b_hh",
                                                     "batch_sizes",
                                                     "y",
                                                     "h_n",
                                                     "gates",
                                                     "extra",
                                                     "training",
                                                     "reset_after",
                                                     "H",
                                                     "bf16",
                                                     "zoneout_h",
                                                     "recurrent_mask",
                                                     "ln_ih_weight",
                                                     "ln_hh_weight",
                                                     "ln_ih",
                                                     "ln_hh",
                                                     "ln_rstd"};
template <typename Arrays, typename S>
void gru_forward(py::object x, py::object h0, py::object w_ih, py::object w_hh, py::object b_ih,
                 py::object b_hh, py::object batch_sizes, py::object y, py::object h_n,
                 py::object gates, py::object extra, bool training, bool reset_after, int64_t H,
                 bool bf16, py::object zoneout_h, py::object recurrent_mask,
                 py::object ln_ih_weight, py::object ln_hh_weight, py::object ln_ih,
                 py::object ln_hh, py::object ln_rstd) {
  const char* fn = "gru_forward";
  const int64_t T = Arrays::dim(x, 0), B = Arrays::dim(x, 1), I = Arrays::dim(x, 2), G = 3 * H;
  fastrnn::GruForwardArgs<S> a{};
  a.T = T, a.B = B, a.I = I, a.H = H;
  a.batch_sizes = batch_sizes_arg(fn, batch_sizes, T, B);
  a.x = Arrays::template arg<S>(fn, "x", x, {T, B, I}, false);
  a.h0 = Arrays::template arg<S>(fn, "h0", h0, {B, H}, false);
  a.w_ih = Arrays::template arg<S>(fn, "w_ih", w_ih, {G, I}, false);
  a.w_hh = Arrays::template arg<S>(fn, "w_hh", w_hh, {G, H}, false);
  a.b_ih = Arrays::template arg<S>(fn, "b_ih", b_ih, {G}, false, true);
  a.b_hh = Arrays::template arg<S>(fn, "b_hh", b_hh, {G}, false, true);
  a.y = Arrays::template arg<S>(fn, "y", y, {T, B, H}, true);
  a.h_n = Arrays::template arg<S>(fn, "h_n", h_n, {B, H}, true);
  a.training = training;
  a.reset_after = reset_after;
  a.gates = Arrays::template arg<S>(fn, "gates", gates, {T, B, G}, true, !training);
  a.extra = training ? Arrays::template arg<S>(fn, "extra", extra, {T, B, H}, true)
                     : Arrays::template arg<S>(fn, "extra", extra, {B, H}, true);
  a.bf16 = bf16;
  check_bf16<S>(fn, bf16);
  a.zoneout_h = Arrays::template arg<S>(fn, "zoneout_h", zoneout_h, {T, B, H}, false, true);
  a.recurrent_mask =
      Arrays::template arg<S>(fn, "recurrent_mask", recurrent_mask, {B, H}, false, true);
  a.ln_ih_weight = Arrays::template arg<S>(fn, "ln_ih_weight", ln_ih_weight, {G}, false, true);
  if (a.ln_ih_weight) {
    if (!reset_after) throw py::value_error("gru_forward: layer norm takes reset_after=True");
    a.ln_hh_weight = Arrays::template arg<S>(fn, "ln_hh_weight", ln_hh_weight, {G}, false);
    if (training) {
      a.ln_ih = Arrays::template arg<S>(fn, "ln_ih", ln_ih, {T, B, G}, true);
      a.ln_hh = Arrays::template arg<S>(fn, "ln_hh", ln_hh, {T, B, G}, true);
      a.ln_rstd = Arrays::template arg<S>(fn, "ln_rstd", ln_rstd, {T, B, 2}, true);
    }
  }
  py::gil_scoped_release release;
  Arrays::run(a);
}

inline constexpr const char* gru_backward_params[] = {"x",
                                                      "h0",
                                                      "y",
                                                      "w_ih",
                                                      "w_hh",
                                                      "batch_sizes",
                                                      "gates",
                                                      "extra",
                                                      "dy",
                                                      "dh_n",
                                                      "dx",
                                                      "dh0",
                                                      "dw_ih",
                                                      "dw_hh",
                                                      "db_ih",
                                                      "db_hh",
                                                      "reset_after",
                                                      "H",
                                                      "bf16",
                                                      "zoneout_h",
                                                      "recurrent_mask",
                                                      "ln_ih_weight",
                                                      "ln_hh_weight",
                                                      "ln_ih",
                                                      "ln_hh",
                                                      "ln_rstd",
                                                      "dln_ih_weight",
                                                      "dln_hh_weight"};
template <typename Arrays, typename S>
void gru_backward(py::object x, py::object h0, py::object y, py::object w_ih, py::object w_hh,
                  py::object batch_sizes, py::object gates, py::object extra, py::object dy,
                  py::object dh_n, py::object dx, py::object dh0, py::object dw_ih,
                  py::object dw_hh, py::object db_ih, py::object db_hh, bool reset_after, int64_t H,
                  bool bf16, py::object zoneout_h, py::object recurrent_mask,
                  py::object ln_ih_weight, py::object ln_hh_weight, py::object ln_ih,
                  py::object ln_hh, py::object ln_rstd, py::object dln_ih_weight,
                  py::object dln_hh_weight) {
  const char* fn = "gru_backward";
  const int64_t T = Arrays::dim(x, 0), B = Arrays::dim(x, 1), I = Arrays::dim(x, 2), G = 3 * H;
  fastrnn::GruBackwardArgs<S> a{};
  a.T = T, a.B = B, a.I = I, a.H = H;
  a.reset_after = reset_after;
  a.batch_sizes = batch_sizes_arg(fn, batch_sizes, T, B);
  a.x = Arrays::template arg<S>(fn, "x", x, {T, B, I}, false);
  a.h0 = Arrays::template arg<S>(fn, "h0", h0, {B, H}, false);
  a.y = Arrays::template arg<S>(fn, "y", y, {T, B, H}, false);
  a.w_ih = Arrays::template arg<S>(fn, "w_ih", w_ih, {G, I}, false);
  a.w_hh = Arrays::template arg<S>(fn, "w_hh", w_hh, {G, H}, false);
  a.gates = Arrays::template arg<S>(fn, "gates", gates, {T, B, G}, true);
  a.extra = Arrays::template arg<S>(fn, "extra", extra, {T, B, H}, true);
  a.dy = Arrays::template arg<S>(fn, "dy", dy, {T, B, H}, false);
  a.dh_n = Arrays::template arg<S>(fn, "dh_n", dh_n, {B, H}, false);
  a.dx = Arrays::template arg<S>(fn, "dx", dx, {T, B, I}, true);
  a.dh0 = Arrays::template arg<S>(fn, "dh0", dh0, {B, H}, true);
  a.dw_ih = Arrays::template arg<S>(fn, "dw_ih", dw_ih, {G, I}, true);
  a.dw_hh = Arrays::template arg<S>(fn, "dw_hh", dw_hh, {G, H}, true);
  a.db_ih = Arrays::template arg<S>(fn, "db_ih", db_ih, {G}, true, true);
  a.db_hh = Arrays::template arg<S>(fn, "db_hh", db_hh, {G}, true, true);
  if (!a.db_ih != !a.db_hh) throw py::value_error("gru_backward: db_ih and db_hh go together");
  a.bf16 = bf16;
  check_bf16<S>(fn, bf16);
  a.zoneout_h = Arrays::template arg<S>(fn, "zoneout_h", zoneout_h, {T, B, H}, false, true);
  a.recurrent_mask =
      Arrays::template arg<S>(fn, "recurrent_mask", recurrent_mask, {B, H}, false, true);
  a.ln_ih_weight = Arrays::template arg<S>(fn, "ln_ih_weight", ln_ih_weight, {G}, false, true);
  if (a.ln_ih_weight) {
    if (!reset_after) throw py::value_error("gru_backward: layer norm takes reset_after=True");
    a.ln_hh_weight = Arrays::template arg<S>(fn, "ln_hh_weight", ln_hh_weight, {G}, false);
    a.ln_ih = Arrays::template arg<S>(fn, "ln_ih", ln_ih, {T, B, G}, true);
    a.ln_hh = Arrays::template arg<S>(fn, "ln_hh", ln_hh, {T, B, G}, true);
    a.ln_rstd = Arrays::template arg<S>(fn, "ln_rstd", ln_rstd, {T, B, 2}, false);
    a.dln_ih_weight = Arrays::template arg<S>(fn, "dln_ih_weight", dln_ih_weight, {G}, true);
    a.dln_hh_weight = Arrays::template arg<S>(fn, "dln_hh_weight", dln_hh_weight, {G}, true);
  }
  py::gil_scoped_release release;
  Arrays::run(a);
}

// ---------------------------------------------------------------------------- RNN

inline Activation activation(const std::string& name) {
  if (name == "tanh") return Activation::Tanh;
  if (name == "relu") return Activation::Relu;
  throw py::value_error("nonlinearity must be 'tanh' or 'relu', got '" + name + "'");
}

inline constexpr const char* rnn_forward_params[] = {
    "x", "h0",  "w_ih",  "w_hh",         "b_ih", "b_hh", "batch_sizes",
    "y", "h_n", "gates", "nonlinearity", "H",    "bf16"};
template <typename Arrays, typename S>
void rnn_forward(py::object x, py::object h0, py::object w_ih, py::object w_hh, py::object b_ih,
                 py::object b_hh, py::object batch_sizes, py::object y, py::object h_n,
                 py::object gates, const std::string& nonlinearity, int64_t H, bool bf16) {
  const char* fn = "rnn_forward";
  const int64_t T = Arrays::dim(x, 0), B = Arrays::dim(x, 1), I = Arrays::dim(x, 2);
  fastrnn::RnnForwardArgs<S> a{};
  a.T = T, a.B = B, a.I = I, a.H = H;
  a.batch_sizes = batch_sizes_arg(fn, batch_sizes, T, B);
  a.x = Arrays::template arg<S>(fn, "x", x, {T, B, I}, false);
  a.h0 = Arrays::template arg<S>(fn, "h0", h0, {B, H}, false);
  a.w_ih = Arrays::template arg<S>(fn, "w_ih", w_ih, {H, I}, false);
  a.w_hh = Arrays::template arg<S>(fn, "w_hh", w_hh, {H, H}, false);
  a.b_ih = Arrays::template arg<S>(fn, "b_ih", b_ih, {H}, false, true);
  a.b_hh = Arrays::template arg<S>(fn, "b_hh", b_hh, {H}, false, true);
  a.y = Arrays::template arg<S>(fn, "y", y, {T, B, H}, true);
  a.h_n = Arrays::template arg<S>(fn, "h_n", h_n, {B, H}, true);
  a.act = activation(nonlinearity);
  a.gates = Arrays::template arg<S>(fn, "gates", gates, {T, B, H}, true, true);
  a.bf16 = bf16;
  check_bf16<S>(fn, bf16);
  py::gil_scoped_release release;
  Arrays::run(a);
}

inline constexpr const char* rnn_backward_params[] = {
    "x",  "h0",  "y",     "w_ih",  "w_hh",  "batch_sizes", "gates",        "dy", "dh_n",
    "dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh",       "nonlinearity", "H",  "bf16"};
template <typename Arrays, typename S>
void rnn_backward(py::object x, py::object h0, py::object y, py::object w_ih, py::object w_hh,
                  py::object batch_sizes, py::object gates, py::object dy, py::object dh_n,
                  py::object dx, py::object dh0, py::object dw_ih, py::object dw_hh,
                  py::object db_ih, py::object db_hh, const std::string& nonlinearity, int64_t H,
                  bool bf16) {
  const char* fn = "rnn_backward";
  const int64_t T = Arrays::dim(x, 0), B = Arrays::dim(x, 1), I = Arrays::dim(x, 2);
  fastrnn::RnnBackwardArgs<S> a{};
  a.T = T, a.B = B, a.I = I, a.H = H;
  a.batch_sizes = batch_sizes_arg(fn, batch_sizes, T, B);
  a.act = activation(nonlinearity);
  a.x = Arrays::template arg<S>(fn, "x", x, {T, B, I}, false);
  a.h0 = Arrays::template arg<S>(fn, "h0", h0, {B, H}, false);
  a.y = Arrays::template arg<S>(fn, "y", y, {T, B, H}, false);
  a.w_ih = Arrays::template arg<S>(fn, "w_ih", w_ih, {H, I}, false);
  a.w_hh = Arrays::template arg<S>(fn, "w_hh", w_hh, {H, H}, false);
  a.gates = Arrays::template arg<S>(fn, "gates", gates, {T, B, H}, true);
  a.dy = Arrays::template arg<S>(fn, "dy", dy, {T, B, H}, false);
  a.dh_n = Arrays::template arg<S>(fn, "dh_n", dh_n, {B, H}, false);
  a.dx = Arrays::template arg<S>(fn, "dx", dx, {T, B, I}, true);
  a.dh0 = Arrays::template arg<S>(fn, "dh0", dh0, {B, H}, true);
  a.dw_ih = Arrays::template arg<S>(fn, "dw_ih", dw_ih, {H, I}, true);
  a.dw_hh = Arrays::template arg<S>(fn, "dw_hh", dw_hh, {H, H}, true);
  a.db_ih = Arrays::template arg<S>(fn, "db_ih", db_ih, {H}, true, true);
  a.db_hh = Arrays::template arg<S>(fn, "db_hh", db_hh, {H}, true, true);
  if (!a.db_ih != !a.db_hh) throw py::value_error("rnn_backward: db_ih and db_hh go together");
  a.bf16 = bf16;
  check_bf16<S>(fn, bf16);
  py::gil_scoped_release release;
  Arrays::run(a);
}

// Binds a function for both dtypes, chosen by the dtype of its first argument: f64 and f32 are
// its double and float instantiations, params the names of all its parameters, in order (with
// keyword_only, callers must name every argument).
template <typename F, size_t N, size_t... I>
void def_named(py::module_& m, const char* name, F&& f, const char* const (&params)[N],
               const char* doc, bool keyword_only, std::index_sequence<I...>) {
  if (keyword_only)
    m.def(name, std::forward<F>(f), doc, py::kw_only(), py::arg(params[I])...);
  else
    m.def(name, std::forward<F>(f), doc, py::arg(params[I])...);
}

template <typename Arrays, typename First, typename... Rest, size_t N>
void bind_kernel(py::module_& m, const char* name, void (*f64)(First, Rest...),
                 void (*f32)(First, Rest...), const char* const (&params)[N], const char* doc,
                 bool keyword_only) {
  static_assert(N == 1 + sizeof...(Rest), "one name per parameter");
  const char* first = params[0];
  auto by_dtype = [f64, f32, name, first](First x, Rest... rest) {
    (Arrays::is_f64(name, first, x) ? f64 : f32)(x, std::forward<Rest>(rest)...);
  };
  def_named(m, name, std::move(by_dtype), params, doc, keyword_only, std::make_index_sequence<N>());
}

// The kernels of one backend (FASTRNN_FOR_EACH_KERNEL), as functions of module m.
template <typename Arrays>
void bind_kernels(py::module_& m) {
#define FASTRNN_BIND_KERNEL(name, Args)                                                     \
  bind_kernel<Arrays>(m, #name, &name<Arrays, double>, &name<Arrays, float>, name##_params, \
                      "The kernel behind fastrnn.ops." #name                                \
                      ", into preallocated outputs; every argument by keyword.",            \
                      true);
  FASTRNN_FOR_EACH_KERNEL(FASTRNN_BIND_KERNEL)
#undef FASTRNN_BIND_KERNEL
}

}  // namespace fastrnn_bindings
