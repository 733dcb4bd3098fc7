// A borrowed, strided view of an array owned by Python (numpy or torch). Kernels read
// and write through it; it never owns or frees memory.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "miakit/common.h"

namespace miakit {

enum class DeviceType : int { cpu = 0, cuda = 1 };

constexpr int kMaxDims = 8;

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::f32;
  DeviceType device = DeviceType::cpu;
  int device_id = 0;
  int ndim = 0;
  int64_t shape[kMaxDims] = {0};
  int64_t strides[kMaxDims] = {0};  // in elements, not bytes

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  template <class T> T* ptr() const { return static_cast<T*>(data); }
};

// Errors raised by kernels for bad input; the bindings turn them into ValueError.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace miakit
