// CUDA kernel for exact k nearest neighbours (docs/methods/generative.md), twin of
// cpu/knn.cpp: the same screen (2 q.r - |r|^2 in float32 against |q|^2 - d^2 of the worst
// held neighbour, less the margin of include/miakit/knn.h), the same float64 distances
// (sq_distance) and the same order (lower reference index first on ties).
//
// Three steps on the caller's stream:
//   1. rows_kernel, twice: the reference and the queries as transposed, padded float32
//      copies [D, Np] and [D, Qp], their squared norms, NaN/inf counts, and the largest
//      reference norm;
//   2. the screened product of screened_topk.cuh with rows = reference, columns = queries;
//   3. finalize: one thread per query merges its chunks' lists, sorts, writes d^2.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/screened_topk.cuh"
#include "kernels_risk.h"
#include "miakit/influence.h"
#include "miakit/knn.h"

namespace miakit {
namespace cuda {

namespace {

// xf[d, i] = float(x[i, d]) (0 for padding rows), n2[i] = |x_i|^2 in float64; pen[i] =
// -float(n2[i]) (-inf for padding) when pen is given; the largest norm, rounded up to
// float, into *norm_max (positive floats order like their bit patterns).
template <class T>
__global__ void rows_kernel(const T* __restrict__ x, int64_t s0, int64_t s1, int64_t n,
                            int64_t D, int64_t np, float* __restrict__ xf,
                            double* __restrict__ n2, float* __restrict__ pen,
                            unsigned* __restrict__ norm_max,
                            unsigned long long* __restrict__ nonfinite) {
  long long bad = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < np;
       i += int64_t(gridDim.x) * blockDim.x) {
    double s = 0.0;
    for (int64_t d = 0; d < D; ++d) {
      const double v = i < n ? Load<T>::get(x + i * s0 + d * s1) : 0.0;
      const float f = static_cast<float>(v);
      bad += !isfinite(f);
      xf[d * np + i] = f;
      s += v * v;
    }
    if (i < n) {
      bad += !isfinite(static_cast<float>(s));
      n2[i] = s;
      if (norm_max) atomicMax(norm_max, __float_as_uint(__double2float_ru(sqrt(s))));
    }
    if (pen) pen[i] = i < n ? -static_cast<float>(s) : -INFINITY;
  }
  flush_count(bad, nonfinite);
}

template <class T>
struct KnnPolicy {
  const float* pen;
  const double* qn2;
  const unsigned* r_norm_max;
  const T* q;
  int64_t q0, q1;
  const T* r;
  int64_t r0, r1;
  int64_t D, R;
  bool exclude_self;

  __device__ bool skip(int64_t) const { return false; }
  __device__ bool pass(float p, int64_t i, int64_t, float thr) const {
    return fmaf(p, 2.0f, pen[i]) >= thr;
  }
  __device__ bool valid(int64_t i, int64_t j) const {
    return i < R && !(exclude_self && i == j);
  }
  __device__ double value(float, int64_t i, int64_t j) const {
    return -sq_distance<T>(q + j * q0, q1, r + i * r0, r1, D);
  }
  __device__ double offset(int64_t j) const {
    const double rmax = static_cast<double>(__uint_as_float(*r_norm_max));
    return qn2[j] - knn_margin(D, sqrt(qn2[j]), rmax);
  }
};

__global__ void finalize_kernel(int64_t Q, int64_t k, int64_t chunks, screened::Lists l,
                                double* vals, int64_t v0, int64_t v1, int64_t* idx,
                                int64_t i0s, int64_t i1s) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < Q;
       j += int64_t(gridDim.x) * blockDim.x) {
    TopK h{l.hv + j * k, l.hi + j * k, k, 0};
    screened::merge_chunks(h, l, j, Q, k, chunks);
    h.sort();
    for (int64_t r = 0; r < k; ++r) {
      vals[j * v0 + r * v1] = r < h.n ? -h.v[r] : NAN;
      idx[j * i0s + r * i1s] = r < h.n ? h.i[r] : -1;
    }
  }
}

template <class T>
RiskStatus knn_typed(const KnnArgs& a, cudaStream_t stream) {
  const Tensor& Qt = a.queries;
  const Tensor& Rt = a.reference;
  const int64_t Q = Qt.shape[0], R = Rt.shape[0], D = Qt.shape[1], k = a.vals.shape[1];
  const int64_t Np = (R + screened::kBI - 1) / screened::kBI * screened::kBI;
  const int64_t Qp = (Q + screened::kBJ - 1) / screened::kBJ * screened::kBJ;

  DeviceBuffer rf(sizeof(float) * D * Np, stream), qf(sizeof(float) * D * Qp, stream);
  DeviceBuffer rn2(sizeof(double) * R, stream), qn2(sizeof(double) * Q, stream);
  DeviceBuffer pen(sizeof(float) * Np, stream), r_norm_max(sizeof(unsigned), stream);
  check(cudaMemsetAsync(r_norm_max.as<unsigned>(), 0, sizeof(unsigned), stream),
        "cudaMemsetAsync");
  Counters counts(1, stream);
  rows_kernel<T><<<grid_size(Np, 256, 4), 256, 0, stream>>>(
      Rt.ptr<T>(), Rt.strides[0], Rt.strides[1], R, D, Np, rf.as<float>(), rn2.as<double>(),
      pen.as<float>(), r_norm_max.as<unsigned>(), counts.data());
  check_launch("rows_kernel (reference)");
  rows_kernel<T><<<grid_size(Qp, 256, 4), 256, 0, stream>>>(
      Qt.ptr<T>(), Qt.strides[0], Qt.strides[1], Q, D, Qp, qf.as<float>(), qn2.as<double>(),
      nullptr, nullptr, counts.data());
  check_launch("rows_kernel (queries)");
  const auto c = counts.fetch();
  RiskStatus st{c[0], 0, 0, "cuda"};
  if (st.nonfinite) return st;

  const KnnPolicy<T> pol{pen.as<float>(), qn2.as<double>(), r_norm_max.as<unsigned>(),
                         Qt.ptr<T>(), Qt.strides[0], Qt.strides[1],
                         Rt.ptr<T>(), Rt.strides[0], Rt.strides[1],
                         D, R, a.exclude_self};
  screened::screened_topk(
      rf.as<float>(), qf.as<float>(), D, R, Q, k, pol, stream,
      [&](const screened::Lists& lists, int64_t chunks) {
        finalize_kernel<<<grid_size(Q, 128, 4), 128, 0, stream>>>(
            Q, k, chunks, lists, a.vals.ptr<double>(), a.vals.strides[0], a.vals.strides[1],
            a.idx.ptr<int64_t>(), a.idx.strides[0], a.idx.strides[1]);
        check_launch("knn finalize_kernel");
      });
  return st;
}

}  // namespace

RiskStatus knn(const KnnArgs& a, std::uintptr_t stream_handle) {
  DeviceGuard guard(a.queries.device_id);
  cudaStream_t stream = as_stream(stream_handle);
  switch (a.queries.dtype) {
    case DType::f16: return knn_typed<Half>(a, stream);
    case DType::bf16: return knn_typed<BFloat16>(a, stream);
    case DType::f32: return knn_typed<float>(a, stream);
    case DType::f64: return knn_typed<double>(a, stream);
    default: throw InputError("queries: expected a floating-point array");
  }
}

}  // namespace cuda
}  // namespace miakit
