// CUDA twins of cpu/head.cpp: linear-softmax head gradient norms and Hessian traces, with
// the formulas of include/miakit/head.h. W is converted once to a contiguous float64 copy;
// then one thread handles one example (grid-stride), with its row of x, its logits and
// (for traces) W^T p in a per-thread slice of scratch memory.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/common.cuh"
#include "kernels_risk.h"
#include "miakit/head.h"

namespace miakit {
namespace cuda {

namespace {

__global__ void head_params_kernel(const void* w, DType wt, int64_t w0, int64_t w1,
                                   const void* b, DType bt, int64_t b0, int64_t C, int64_t d,
                                   double* W, double* bd, unsigned long long* bad) {
  long long mine = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < C * d + C;
       i += int64_t(gridDim.x) * blockDim.x) {
    double v = 0.0;
    if (i < C * d) {
      const int64_t c = i / d, e = i % d;
      v = load_as_double(w, wt, c * w0 + e * w1);
      W[i] = v;
    } else if (b != nullptr) {
      v = load_as_double(b, bt, (i - C * d) * b0);
      bd[i - C * d] = v;
    }
    mine += !is_finite(v);
  }
  flush_count(mine, bad);
}

__global__ void head_kernel(const void* x, DType xt, int64_t x0, int64_t x1, int64_t N,
                            int64_t d, int64_t C, const double* W, const double* b,
                            const int64_t* labels, int64_t l0, bool trace, double* out,
                            int64_t o0, double* scratch, unsigned long long* counts) {
  const int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  double* xb = scratch + g * (2 * d + C);
  double* z = xb + d;
  double* wbar = z + C;
  long long nonfinite = 0, bad_label = 0;
  for (int64_t n = g; n < N; n += stride) {
    bool finite = true;
    for (int64_t e = 0; e < d; ++e) {
      xb[e] = load_as_double(x, xt, n * x0 + e * x1);
      finite &= is_finite(xb[e]);
    }
    if (!finite) {
      ++nonfinite;
      out[n * o0] = NAN;
      continue;
    }
    const double xsq = head_logits(xb, W, b, C, d, z);
    if (trace) {
      softmax_inplace(z, C);
      out[n * o0] = head_hessian_trace(z, W, C, d, wbar);
    } else {
      const int64_t y = labels[n * l0];
      if (y < 0 || y >= C) {
        ++bad_label;
        out[n * o0] = NAN;
        continue;
      }
      out[n * o0] = head_grad_norm(z, C, y, xsq, b != nullptr);
    }
  }
  flush_count(nonfinite, counts);
  flush_count(bad_label, counts + 1);
}

RiskStatus head_run(const HeadArgs& a, bool trace, std::uintptr_t stream_handle) {
  DeviceGuard guard(a.x.device_id);
  cudaStream_t stream = as_stream(stream_handle);
  const int64_t N = a.x.shape[0], d = a.x.shape[1], C = a.w.shape[0];
  DeviceBuffer W(sizeof(double) * C * d, stream), bd(sizeof(double) * C, stream);
  RiskStatus st;
  {
    Counters bad(1, stream);
    head_params_kernel<<<grid_size(C * d + C, 256, 4), 256, 0, stream>>>(
        a.w.data, a.w.dtype, a.w.strides[0], a.w.strides[1], a.has_bias ? a.b.data : nullptr,
        a.b.dtype, a.has_bias ? a.b.strides[0] : 0, C, d, W.as<double>(), bd.as<double>(),
        bad.data());
    check_launch("head_params_kernel");
    st.nonfinite = bad.fetch()[0];
    if (st.nonfinite) return st;
  }
  if (N == 0) return st;
  // Per-thread scratch: x row, logits and W^T p; at most ~256 MiB in all.
  const int64_t per_thread = 2 * d + C;
  constexpr int kThreads = 128;
  const int64_t max_threads =
      std::max<int64_t>(kThreads, (int64_t(256) << 20) / (sizeof(double) * per_thread));
  const int blocks = static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>(grid_size(N, kThreads, 4), max_threads / kThreads)));
  DeviceBuffer scratch(sizeof(double) * per_thread * blocks * kThreads, stream);
  Counters counts(2, stream);
  head_kernel<<<blocks, kThreads, 0, stream>>>(
      a.x.data, a.x.dtype, a.x.strides[0], a.x.strides[1], N, d, C, W.as<double>(),
      a.has_bias ? bd.as<double>() : nullptr, trace ? nullptr : a.labels.ptr<int64_t>(),
      trace ? 0 : a.labels.strides[0], trace, a.out.ptr<double>(), a.out.strides[0],
      scratch.as<double>(), counts.data());
  check_launch("head_kernel");
  const auto c = counts.fetch();
  st.nonfinite = c[0];
  st.bad_label = c[1];
  return st;
}

}  // namespace

RiskStatus head_norms(const HeadArgs& a, std::uintptr_t stream) {
  return head_run(a, false, stream);
}

RiskStatus head_trace(const HeadArgs& a, std::uintptr_t stream) {
  return head_run(a, true, stream);
}

}  // namespace cuda
}  // namespace miakit
