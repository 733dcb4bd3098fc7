// Conversion of Python arrays to borrowed Tensor views, device checks and dispatch,
// shared by every bindings_*.cpp file. No numerics live here.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <utility>
#include <vector>

#include "checks.h"
#include "dlpack_abi.h"
#include "kernels.h"

namespace miakit {
namespace py = pybind11;

inline DType dtype_from_dlpack(const dlpack::DataType& d, const char* name) {
  if (d.lanes != 1) throw InputError(std::string(name) + ": vector dtypes are not supported");
  switch (d.code) {
    case dlpack::kFloat:
      if (d.bits == 16) return DType::f16;
      if (d.bits == 32) return DType::f32;
      if (d.bits == 64) return DType::f64;
      break;
    case dlpack::kBfloat:
      if (d.bits == 16) return DType::bf16;
      break;
    case dlpack::kInt:
      if (d.bits == 8) return DType::i8;
      if (d.bits == 16) return DType::i16;
      if (d.bits == 32) return DType::i32;
      if (d.bits == 64) return DType::i64;
      break;
    case dlpack::kUInt:
      if (d.bits == 8) return DType::u8;
      break;
    case dlpack::kBool:
      if (d.bits == 8) return DType::b8;
      break;
  }
  throw InputError(std::string(name) + ": unsupported DLPack dtype (code " +
                   std::to_string(d.code) + ", " + std::to_string(d.bits) + " bits)");
}

inline DType dtype_from_numpy(const py::dtype& dt, const char* name) {
  const char k = dt.kind();
  const auto size = dt.itemsize();
  if (k == 'f' && size == 2) return DType::f16;
  if (k == 'f' && size == 4) return DType::f32;
  if (k == 'f' && size == 8) return DType::f64;
  if (k == 'i' && size == 1) return DType::i8;
  if (k == 'i' && size == 2) return DType::i16;
  if (k == 'i' && size == 4) return DType::i32;
  if (k == 'i' && size == 8) return DType::i64;
  if (k == 'u' && size == 1) return DType::u8;
  if (k == 'b' && size == 1) return DType::b8;
  throw InputError(std::string(name) + ": unsupported dtype " + std::string(py::str(dt)));
}

// A borrowed view of `obj`: a numpy array, or a DLPack capsule that the caller keeps
// alive for the duration of the call (the capsule is not consumed, so its producer
// frees it as usual).
inline Tensor to_tensor(py::handle obj, const char* name, bool writable = false) {
  Tensor t;
  if (PyCapsule_CheckExact(obj.ptr())) {
    if (std::string(PyCapsule_GetName(obj.ptr()) ? PyCapsule_GetName(obj.ptr()) : "") !=
        "dltensor")
      throw InputError(std::string(name) + ": DLPack capsule was already consumed");
    auto* mt = static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(obj.ptr(), "dltensor"));
    const dlpack::DLTensor& d = mt->dl_tensor;
    if (d.ndim > kMaxDims) throw InputError(std::string(name) + ": too many dimensions");
    t.dtype = dtype_from_dlpack(d.dtype, name);
    t.data = static_cast<char*>(d.data) + d.byte_offset;
    switch (d.device.device_type) {
      case dlpack::kCPU: case dlpack::kCUDAHost: t.device = DeviceType::cpu; break;
      case dlpack::kCUDA: case dlpack::kCUDAManaged: t.device = DeviceType::cuda; break;
      default: throw InputError(std::string(name) + ": unsupported device type " +
                                std::to_string(d.device.device_type));
    }
    t.device_id = t.device == DeviceType::cpu ? 0 : d.device.device_id;
    t.ndim = d.ndim;
    int64_t stride = 1;
    for (int i = d.ndim - 1; i >= 0; --i) {
      t.shape[i] = d.shape[i];
      t.strides[i] = d.strides ? d.strides[i] : stride;
      stride *= d.shape[i];
    }
    return t;
  }
  if (!py::isinstance<py::array>(obj))
    throw InputError(std::string(name) + ": expected a numpy array or a DLPack capsule");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (writable && !arr.writeable()) throw InputError(std::string(name) + ": array is read-only");
  if (arr.ndim() > kMaxDims) throw InputError(std::string(name) + ": too many dimensions");
  t.dtype = dtype_from_numpy(arr.dtype(), name);
  t.data = const_cast<void*>(arr.data());
  t.ndim = static_cast<int>(arr.ndim());
  const auto item = arr.itemsize();
  for (int i = 0; i < t.ndim; ++i) {
    t.shape[i] = arr.shape(i);
    if (arr.strides(i) % item != 0)
      throw InputError(std::string(name) + ": strides are not a multiple of the item size");
    t.strides[i] = arr.strides(i) / item;
  }
  return t;
}

inline void same_device(const std::vector<std::pair<const char*, const Tensor*>>& ts) {
  const Tensor* first = ts.front().second;
  for (const auto& p : ts) {
    if (p.second->device != first->device || p.second->device_id != first->device_id)
      throw InputError(std::string("arrays are on different devices: ") + ts.front().first +
                       " on " + device_str(*first) + ", " + p.first + " on " +
                       device_str(*p.second));
  }
}

inline bool on_cuda(const Tensor& t) {
  if (t.device != DeviceType::cuda) return false;
#if defined(MIAKIT_WITH_CUDA)
  return true;
#else
  throw InputError("this miakit build has no CUDA kernels; move the arrays to the CPU");
#endif
}

inline py::dict status_dict(const LiraStatus& s) {
  py::dict d;
  d["nonfinite_logits"] = s.signal.nonfinite;
  d["bad_label"] = s.signal.bad_label;
  d["nonfinite_scores"] = s.nonfinite_scores;
  d["clamped"] = s.clamped;
  d["empty"] = s.empty;
  return d;
}

inline LiraSource make_source(py::handle data, py::handle labels) {
  LiraSource src;
  if (labels.is_none()) {
    src.scores = to_tensor(data, "scores");
  } else {
    src.from_logits = true;
    src.logits = to_tensor(data, "logits");
    src.labels = to_tensor(labels, "labels");
  }
  return src;
}

inline const Tensor& source_tensor(const LiraSource& s) { return s.from_logits ? s.logits : s.scores; }

#if defined(MIAKIT_WITH_CUDA)
#define MIAKIT_DISPATCH(fn, args, stream, dev) \
  (on_cuda(dev) ? cuda::fn(args, stream) : cpu::fn(args))
#else
#define MIAKIT_DISPATCH(fn, args, stream, dev) (on_cuda(dev), cpu::fn(args))
#endif


// Switches that choose between the kernels of one binding (bound with the kernels' own
// enums in bindings_options.cpp; no kernel takes them).
enum class HeadQuantity : int { grad_norm = 0, input_trace = 1 };    // head_norms, head_trace
enum class ProbeReduction : int { quadratic = 0, difference = 1 };  // probe_quad, probe_diff
enum class KsPiece : int { smirnov = 0, durbin = 1 };               // cpu/ks.cpp's two pieces

// Registration functions, one per kernel family (bindings_NAME.cpp); register_options
// binds the enums above and the kernels' option enums, and runs first.
void register_options(py::module_& m);
void register_lira(py::module_& m);
void register_risk(py::module_& m);
void register_train(py::module_& m);
void register_attacks(py::module_& m);
void register_metrics(py::module_& m);

}  // namespace miakit
