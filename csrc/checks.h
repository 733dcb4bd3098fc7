// The binding layer's checks of array arguments: one pass before dispatch, shared by every
// bindings_*.cpp file, so that a kernel (CPU or CUDA) receives arrays whose rank, shape and
// dtype it may rely on and checks none of them again. Every message starts with the
// argument's name, says what was expected and what was received. Checks that must read
// the data (labels in range, non-finite values) stay with the kernels, which count them
// (the *Status structs).
#pragma once

#include <initializer_list>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "tensor.h"

namespace miakit {

inline std::string device_str(const Tensor& t) {
  return t.device == DeviceType::cpu ? "cpu" : "cuda:" + std::to_string(t.device_id);
}

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i8: return "int8";
    case DType::i16: return "int16";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::u8: return "uint8";
    case DType::b8: return "bool";
  }
  return "?";
}

// "[3, 4]"
inline std::string dims(const Tensor& t) {
  std::string s = "[";
  for (int i = 0; i < t.ndim; ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
  return s + "]";
}

inline std::string got(const Tensor& t) {
  return std::string("got ") + dtype_name(t.dtype) + " " + dims(t);
}

inline bool is_float(DType d) {
  return d == DType::f16 || d == DType::bf16 || d == DType::f32 || d == DType::f64;
}

// t has one of `dtypes`; `what` names them ("float64", "uint8 or bool", ...).
inline void check_dtype(const Tensor& t, const char* name, std::initializer_list<DType> dtypes,
                        const char* what) {
  for (DType d : dtypes)
    if (t.dtype == d) return;
  throw InputError(std::string(name) + ": expected " + what + ", got " + dtype_name(t.dtype));
}

// A floating-point array (float16/bfloat16/float32/float64) of `ndim` dimensions.
inline void check_float(const Tensor& t, const char* name, int ndim) {
  if (t.ndim != ndim)
    throw InputError(std::string(name) + ": expected " + std::to_string(ndim) +
                     " dimensions, got " + std::to_string(t.ndim));
  if (!is_float(t.dtype))
    throw InputError(std::string(name) + ": expected a floating-point array, got " +
                     dtype_name(t.dtype));
}

// t has exactly `shape` (an entry -1 matches any size).
inline void check_shape(const Tensor& t, const char* name, std::initializer_list<int64_t> shape,
                        const char* meaning = nullptr) {
  bool ok = t.ndim == static_cast<int>(shape.size());
  int i = 0;
  std::string want = "[";
  for (int64_t s : shape) {
    if (ok && s >= 0 && t.shape[i] != s) ok = false;
    want += (i ? ", " : "") + (s >= 0 ? std::to_string(s) : std::string("any"));
    ++i;
  }
  want += "]";
  if (!ok)
    throw InputError(std::string(name) + ": expected shape " + want +
                     (meaning ? std::string(" (") + meaning + ")" : std::string()) +
                     ", got " + dims(t));
}

// Axis `axis` of t equals `want`, the size of the same axis of `other`.
inline void check_dim(const Tensor& t, const char* name, int axis, int64_t want,
                      const char* other) {
  if (t.shape[axis] != want)
    throw InputError(std::string(name) + ": shape mismatch with " + other + " on axis " +
                     std::to_string(axis) + " (" + std::to_string(t.shape[axis]) + " vs " +
                     std::to_string(want) + ")");
}

// A float64 output of shape [n].
inline void check_out(const Tensor& t, const char* name, int64_t n) {
  if (t.ndim != 1 || t.shape[0] != n || t.dtype != DType::f64)
    throw InputError(std::string(name) + ": expected a float64 array of shape (" +
                     std::to_string(n) + ",), " + got(t));
}

// A 1-D array of n elements of `dtype` (on the CPU unless on_cpu is false).
inline void check_vec(const Tensor& t, const char* name, DType dtype, int64_t n,
                      bool on_cpu = true) {
  if (on_cpu && t.device != DeviceType::cpu)
    throw InputError(std::string(name) + ": expected a CPU array");
  if (t.ndim != 1 || t.dtype != dtype || t.shape[0] != n)
    throw InputError(std::string(name) + ": expected a 1-D " + dtype_name(dtype) +
                     " array of " + std::to_string(n) + " elements, " + got(t));
}

// A 2-D array of `rows` rows (and `cols` columns unless cols < 0) of `dtype`.
inline void check_rows(const Tensor& t, const char* name, int64_t rows, int64_t cols,
                       DType dtype) {
  if (t.ndim != 2 || t.shape[0] != rows || (cols >= 0 && t.shape[1] != cols) ||
      t.dtype != dtype)
    throw InputError(std::string(name) + ": expected a 2-D " + dtype_name(dtype) +
                     " array with " + std::to_string(rows) + " rows" +
                     (cols >= 0 ? " and " + std::to_string(cols) + " columns" : "") + ", " +
                     got(t));
}

// A C-contiguous array of `ndim` dimensions and `dtype`; `what` describes it.
inline void check_contiguous(const Tensor& t, const char* name, DType dtype, int ndim,
                             const char* what) {
  if (t.ndim != ndim || t.dtype != dtype)
    throw InputError(std::string(name) + ": expected " + what + ", " + got(t));
  int64_t stride = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    if (t.shape[i] > 1 && t.strides[i] != stride)
      throw InputError(std::string(name) + ": expected a C-contiguous array");
    stride *= t.shape[i];
  }
}

// A count the kernels hold in an int (classes, models): at most 2^31 - 1. `what` names
// the counted things ("classes").
inline void check_int_count(int64_t n, const char* name, const char* what) {
  if (n > std::numeric_limits<int>::max())
    throw InputError(std::string(name) + ": at most 2147483647 " + what + " per call, got " +
                     std::to_string(n));
}

// Every array on the CPU, for the kernels that only run there.
inline void check_cpu(const std::vector<std::pair<const char*, const Tensor*>>& ts,
                      const std::string& fn) {
  for (const auto& [name, t] : ts)
    if (t->device != DeviceType::cpu)
      throw InputError(fn + ": runs on the CPU; " + name + " is on " + device_str(*t));
}

}  // namespace miakit
