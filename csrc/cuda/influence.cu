// CUDA kernels for label memorization and influence (docs/methods/memorization.md); the same
// formulas and top-k order as cpu/influence.cpp (include/miakit/influence.h).
//
// Influence top-k runs in four kernels on the caller's stream:
//   1. row_stats: IN counts and screening factors per training example, and keep as a
//      padded float32 matrix Kf [M, Np];
//   2. col_stats: column sums of correct_test (of the float32 values the product uses),
//      constant columns, NaN/inf counts, and the padded float32 copy Cf [M, Tp];
//   3. the screened product of screened_topk.cuh: S = Kf^T Cf one 128 x 64 tile at a
//      time, each tile screened against its columns' running thresholds, the few
//      candidates evaluated in float64 and pushed into per-column lists;
//   4. finalize: one thread per column merges its chunks' lists, sorts, writes.
// S itself is never stored beyond one tile in shared memory.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/screened_topk.cuh"
#include "kernels_risk.h"
#include "miakit/influence.h"

namespace miakit {
namespace cuda {

namespace {

using screened::kBI;
using screened::kBJ;

// Element loads: the float types through the shared Load<>, 0/1 bytes (uint8/bool) too.
template <class T> struct Val {
  __device__ __forceinline__ static double get(const T* p) { return Load<T>::get(p); }
};
template <> struct Val<uint8_t> {
  __device__ __forceinline__ static double get(const uint8_t* p) { return *p; }
};

__global__ void row_stats_kernel(const uint8_t* __restrict__ keep, int64_t s0, int64_t s1,
                                 int64_t M, int64_t N, int64_t Np, float* __restrict__ kf,
                                 int64_t* __restrict__ n_in, float* __restrict__ fa,
                                 float* __restrict__ fb, float* __restrict__ pen,
                                 uint8_t* __restrict__ valid, unsigned* __restrict__ ab_max,
                                 unsigned long long* __restrict__ empty) {
  long long my_empty = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < Np;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t c = 0;
    for (int64_t m = 0; m < M; ++m) {
      const bool in = i < N && keep[m * s0 + i * s1] != 0;
      kf[m * Np + i] = in ? 1.0f : 0.0f;
      c += in;
    }
    const int64_t no = M - c;
    const bool ok = i < N && c > 0 && no > 0;
    my_empty += (i < N && !ok);
    if (i < N) n_in[i] = c;
    const float a = ok ? static_cast<float>(1.0 / c + 1.0 / no) : 0.0f;
    const float b = ok ? static_cast<float>(1.0 / no) : 0.0f;
    fa[i] = a;
    fb[i] = b;
    pen[i] = ok ? 0.0f : -INFINITY;
    valid[i] = ok;
    if (ok) {  // positive floats order like their bit patterns
      atomicMax(ab_max, __float_as_uint(a));
      atomicMax(ab_max + 1, __float_as_uint(b));
    }
  }
  flush_count(my_empty, empty);
}

template <class T>
__global__ void col_stats_kernel(const T* __restrict__ c, int64_t s0, int64_t s1, int64_t M,
                                 int64_t Tn, int64_t Tp, float* __restrict__ cf,
                                 double* __restrict__ cs, float* __restrict__ cs_f,
                                 double* __restrict__ abs_cs, uint8_t* __restrict__ constant,
                                 unsigned long long* __restrict__ nonfinite) {
  long long bad = 0;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < Tp;
       j += int64_t(gridDim.x) * blockDim.x) {
    double s = 0.0, sa = 0.0;
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t m = 0; m < M; ++m) {
      const float f = j < Tn ? static_cast<float>(Val<T>::get(c + m * s0 + j * s1)) : 0.0f;
      bad += !isfinite(f);
      cf[m * Tp + j] = f;
      s += f;
      sa += fabs(f);
      lo = fminf(lo, f);
      hi = fmaxf(hi, f);
    }
    if (j < Tn) {
      cs[j] = s;
      abs_cs[j] = sa;
      constant[j] = lo == hi;
    }
    cs_f[j] = static_cast<float>(s);
  }
  flush_count(bad, nonfinite);
}

// The influence screen: infl = S fa - colsum fb (+ pen: -inf for rows that never qualify),
// with margin 1e-6 |colsum| (max fa + max fb) for the float32 product.
struct InfluencePolicy {
  const float* fa;
  const float* fb;
  const float* pen;
  const uint8_t* valid_row;
  const int64_t* n_in;
  const double* cs;
  const float* cs_f;
  const double* abs_cs;
  const uint8_t* constant;
  const unsigned* ab_max;
  int64_t M;

