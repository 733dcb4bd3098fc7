// CUDA twin of cpu/curvature.cpp: Rademacher probes from the counter-based generator of
// include/miakit/rng.h, one thread per 64-element word of a probe, so the GPU fills
// exactly the values the CPU fills.
#include <cuda_runtime.h>

#include "cuda/common.cuh"
#include "kernels_risk.h"
#include "miakit/rng.h"

namespace miakit {
namespace cuda {

namespace {

template <class T> __device__ __forceinline__ void store_sign(T* p, double v);
template <> __device__ __forceinline__ void store_sign<double>(double* p, double v) { *p = v; }
template <> __device__ __forceinline__ void store_sign<float>(float* p, double v) {
  *p = static_cast<float>(v);
}
// float16 and bfloat16: +1 and -1 as bit patterns.
struct F16Bits { uint16_t bits; };
struct BF16Bits { uint16_t bits; };
template <> __device__ __forceinline__ void store_sign<F16Bits>(F16Bits* p, double v) {
  p->bits = v > 0 ? 0x3c00u : 0xbc00u;
}
template <> __device__ __forceinline__ void store_sign<BF16Bits>(BF16Bits* p, double v) {
  p->bits = v > 0 ? 0x3f80u : 0xbf80u;
}

template <class T>
__global__ void rademacher_kernel(const int64_t* ex, int64_t ex0, int64_t R, int64_t P,
                                  int64_t D, int64_t s0, int64_t s1, int64_t s2, uint64_t seed,
                                  int64_t probe0, T* out) {
  const int64_t words = (D + 63) / 64;
  const int64_t total = R * P * words;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t w = t % words, rp = t / words, p = rp % P, r = rp / P;
    const uint64_t key = probe_key(seed, static_cast<uint64_t>(ex[r * ex0]),
                                   static_cast<uint64_t>(probe0 + p));
    const uint64_t bits = probe_word(key, static_cast<uint64_t>(w));
    const int64_t e1 = (w + 1) * 64 < D ? (w + 1) * 64 : D;
    for (int64_t e = w * 64; e < e1; ++e) {
      store_sign(out + r * s0 + p * s1 + e * s2, sign_from_word(bits, e));
    }
  }
}

template <class T>
void launch(const RademacherArgs& a, cudaStream_t stream) {
  const Tensor& o = a.out;
  const int64_t total = o.shape[0] * o.shape[1] * ((o.shape[2] + 63) / 64);
  if (total == 0) return;
  rademacher_kernel<T><<<grid_size(total, 256, 8), 256, 0, stream>>>(
      a.examples.ptr<int64_t>(), a.examples.strides[0], o.shape[0], o.shape[1], o.shape[2],
      o.strides[0], o.strides[1], o.strides[2], a.seed, a.probe0, static_cast<T*>(o.data));
  check_launch("rademacher_kernel");
}

}  // namespace

void rademacher(const RademacherArgs& a, std::uintptr_t stream_handle) {
  DeviceGuard guard(a.out.device_id);
  cudaStream_t stream = as_stream(stream_handle);
  switch (a.out.dtype) {
    case DType::f64: launch<double>(a, stream); break;
    case DType::f32: launch<float>(a, stream); break;
    case DType::f16: launch<F16Bits>(a, stream); break;
    case DType::bf16: launch<BF16Bits>(a, stream); break;
    default:
      throw InputError("out: Rademacher probes need a float16/bfloat16/float32/float64 array");
  }
}

}  // namespace cuda
}  // namespace miakit
