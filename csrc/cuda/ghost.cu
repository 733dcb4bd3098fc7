// CUDA twin of cpu/ghost.cpp: per-example squared gradient norms of linear layers with
// the forms of include/miakit/ghost.h. One 16 x 16 block per example (grid-stride); the
// ghost form walks the lower triangle of 16 x 16 tiles of A A^T and B B^T, the direct
// form the tiles of B^T A, each tile accumulated from shared-memory tiles of the inputs,
// so nothing of size T x T or p x d is stored. Sums are double, reduced over the block.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/common.cuh"
#include "kernels_risk.h"
#include "miakit/ghost.h"

namespace miakit {
namespace cuda {

namespace {

constexpr int kTile = 16;

// Entry (i0 + ty, j0 + tx) of sum_k L(k, i) R(k, j), with L(k, i) = L[lb + k lk + i li],
// R likewise, zero outside [0, K) x [0, I) x [0, J). Every thread of the block calls it.
__device__ double tile_acc(const void* L, DType lt, int64_t lb, int64_t lk, int64_t li,
                           const void* R, DType rt, int64_t rb, int64_t rk, int64_t rj,
                           int64_t K, int64_t I, int64_t J, int64_t i0, int64_t j0,
                           double (*Ls)[kTile + 1], double (*Rs)[kTile + 1]) {
  const int tx = threadIdx.x, ty = threadIdx.y;
  // let consecutive threads read consecutive addresses when k is the contiguous axis
  const bool lkf = lk == 1, rkf = rk == 1;
  double acc = 0.0;
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    {
      const int kk = lkf ? tx : ty, ii = lkf ? ty : tx;
      const int64_t k = k0 + kk, i = i0 + ii;
      Ls[kk][ii] = (k < K && i < I) ? load_as_double(L, lt, lb + k * lk + i * li) : 0.0;
    }
    {
      const int kk = rkf ? tx : ty, jj = rkf ? ty : tx;
      const int64_t k = k0 + kk, j = j0 + jj;
      Rs[kk][jj] = (k < K && j < J) ? load_as_double(R, rt, rb + k * rk + j * rj) : 0.0;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTile; ++kk) acc += Ls[kk][ty] * Rs[kk][tx];
    __syncthreads();
  }
  return acc;
}

struct View3 {
  const void* data;
  DType dt;
  int64_t s0, s1, s2;
};

__global__ void ghost_kernel(View3 A, View3 B, int64_t N, int64_t T, int64_t d, int64_t p,
                             bool want_w, bool want_b, bool gram, double* out, int64_t o0,
                             unsigned long long* counts) {
  __shared__ double Ls[kTile][kTile + 1], Rs[kTile][kTile + 1];
  __shared__ double red[kTile * kTile / 32];
  const int tid = threadIdx.y * kTile + threadIdx.x;
  const int nthreads = kTile * kTile;
  long long nonfinite = 0;
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const int64_t ab = n * A.s0, bb = n * B.s0;
    int bad = 0;
    for (int64_t i = tid; i < T * p; i += nthreads)
      bad |= !is_finite(load_as_double(B.data, B.dt, bb + (i / p) * B.s1 + (i % p) * B.s2));
    if (want_w) {
      for (int64_t i = tid; i < T * d; i += nthreads)
        bad |= !is_finite(load_as_double(A.data, A.dt, ab + (i / d) * A.s1 + (i % d) * A.s2));
    }
    if (__syncthreads_or(bad)) {
      if (tid == 0) {
        out[n * o0] = NAN;
        ++nonfinite;
      }
      continue;
    }
    double total = 0.0;
    if (want_w && T > 0) {
      if (gram) {
        for (int64_t t0 = 0; t0 < T; t0 += kTile) {
          for (int64_t s0 = 0; s0 <= t0; s0 += kTile) {
            // (A A^T)[t, s] = sum_e A[t, e] A[s, e]: k = e, i = t, j = s
            const double x = tile_acc(A.data, A.dt, ab, A.s2, A.s1, A.data, A.dt, ab, A.s2,
                                      A.s1, d, T, T, t0, s0, Ls, Rs);
            const double y = tile_acc(B.data, B.dt, bb, B.s2, B.s1, B.data, B.dt, bb, B.s2,
                                      B.s1, p, T, T, t0, s0, Ls, Rs);
            total += (s0 == t0 ? 1.0 : 2.0) * x * y;
          }
        }
      } else {
        for (int64_t i0 = 0; i0 < p; i0 += kTile) {
          for (int64_t j0 = 0; j0 < d; j0 += kTile) {
            // (B^T A)[i, j] = sum_t B[t, i] A[t, j]
            const double m = tile_acc(B.data, B.dt, bb, B.s1, B.s2, A.data, A.dt, ab, A.s1,
                                      A.s2, T, p, d, i0, j0, Ls, Rs);
            total += m * m;
          }
        }
      }
    }
    if (want_b) {
      for (int64_t i = tid; i < p; i += nthreads) {
        double s = 0.0;
        for (int64_t t = 0; t < T; ++t) s += load_as_double(B.data, B.dt, bb + t * B.s1 + i * B.s2);
        total += s * s;
      }
    }
    total = warp_sum(total);
    if ((tid & 31) == 0) red[tid / 32] = total;
    __syncthreads();
    if (tid == 0) {
      double s = 0.0;
      for (int w = 0; w < nthreads / 32; ++w) s += red[w];
      out[n * o0] = s;
    }
    __syncthreads();
  }
  flush_count(nonfinite, counts);  // nonzero only in thread 0; every warp takes part
}

}  // namespace

RiskStatus ghost_norms(const GhostArgs& a, std::uintptr_t stream_handle) {
  DeviceGuard guard(a.a.device_id);
  cudaStream_t stream = as_stream(stream_handle);
  const int64_t N = a.a.shape[0], T = a.a.shape[1], d = a.a.shape[2], p = a.g.shape[2];
  RiskStatus st;
  if (N == 0) return st;
  Counters counts(1, stream);
  const View3 A{a.a.data, a.a.dtype, a.a.strides[0], a.a.strides[1], a.a.strides[2]};
  const View3 B{a.g.data, a.g.dtype, a.g.strides[0], a.g.strides[1], a.g.strides[2]};
  const int blocks = grid_size(N, 1, 8);
  ghost_kernel<<<blocks, dim3(kTile, kTile), 0, stream>>>(
      A, B, N, T, d, p, a.want_w, a.want_b, ghost_use_gram(T, d, p), a.out.ptr<double>(),
      a.out.strides[0], counts.data());
  check_launch("ghost_kernel");
  st.nonfinite = counts.fetch()[0];
  return st;
}

}  // namespace cuda
}  // namespace miakit