  __device__ bool skip(int64_t j) const { return constant[j] != 0; }
  __device__ bool pass(float s, int64_t i, int64_t j, float thr) const {
    return s * fa[i] - cs_f[j] * fb[i] + pen[i] >= thr;
  }
  __device__ bool valid(int64_t i, int64_t) const { return valid_row[i] != 0; }
  __device__ double value(float s, int64_t i, int64_t j) const {
    return influence_value(s, cs[j], n_in[i], M - n_in[i]);
  }
  __device__ double offset(int64_t j) const {
    const double ab = static_cast<double>(__uint_as_float(ab_max[0])) +
                      static_cast<double>(__uint_as_float(ab_max[1]));
    return -1e-6 * abs_cs[j] * ab;
  }
};

__global__ void finalize_kernel(int64_t T, int64_t N, int64_t k, int64_t chunks,
                                const uint8_t* __restrict__ constant,
                                const uint8_t* __restrict__ valid, screened::Lists l,
                                double* vals, int64_t v0, int64_t v1, int64_t* idx,
                                int64_t i0s, int64_t i1s) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < T;
       j += int64_t(gridDim.x) * blockDim.x) {
    TopK h{l.hv + j * k, l.hi + j * k, k, 0};
    if (constant[j]) {  // infl == 0 for every example: the first k that qualify
      for (int64_t i = 0; i < N && h.n < k; ++i) {
        if (valid[i]) h.push(0.0, i);
      }
    } else {
      screened::merge_chunks(h, l, j, T, k, chunks);
    }
    h.sort();
    for (int64_t r = 0; r < k; ++r) {
      vals[j * v0 + r * v1] = r < h.n ? h.v[r] : NAN;
      idx[j * i0s + r * i1s] = r < h.n ? h.i[r] : -1;
    }
  }
}

template <class T>
__global__ void memorization_kernel(const T* __restrict__ s, int64_t s0, int64_t s1,
                                    const uint8_t* __restrict__ keep, int64_t k0, int64_t k1,
                                    int64_t M, int64_t N, double* out, int64_t o0,
                                    int64_t* n_in, int64_t n0,
                                    unsigned long long* __restrict__ counts) {
  long long bad = 0, empty = 0;
  for (int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; n < N;
       n += int64_t(gridDim.x) * blockDim.x) {
    double s_in = 0.0, s_out = 0.0;
    int64_t c = 0;
    for (int64_t m = 0; m < M; ++m) {
      const double v = Val<T>::get(s + m * s0 + n * s1);
      const bool in = keep[m * k0 + n * k1] != 0;
      bad += !is_finite(v);
      s_in += in ? v : 0.0;
      s_out += in ? 0.0 : v;
      c += in;
    }
    const bool side_empty = c == 0 || c == M;
    empty += side_empty;
    out[n * o0] = side_empty ? NAN : memorization_value(s_in, c, s_out, M - c);
    n_in[n * n0] = c;
  }
  flush_count(bad, counts);
  flush_count(empty, counts + 1);
}

template <class Fn>
void dispatch_value_dtype(DType t, const char* name, Fn&& fn) {
  switch (t) {
    case DType::f16: fn(static_cast<const Half*>(nullptr)); return;
    case DType::bf16: fn(static_cast<const BFloat16*>(nullptr)); return;
    case DType::f32: fn(static_cast<const float*>(nullptr)); return;
    case DType::f64: fn(static_cast<const double*>(nullptr)); return;
    default: throw InputError(std::string(name) + ": unsupported dtype on the GPU "
                              "(expected float16/bfloat16/float32/float64 or uint8/bool)");
  }
}

template <class Fn>
void dispatch_signal(DType t, const char* name, Fn&& fn) {
  if (t == DType::u8 || t == DType::b8) {
    fn(static_cast<const uint8_t*>(nullptr));
    return;
  }
  dispatch_value_dtype(t, name, fn);
}

}  // namespace

