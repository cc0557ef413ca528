// fastrnn._C: the pybind11 module. Thin and loud: every array is checked for dtype,
// C-contiguity, writability and its exact shape (named in the message) before any kernel
// runs, and the GIL is released around the kernel. Allocation and policy live in Python
// (fastrnn/ops.py), which validates user input first with friendlier messages; these checks
// guard the C++ against a caller that skips ops.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "fastrnn/fastrnn.h"

namespace py = pybind11;
using fastrnn::Activation;

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << (s.size() == 1 ? ",)" : ")");
  return o.str();
}

// Checks one argument of kernel `fn` and returns its data pointer (null for None when
// `optional`).
template <typename S>
S* arg(const char* fn, const char* name, const py::object& obj, std::vector<int64_t> shape,
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

bool is_f64(const char* fn, const py::object& x) {
  if (!py::isinstance<py::array>(x))
    throw py::type_error(std::string(fn) + ": argument 'x' must be a numpy array");
  py::dtype dt = py::reinterpret_borrow<py::array>(x).dtype();
  if (dt.is(py::dtype::of<double>())) return true;
  if (dt.is(py::dtype::of<float>())) return false;
  throw py::type_error(std::string(fn) + ": argument 'x' has dtype " + std::string(py::str(dt)) +
                       ", expected float32 or float64");
}

int64_t dim(const py::object& x, int i) {
  py::array a = py::reinterpret_borrow<py::array>(x);
  if (a.ndim() != 3) throw py::value_error("argument 'x' must be 3-D (T, B, I)");
  return a.shape(i);
}

// batch_sizes: null (None) or int64 (T,), non-increasing, each in [0, B]. Checked here in
// full, since the kernels index rows by it.
const int64_t* batch_sizes_arg(const char* fn, const py::object& obj, int64_t T, int64_t B) {
  if (obj.is_none()) return nullptr;
  const int64_t* bs = arg<int64_t>(fn, "batch_sizes", obj, {T}, false);
  for (int64_t t = 0; t < T; ++t) {
    if (bs[t] < 0 || bs[t] > B || (t > 0 && bs[t] > bs[t - 1]))
      throw py::value_error(
          std::string(fn) + ": batch_sizes must be non-increasing, each in [0, B=" +
          std::to_string(B) + "]; got " + std::to_string(bs[t]) + " at step " + std::to_string(t));
  }
  return bs;
}

// ---------------------------------------------------------------------------- LSTM

template <typename S>
void lstm_forward(py::object x, py::object h0, py::object c0, py::object w_ih, py::object w_hh,
                  py::object b_ih, py::object b_hh, py::object w_hr, py::object batch_sizes,
                  py::object y, py::object h_n, py::object c_n, py::object gates, py::object cells,
                  py::object m, bool training, int64_t H, int64_t P) {
  const char* fn = "lstm_forward";
  const int64_t T = dim(x, 0), B = dim(x, 1), I = dim(x, 2), G = 4 * H;
  fastrnn::LstmForwardArgs<S> a{};
  a.T = T, a.B = B, a.I = I, a.H = H, a.P = P;
  a.batch_sizes = batch_sizes_arg(fn, batch_sizes, T, B);
  a.x = arg<S>(fn, "x", x, {T, B, I}, false);
  a.h0 = arg<S>(fn, "h0", h0, {B, P}, false);
  a.c0 = arg<S>(fn, "c0", c0, {B, H}, false);
  a.w_ih = arg<S>(fn, "w_ih", w_ih, {G, I}, false);
  a.w_hh = arg<S>(fn, "w_hh", w_hh, {G, P}, false);
  a.b_ih = arg<S>(fn, "b_ih", b_ih, {G}, false, true);
  a.b_hh = arg<S>(fn, "b_hh", b_hh, {G}, false, true);
  a.w_hr = arg<S>(fn, "w_hr", w_hr, {P, H}, false, true);
  if (!a.w_hr && P != H) throw py::value_error("lstm_forward: P != H needs w_hr");
  a.y = arg<S>(fn, "y", y, {T, B, P}, true);
  a.h_n = arg<S>(fn, "h_n", h_n, {B, P}, true);
  a.c_n = arg<S>(fn, "c_n", c_n, {B, H}, true);
  a.training = training;
  a.gates = arg<S>(fn, "gates", gates, {T, B, G}, true, !training);
  std::vector<int64_t> state =
      training ? std::vector<int64_t>{T + 1, B, H} : std::vector<int64_t>{B, H};
  a.cells = arg<S>(fn, "cells", cells, state, true);
  if (a.w_hr) {
    state[0] -= training ? 1 : 0;
    a.m = arg<S>(fn, "m", m, state, true);
  }
  py::gil_scoped_release release;
  fastrnn::lstm_forward(a);
}

template <typename S>
void lstm_backward(py::object x, py::object h0, py::object y, py::object w_ih, py::object w_hh,
                   py::object w_hr, py::object batch_sizes, py::object gates, py::object cells,
                   py::object m, py::object dy, py::object dh_n, py::object dc_n, py::object dx,
                   py::object dh0, py::object dc0, py::object dw_ih, py::object dw_hh,
                   py::object dw_hr, py::object db_ih, py::object db_hh, int64_t H, int64_t P) {
  const char* fn = "lstm_backward";
  const int64_t T = dim(x, 0), B = dim(x, 1), I = dim(x, 2), G = 4 * H;
  fastrnn::LstmBackwardArgs<S> a{};
  a.T = T, a.B = B, a.I = I, a.H = H, a.P = P;
  a.batch_sizes = batch_sizes_arg(fn, batch_sizes, T, B);
  a.x = arg<S>(fn, "x", x, {T, B, I}, false);
  a.h0 = arg<S>(fn, "h0", h0, {B, P}, false);
  a.y = arg<S>(fn, "y", y, {T, B, P}, false);
  a.w_ih = arg<S>(fn, "w_ih", w_ih, {G, I}, false);
  a.w_hh = arg<S>(fn, "w_hh", w_hh, {G, P}, false);
  a.w_hr = arg<S>(fn, "w_hr", w_hr, {P, H}, false, true);
  if (!a.w_hr && P != H) throw py::value_error("lstm_backward: P != H needs w_hr");
  a.gates = arg<S>(fn, "gates", gates, {T, B, G}, true);
  a.cells = arg<S>(fn, "cells", cells, {T + 1, B, H}, false);
  a.dy = arg<S>(fn, "dy", dy, {T, B, P}, false);
  a.dh_n = arg<S>(fn, "dh_n", dh_n, {B, P}, false);
  a.dc_n = arg<S>(fn, "dc_n", dc_n, {B, H}, false);
  a.dx = arg<S>(fn, "dx", dx, {T, B, I}, true);
  a.dh0 = arg<S>(fn, "dh0", dh0, {B, P}, true);
  a.dc0 = arg<S>(fn, "dc0", dc0, {B, H}, true);
  a.dw_ih = arg<S>(fn, "dw_ih", dw_ih, {G, I}, true);
  a.dw_hh = arg<S>(fn, "dw_hh", dw_hh, {G, P}, true);
  if (a.w_hr) {
    a.m = arg<S>(fn, "m", m, {T, B, H}, false);
    a.dw_hr = arg<S>(fn, "dw_hr", dw_hr, {P, H}, true);
  }
  a.db_ih = arg<S>(fn, "db_ih", db_ih, {G}, true, true);
  a.db_hh = arg<S>(fn, "db_hh", db_hh, {G}, true, true);
  if (!a.db_ih != !a.db_hh) throw py::value_error("lstm_backward: db_ih and db_hh go together");
  py::gil_scoped_release release;
  fastrnn::lstm_backward(a);
}

// ---------------------------------------------------------------------------- GRU

template <typename S>
void gru_forward(py::object x, py::object h0, py::object w_ih, py::object w_hh, py::object b_ih,
                 py::object b_hh, py::object batch_sizes, py::object y, py::object h_n,
                 py::object gates, py::object extra, bool training, bool reset_after, int64_t H) {
  const char* fn = "gru_forward";
  const int64_t T = dim(x, 0), B = dim(x, 1), I = dim(x, 2), G = 3 * H;
  fastrnn::GruForwardArgs<S> a{};
  a.T = T, a.B = B, a.I = I, a.H = H;
  a.batch_sizes = batch_sizes_arg(fn, batch_sizes, T, B);
  a.x = arg<S>(fn, "x", x, {T, B, I}, false);
  a.h0 = arg<S>(fn, "h0", h0, {B, H}, false);
  a.w_ih = arg<S>(fn, "w_ih", w_ih, {G, I}, false);
  a.w_hh = arg<S>(fn, "w_hh", w_hh, {G, H}, false);
  a.b_ih = arg<S>(fn, "b_ih", b_ih, {G}, false, true);
  a.b_hh = arg<S>(fn, "b_hh", b_hh, {G}, false, true);
  a.y = arg<S>(fn, "y", y, {T, B, H}, true);
  a.h_n = arg<S>(fn, "h_n", h_n, {B, H}, true);
  a.training = training;
  a.reset_after = reset_after;
  a.gates = arg<S>(fn, "gates", gates, {T, B, G}, true, !training);
  a.extra = training ? arg<S>(fn, "extra", extra, {T, B, H}, true)
                     : arg<S>(fn, "extra", extra, {B, H}, true);
  py::gil_scoped_release release;
  fastrnn::gru_forward(a);
}

template <typename S>
void gru_backward(py::object x, py::object h0, py::object y, py::object w_ih, py::object w_hh,
                  py::object batch_sizes, py::object gates, py::object extra, py::object dy,
                  py::object dh_n, py::object dx, py::object dh0, py::object dw_ih,
                  py::object dw_hh, py::object db_ih, py::object db_hh, bool reset_after,
                  int64_t H) {
  const char* fn = "gru_backward";
  const int64_t T = dim(x, 0), B = dim(x, 1), I = dim(x, 2), G = 3 * H;
  fastrnn::GruBackwardArgs<S> a{};
  a.T = T, a.B = B, a.I = I, a.H = H;
  a.reset_after = reset_after;
  a.batch_sizes = batch_sizes_arg(fn, batch_sizes, T, B);
  a.x = arg<S>(fn, "x", x, {T, B, I}, false);
  a.h0 = arg<S>(fn, "h0", h0, {B, H}, false);
  a.y = arg<S>(fn, "y", y, {T, B, H}, false);
  a.w_ih = arg<S>(fn, "w_ih", w_ih, {G, I}, false);
  a.w_hh = arg<S>(fn, "w_hh", w_hh, {G, H}, false);
  a.gates = arg<S>(fn, "gates", gates, {T, B, G}, true);
  a.extra = arg<S>(fn, "extra", extra, {T, B, H}, true);
  a.dy = arg<S>(fn, "dy", dy, {T, B, H}, false);
  a.dh_n = arg<S>(fn, "dh_n", dh_n, {B, H}, false);
  a.dx = arg<S>(fn, "dx", dx, {T, B, I}, true);
  a.dh0 = arg<S>(fn, "dh0", dh0, {B, H}, true);
  a.dw_ih = arg<S>(fn, "dw_ih", dw_ih, {G, I}, true);
  a.dw_hh = arg<S>(fn, "dw_hh", dw_hh, {G, H}, true);
  a.db_ih = arg<S>(fn, "db_ih", db_ih, {G}, true, true);
  a.db_hh = arg<S>(fn, "db_hh", db_hh, {G}, true, true);
  if (!a.db_ih != !a.db_hh) throw py::value_error("gru_backward: db_ih and db_hh go together");
  py::gil_scoped_release release;
  fastrnn::gru_backward(a);
}

// ---------------------------------------------------------------------------- RNN

Activation activation(const std::string& name) {
  if (name == "tanh") return Activation::Tanh;
  if (name == "relu") return Activation::Relu;
  throw py::value_error("nonlinearity must be 'tanh' or 'relu', got '" + name + "'");
}

template <typename S>
void rnn_forward(py::object x, py::object h0, py::object w_ih, py::object w_hh, py::object b_ih,
                 py::object b_hh, py::object batch_sizes, py::object y, py::object h_n,
                 py::object gates, const std::string& nonlinearity, int64_t H) {
  const char* fn = "rnn_forward";
  const int64_t T = dim(x, 0), B = dim(x, 1), I = dim(x, 2);
  fastrnn::RnnForwardArgs<S> a{};
  a.T = T, a.B = B, a.I = I, a.H = H;
  a.batch_sizes = batch_sizes_arg(fn, batch_sizes, T, B);
  a.x = arg<S>(fn, "x", x, {T, B, I}, false);
  a.h0 = arg<S>(fn, "h0", h0, {B, H}, false);
  a.w_ih = arg<S>(fn, "w_ih", w_ih, {H, I}, false);
  a.w_hh = arg<S>(fn, "w_hh", w_hh, {H, H}, false);
  a.b_ih = arg<S>(fn, "b_ih", b_ih, {H}, false, true);
  a.b_hh = arg<S>(fn, "b_hh", b_hh, {H}, false, true);
  a.y = arg<S>(fn, "y", y, {T, B, H}, true);
  a.h_n = arg<S>(fn, "h_n", h_n, {B, H}, true);
  a.act = activation(nonlinearity);
  a.gates = arg<S>(fn, "gates", gates, {T, B, H}, true, true);
  py::gil_scoped_release release;
  fastrnn::rnn_forward(a);
}

template <typename S>
void rnn_backward(py::object x, py::object h0, py::object y, py::object w_ih, py::object w_hh,
                  py::object batch_sizes, py::object gates, py::object dy, py::object dh_n,
                  py::object dx, py::object dh0, py::object dw_ih, py::object dw_hh,
                  py::object db_ih, py::object db_hh, const std::string& nonlinearity, int64_t H) {
  const char* fn = "rnn_backward";
  const int64_t T = dim(x, 0), B = dim(x, 1), I = dim(x, 2);
  fastrnn::RnnBackwardArgs<S> a{};
  a.T = T, a.B = B, a.I = I, a.H = H;
  a.batch_sizes = batch_sizes_arg(fn, batch_sizes, T, B);
  a.act = activation(nonlinearity);
  a.x = arg<S>(fn, "x", x, {T, B, I}, false);
  a.h0 = arg<S>(fn, "h0", h0, {B, H}, false);
  a.y = arg<S>(fn, "y", y, {T, B, H}, false);
  a.w_ih = arg<S>(fn, "w_ih", w_ih, {H, I}, false);
  a.w_hh = arg<S>(fn, "w_hh", w_hh, {H, H}, false);
  a.gates = arg<S>(fn, "gates", gates, {T, B, H}, true);
  a.dy = arg<S>(fn, "dy", dy, {T, B, H}, false);
  a.dh_n = arg<S>(fn, "dh_n", dh_n, {B, H}, false);
  a.dx = arg<S>(fn, "dx", dx, {T, B, I}, true);
  a.dh0 = arg<S>(fn, "dh0", dh0, {B, H}, true);
  a.dw_ih = arg<S>(fn, "dw_ih", dw_ih, {H, I}, true);
  a.dw_hh = arg<S>(fn, "dw_hh", dw_hh, {H, H}, true);
  a.db_ih = arg<S>(fn, "db_ih", db_ih, {H}, true, true);
  a.db_hh = arg<S>(fn, "db_hh", db_hh, {H}, true, true);
  if (!a.db_ih != !a.db_hh) throw py::value_error("rnn_backward: db_ih and db_hh go together");
  py::gil_scoped_release release;
  fastrnn::rnn_backward(a);
}

template <typename S>
void gemm_nt(py::object a, py::object b, py::object c) {
  const char* fn = "gemm_nt";
  if (!py::isinstance<py::array>(b) || py::reinterpret_borrow<py::array>(a).ndim() != 2 ||
      py::reinterpret_borrow<py::array>(b).ndim() != 2)
    throw py::value_error("gemm_nt: a and b must be 2-D numpy arrays");
  py::array A = py::reinterpret_borrow<py::array>(a), B = py::reinterpret_borrow<py::array>(b);
  const int64_t M = A.shape(0), K = A.shape(1), N = B.shape(0);
  const S* pa = arg<S>(fn, "a", a, {M, K}, false);
  const S* pb = arg<S>(fn, "b", b, {N, K}, false);
  S* pc = arg<S>(fn, "c", c, {M, N}, true);
  py::gil_scoped_release release;
  fastrnn::gemm_nt(M, N, K, pa, pb, pc);
}

// Binds one kernel for both dtypes, choosing by the dtype of x.
#define FASTRNN_BIND(m, name, doc)                                                  \
  m.def(                                                                            \
      #name,                                                                        \
      [](py::args args, py::kwargs kwargs) {                                        \
        if (args.size() == 0) throw py::type_error(#name ": missing argument 'x'"); \
        py::object f = is_f64(#name, args[0]) ? py::cpp_function(&name<double>)     \
                                              : py::cpp_function(&name<float>);     \
        return f(*args, **kwargs);                                                  \
      },                                                                            \
      doc)

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastrnn's C++ kernels. Use fastrnn.ops; these take preallocated outputs.";
  FASTRNN_BIND(
      m, lstm_forward,
      "(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, y, h_n, c_n, gates, cells, m, "
      "training, H, P)");
  FASTRNN_BIND(m, lstm_backward,
               "(x, h0, y, w_ih, w_hh, w_hr, batch_sizes, gates, cells, m, dy, dh_n, dc_n, dx, "
               "dh0, dc0, dw_ih, dw_hh, dw_hr, db_ih, db_hh, H, P)");
  FASTRNN_BIND(m, gru_forward,
               "(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, y, h_n, gates, extra, training, "
               "reset_after, H)");
  FASTRNN_BIND(m, gru_backward,
               "(x, h0, y, w_ih, w_hh, batch_sizes, gates, extra, dy, dh_n, dx, dh0, dw_ih, "
               "dw_hh, db_ih, db_hh, reset_after, H)");
  FASTRNN_BIND(m, rnn_forward,
               "(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, y, h_n, gates, nonlinearity, H)");
  FASTRNN_BIND(m, rnn_backward,
               "(x, h0, y, w_ih, w_hh, batch_sizes, gates, dy, dh_n, dx, dh0, dw_ih, dw_hh, "
               "db_ih, db_hh, nonlinearity, H)");
  FASTRNN_BIND(m, gemm_nt, "(a (M, K), b (N, K), c (M, N)): c = a b^T on the kernels' BLAS path");
  m.def("set_num_threads", &fastrnn::set_num_threads, py::arg("n"),
        "Threads for every kernel; 0 restores the default (the cores this process may use).");
  m.def("get_num_threads", &fastrnn::get_num_threads);
  m.def("blas_info", &fastrnn::blas_info, "The BLAS under the large GEMMs and its configuration.");
  m.def("set_cpu_isa", &fastrnn::set_cpu_isa, py::arg("name"),
        "Selects generic, avx2 or avx512 kernels if this CPU has them; returns whether it did.");
  m.def("cpu_isa", &fastrnn::cpu_isa,
        "The instruction set the CPU kernels run: avx512, avx2 or generic.");
}
