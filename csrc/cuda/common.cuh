// Plumbing shared by the CUDA kernels: errors as exceptions, the device guard,
// stream-ordered scratch memory, the counters that carry statuses back to the host,
// and warp reductions. No numerics live here (those are in include/miakit/).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.h"

namespace miakit {
namespace cuda {

constexpr unsigned kFullMask = 0xffffffffu;

// A CUDA error becomes std::runtime_error naming the call that failed. The error is
// also cleared (where it is not sticky), so the next miakit call starts clean.
inline void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();
  throw std::runtime_error(std::string("miakit CUDA: ") + what + " failed: " +
                           cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

// Launch errors (bad configuration, no kernel image for this GPU) are only reported by
// cudaGetLastError; call this right after every <<<>>>.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

inline cudaStream_t as_stream(std::uintptr_t stream) {
  // 0 is the legacy default stream, as torch reports it.
  return reinterpret_cast<cudaStream_t>(stream);
}

// Throws std::runtime_error naming the GPU's architecture and this build's when the build
// holds neither machine code nor PTX that `device` can run (device.cu). The environment
// variable MIAKIT_TEST_CUDA_CAPABILITY ("7.5") stands in for the device's, for tests.
void require_arch(int device);

// Makes `device` current for the lifetime of the guard and restores the caller's device,
// so that a call on cuda:1 leaves a torch program that works on cuda:0 undisturbed.
// Every kernel entry point makes one before any launch, so it also checks the device's
// architecture: a GPU this build does not cover fails here with a clear message.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    require_arch(device);
    check(cudaGetDevice(&prev_), "cudaGetDevice");
    if (prev_ != device) {
      check(cudaSetDevice(device), "cudaSetDevice");
      switched_ = true;
    }
  }
  ~DeviceGuard() {
    if (switched_) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
  bool switched_ = false;
};

// Scratch memory ordered on the caller's stream (cudaMallocAsync/cudaFreeAsync), so it
// needs no device-wide synchronization. Devices without memory pools fall back to
// cudaMalloc/cudaFree.
class DeviceBuffer {
 public:
  DeviceBuffer(size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes == 0) return;
    const cudaError_t err = cudaMallocAsync(&ptr_, bytes, stream);
    if (err == cudaErrorNotSupported) {
      cudaGetLastError();
      async_ = false;
      check(cudaMalloc(&ptr_, bytes), "cudaMalloc (scratch)");
    } else {
      check(err, "cudaMallocAsync (scratch)");
    }
  }
  ~DeviceBuffer() {
    if (!ptr_) return;
    if (async_) {
      cudaFreeAsync(ptr_, stream_);
    } else {
      cudaStreamSynchronize(stream_);
      cudaFree(ptr_);
    }
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <class T> T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
  bool async_ = true;
};

// Event counts raised by a kernel (NaN rows, clamped spreads, ...): a small device
// array zeroed on the stream, incremented with atomics, and copied back once at the
// end; the copy and a stream synchronize make the counts, and the outputs, final.
class Counters {
 public:
  Counters(size_t n, cudaStream_t stream)
      : n_(std::max<size_t>(n, 1)), stream_(stream), buf_(n_ * sizeof(unsigned long long), stream) {
    check(cudaMemsetAsync(buf_.as<unsigned long long>(), 0, n_ * sizeof(unsigned long long),
                          stream),
          "cudaMemsetAsync (counters)");
  }
  unsigned long long* data() const { return buf_.as<unsigned long long>(); }

  std::vector<int64_t> fetch() const {
    std::vector<unsigned long long> host(n_);
    check(cudaMemcpyAsync(host.data(), data(), n_ * sizeof(unsigned long long),
                          cudaMemcpyDeviceToHost, stream_),
          "cudaMemcpyAsync (counters)");
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    return std::vector<int64_t>(host.begin(), host.end());
  }

 private:
  size_t n_;
  cudaStream_t stream_;
  DeviceBuffer buf_;
};

// Blocks for a grid-stride loop over `work` items: enough to fill every SM `per_sm`
// times, never more than there is work for.
inline int grid_size(int64_t work, int threads, int per_sm) {
  int device = 0, sms = 1;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
        "cudaDeviceGetAttribute");
  const int64_t need = (work + threads - 1) / threads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(need, int64_t(sms) * per_sm)));
}

#if defined(__CUDACC__)
// Warp sums. The butterfly leaves the same value in every lane (a + b == b + a exactly
// in IEEE arithmetic), so all lanes go on with identical statistics.
__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
__device__ __forceinline__ long long warp_sum(long long v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
__device__ __forceinline__ int warp_sum(int v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// Adds a thread's count to a global counter with one atomic per warp, and none when the
// warp saw nothing (the common case: counts flag bad input). Whole warps must call it.
__device__ __forceinline__ void flush_count(long long mine, unsigned long long* counter) {
  const long long total = warp_sum(mine);
  if ((threadIdx.x & 31) == 0 && total != 0) {
    atomicAdd(counter, static_cast<unsigned long long>(total));
  }
}
#endif

}  // namespace cuda
}  // namespace miakit