RiskStatus memorization(const MemorizationArgs& a, std::uintptr_t stream_handle) {
  DeviceGuard guard(a.signal.device_id);
  cudaStream_t stream = as_stream(stream_handle);
  const int64_t M = a.signal.shape[0], N = a.signal.shape[1];
  Counters counts(2, stream);
  dispatch_signal(a.signal.dtype, "correct", [&](auto tag) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    const int grid = grid_size(N, 256, 4);
    memorization_kernel<T><<<grid, 256, 0, stream>>>(
        a.signal.ptr<T>(), a.signal.strides[0], a.signal.strides[1], a.keep.ptr<uint8_t>(),
        a.keep.strides[0], a.keep.strides[1], M, N, a.out.ptr<double>(), a.out.strides[0],
        a.n_in.ptr<int64_t>(), a.n_in.strides[0], counts.data());
    check_launch("memorization_kernel");
  });
  const auto c = counts.fetch();
  return {c[0], c[1], 0};
}

RiskStatus influence(const InfluenceArgs& a, std::uintptr_t stream_handle) {
  DeviceGuard guard(a.keep.device_id);
  cudaStream_t stream = as_stream(stream_handle);
  const int64_t M = a.keep.shape[0], N = a.keep.shape[1], T = a.c.shape[1];
  const int64_t k = a.vals.shape[1];
  const int64_t Np = (N + kBI - 1) / kBI * kBI, Tp = (T + kBJ - 1) / kBJ * kBJ;

  DeviceBuffer kf(sizeof(float) * M * Np, stream), cf(sizeof(float) * M * Tp, stream);
  DeviceBuffer n_in(sizeof(int64_t) * N, stream);
  DeviceBuffer fa(sizeof(float) * Np, stream), fb(sizeof(float) * Np, stream),
      pen(sizeof(float) * Np, stream), valid(Np, stream);
  DeviceBuffer cs(sizeof(double) * T, stream), abs_cs(sizeof(double) * T, stream),
      cs_f(sizeof(float) * Tp, stream), constant(T, stream);
  DeviceBuffer ab_max(2 * sizeof(unsigned), stream);
  check(cudaMemsetAsync(ab_max.as<unsigned>(), 0, 2 * sizeof(unsigned), stream), "cudaMemsetAsync");
  Counters counts(2, stream);  // nonfinite, empty

  row_stats_kernel<<<grid_size(Np, 256, 4), 256, 0, stream>>>(
      a.keep.ptr<uint8_t>(), a.keep.strides[0], a.keep.strides[1], M, N, Np, kf.as<float>(),
      n_in.as<int64_t>(), fa.as<float>(), fb.as<float>(), pen.as<float>(), valid.as<uint8_t>(),
      ab_max.as<unsigned>(), counts.data() + 1);
  check_launch("row_stats_kernel");
  dispatch_signal(a.c.dtype, "correct_test", [&](auto tag) {
    using V = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    col_stats_kernel<V><<<grid_size(Tp, 256, 4), 256, 0, stream>>>(
        a.c.ptr<V>(), a.c.strides[0], a.c.strides[1], M, T, Tp, cf.as<float>(), cs.as<double>(),
        cs_f.as<float>(), abs_cs.as<double>(), constant.as<uint8_t>(), counts.data());
    check_launch("col_stats_kernel");
  });
  const auto c = counts.fetch();
  RiskStatus st{c[0], c[1], 0, "cuda"};
  if (st.nonfinite) return st;

  const InfluencePolicy pol{fa.as<float>(), fb.as<float>(), pen.as<float>(), valid.as<uint8_t>(),
                            n_in.as<int64_t>(), cs.as<double>(), cs_f.as<float>(),
                            abs_cs.as<double>(), constant.as<uint8_t>(), ab_max.as<unsigned>(), M};
  screened::screened_topk(
      kf.as<float>(), cf.as<float>(), M, N, T, k, pol, stream,
      [&](const screened::Lists& lists, int64_t chunks) {
        finalize_kernel<<<grid_size(T, 128, 4), 128, 0, stream>>>(
            T, N, k, chunks, constant.as<uint8_t>(), valid.as<uint8_t>(), lists,
            a.vals.ptr<double>(), a.vals.strides[0], a.vals.strides[1], a.idx.ptr<int64_t>(),
            a.idx.strides[0], a.idx.strides[1]);
        check_launch("finalize_kernel");
      });
  // The scratch buffers are freed in stream order; the outputs are final once the
  // caller's stream reaches this point (as with every kernel on the caller's stream).
  return st;
}

}  // namespace cuda
}  // namespace miakit
