// CUDA twin of cpu/curvature.cpp: Rademacher probes from the counter-based generator of
// include/miakit/rng.h, one thread per 64-element word of a probe, so the GPU fills
// exactly the values the CPU fills.
#include <cuda_runtime.h>

#include "cuda/common.cuh"
#include "kernels_risk.h"
#include "miakit/ghost.h"
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

// Probe reductions (kernels_risk.h ProbeArgs): one warp per (example, probe) writes q
// (x.y, or ||x - y||_2^2) to scratch; then one thread per example reduces over probes in
// order with the formulas of include/miakit/ghost.h, as the CPU does.
namespace {

__global__ void probe_q_kernel(const void* x, DType xt, int64_t x0, int64_t x1, int64_t x2,
                               const void* y, DType yt, int64_t y0, int64_t y1, int64_t y2,
                               int64_t N, int64_t P, int64_t D, bool diff, double* q) {
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  const int lane = threadIdx.x & 31;
  for (int64_t w = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; w < N * P;
       w += warps) {
    const int64_t n = w / P, k = w % P;
    double s = 0.0;
    for (int64_t e = lane; e < D; e += 32) {
      const double xv = load_as_double(x, xt, n * x0 + k * x1 + e * x2);
      if (diff) {
        const double t = xv - load_as_double(y, yt, n * y0 + e * y2);
        s += t * t;
      } else {
        s += xv * load_as_double(y, yt, n * y0 + k * y1 + e * y2);
      }
    }
    s = warp_sum(s);
    if (lane == 0) q[w] = s;
  }
}

__global__ void probe_reduce_kernel(const double* q, int64_t N, int64_t P, bool diff,
                                    bool squared, double* mean, int64_t m0, double* se,
                                    int64_t s0, unsigned long long* counts) {
  long long nonfinite = 0;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t start = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  // whole warps loop the same number of times so that flush_count sees every lane
  for (int64_t base = start - threadIdx.x % 32; base < N; base += stride) {
    const int64_t n = base + threadIdx.x % 32;
    if (n >= N) continue;
    const double* qn = q + n * P;
    bool finite = true;
    for (int64_t k = 0; k < P; ++k) finite &= is_finite(qn[k]);
    if (!finite) {
      ++nonfinite;
      mean[n * m0] = NAN;
      if (!diff) se[n * s0] = NAN;
      continue;
    }
    if (diff) {
      double acc = 0.0;
      for (int64_t k = 0; k < P; ++k) acc += squared ? qn[k] : sqrt(qn[k]);
      mean[n * m0] = acc / static_cast<double>(P);
    } else {
      double m, e;
      probe_mean_stderr(qn, P, &m, &e);
      mean[n * m0] = m;
      se[n * s0] = e;
    }
  }
  flush_count(nonfinite, counts);
}

RiskStatus probe_run(const ProbeArgs& a, bool diff, std::uintptr_t stream_handle) {
  DeviceGuard guard(a.x.device_id);
  cudaStream_t stream = as_stream(stream_handle);
  const int64_t N = a.x.shape[0], P = a.x.shape[1], D = a.x.shape[2];
  RiskStatus st;
  if (N == 0) return st;
  DeviceBuffer q(sizeof(double) * N * P, stream);
  probe_q_kernel<<<grid_size(N * P * 32, 256, 8), 256, 0, stream>>>(
      a.x.data, a.x.dtype, a.x.strides[0], a.x.strides[1], a.x.strides[2], a.y.data, a.y.dtype,
      a.y.strides[0], diff ? 0 : a.y.strides[1], diff ? a.y.strides[1] : a.y.strides[2], N, P,
      D, diff, q.as<double>());
  check_launch("probe_q_kernel");
  Counters counts(1, stream);
  probe_reduce_kernel<<<grid_size(N, 128, 4), 128, 0, stream>>>(
      q.as<double>(), N, P, diff, a.squared, a.mean.ptr<double>(), a.mean.strides[0],
      diff ? nullptr : a.se.ptr<double>(), diff ? 0 : a.se.strides[0], counts.data());
  check_launch("probe_reduce_kernel");
  st.nonfinite = counts.fetch()[0];
  return st;
}

}  // namespace

RiskStatus probe_quad(const ProbeArgs& a, std::uintptr_t stream) {
  return probe_run(a, false, stream);
}

RiskStatus probe_diff(const ProbeArgs& a, std::uintptr_t stream) {
  return probe_run(a, true, stream);
}

}  // namespace cuda
}  // namespace miakit
