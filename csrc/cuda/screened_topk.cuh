// A float32 matrix product that is never stored, on the GPU: the machinery behind influence
// top-k (influence.cu) and exact nearest neighbours (knn.cu), twin of cpu/screened_gemm.h.
//
// For P = A^T B with A [inner, Np] and B [inner, Tp] (float32, padded to the tile sizes), a
// shared-memory tiled SGEMM computes one 128 x 64 tile at a time; each tile is screened
// against its columns' running thresholds and the few candidates are evaluated in float64
// by the caller's policy and pushed into per-column top-k lists (include/miakit/influence.h)
// in global scratch. A block owns a column tile and a contiguous chunk of row tiles,
// visited in increasing order, so each (chunk, column) list has one writer; the caller's
// finalize kernel merges the chunks (merge_chunks).
//
// A policy is a small struct passed by value to the kernel, with device methods
//   bool skip(int64_t j)                         column settled without the product;
//   bool pass(float p, int64_t i, int64_t j, float thr)   the float screen;
//   bool valid(int64_t i, int64_t j)             row i may enter column j's list;
//   double value(float p, int64_t i, int64_t j)  the exact float64 value;
//   double offset(int64_t j)                     threshold = worst held value + offset.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "cuda/common.cuh"
#include "miakit/influence.h"

namespace miakit {
namespace cuda {
namespace screened {

constexpr int kBI = 128, kBJ = 64, kBK = 16, kTI = 8, kTJ = 4, kThreads = 256;

__device__ __forceinline__ float threshold(const TopK& h, double offset) {
  if (h.n < h.k) return -INFINITY;
  return __double2float_rd(h.v[0] + offset);
}

struct Lists {
  double* hv;
  int64_t* hi;
  int64_t* hn;
};

template <class Policy>
__global__ void __launch_bounds__(kThreads)
    tiles_kernel(const float* __restrict__ A, const float* __restrict__ B, int64_t inner,
                 int64_t Np, int64_t Tp, int64_t T, int64_t k, int64_t tiles_per_chunk,
                 int64_t n_itiles, Policy pol, Lists out) {
  __shared__ float As[kBK][kBI];
  __shared__ float Bs[kBK][kBJ];
  __shared__ float Ss[kBJ][kBI + 1];
  __shared__ float thr_s[kBJ];
  __shared__ int64_t hn_s[kBJ];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int warp = tid / 32, lane = tid % 32;
  const int64_t j0 = int64_t(blockIdx.x) * kBJ;
  const int64_t chunk = blockIdx.y;
  const int64_t it0 = chunk * tiles_per_chunk;
  const int64_t it1 = min(n_itiles, it0 + tiles_per_chunk);
  if (tid < kBJ) {
    thr_s[tid] = -INFINITY;
    hn_s[tid] = 0;
  }
  __syncthreads();
  for (int64_t it = it0; it < it1; ++it) {
    const int64_t i0 = it * kBI;
    float acc[kTI][kTJ];
#pragma unroll
    for (int r = 0; r < kTI; ++r)
#pragma unroll
      for (int c = 0; c < kTJ; ++c) acc[r][c] = 0.0f;
    for (int64_t m0 = 0; m0 < inner; m0 += kBK) {
      for (int e = tid; e < kBK * kBI; e += kThreads) {
        const int r = e / kBI, c = e % kBI;
        const int64_t m = m0 + r;
        As[r][c] = m < inner ? A[m * Np + i0 + c] : 0.0f;
      }
      for (int e = tid; e < kBK * kBJ; e += kThreads) {
        const int r = e / kBJ, c = e % kBJ;
        const int64_t m = m0 + r;
        Bs[r][c] = m < inner ? B[m * Tp + j0 + c] : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kBK; ++kk) {
        float av[kTI], bv[kTJ];
#pragma unroll
        for (int r = 0; r < kTI; ++r) av[r] = As[kk][ty * kTI + r];
#pragma unroll
        for (int c = 0; c < kTJ; ++c) bv[c] = Bs[kk][tx * kTJ + c];
#pragma unroll
        for (int r = 0; r < kTI; ++r)
#pragma unroll
          for (int c = 0; c < kTJ; ++c) acc[r][c] = fmaf(av[r], bv[c], acc[r][c]);
      }
      __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < kTI; ++r)
#pragma unroll
      for (int c = 0; c < kTJ; ++c) Ss[tx * kTJ + c][ty * kTI + r] = acc[r][c];
    __syncthreads();
    // Screening: warp w owns columns 8w .. 8w + 7; rows in increasing order.
    for (int q = 0; q < kBJ / 8; ++q) {
      const int jj = warp * (kBJ / 8) + q;
      const int64_t j = j0 + jj;
      if (j >= T || pol.skip(j)) continue;
      double* hvj = out.hv + (chunk * T + j) * k;
      int64_t* hij = out.hi + (chunk * T + j) * k;
      const double offset = pol.offset(j);
      for (int h = 0; h < kBI / 32; ++h) {
        const int rr = h * 32 + lane;
        const bool pass = pol.pass(Ss[jj][rr], i0 + rr, j, thr_s[jj]);
        unsigned bits = __ballot_sync(kFullMask, pass);
        if (lane == 0) {
          while (bits) {
            const int b = __ffs(bits) - 1;
            bits &= bits - 1;
            const int64_t ii = i0 + h * 32 + b;
            if (!pol.valid(ii, j)) continue;
            TopK t{hvj, hij, k, hn_s[jj]};
            const double v = pol.value(Ss[jj][h * 32 + b], ii, j);
            if (t.accepts(v, ii)) {
              t.push(v, ii);
              hn_s[jj] = t.n;
              thr_s[jj] = threshold(t, offset);
            }
          }
        }
        __syncwarp();
      }
    }
    __syncthreads();
  }
  if (tid < kBJ && j0 + tid < T) out.hn[chunk * T + j0 + tid] = hn_s[tid];
}

// Column j's list of chunk 0 (already in h, with h.n = hn[j]) absorbs the other chunks'.
__device__ __forceinline__ void merge_chunks(TopK& h, const Lists& l, int64_t j, int64_t T,
                                             int64_t k, int64_t chunks) {
  h.n = l.hn[j];
  for (int64_t c = 1; c < chunks; ++c) {
    const double* cv = l.hv + (c * T + j) * k;
    const int64_t* ci = l.hi + (c * T + j) * k;
    for (int64_t e = 0; e < l.hn[c * T + j]; ++e) h.push(cv[e], ci[e]);
  }
}

// Runs the screened product of A [inner, Np] and B [inner, Tp] (Np, Tp multiples of kBI, kBJ)
// for N rows and T columns, lists of length k, then finalize(lists, chunks) while the
// scratch lists are alive (the caller launches its finalize kernel there).
template <class Policy, class Finalize>
void screened_topk(const float* A, const float* B, int64_t inner, int64_t N, int64_t T,
                   int64_t k, const Policy& pol, cudaStream_t stream, Finalize&& finalize) {
  const int64_t Np = (N + kBI - 1) / kBI * kBI, Tp = (T + kBJ - 1) / kBJ * kBJ;
  int device = 0, sms = 1;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
        "cudaDeviceGetAttribute");
  // Enough row chunks to give every SM four blocks, within 256 MiB of lists.
  const int64_t n_jtiles = Tp / kBJ, n_itiles = Np / kBI;
  int64_t chunks = std::max<int64_t>(1, (4 * int64_t(sms) + n_jtiles - 1) / n_jtiles);
  chunks = std::min(chunks, n_itiles);
  const int64_t list_bytes = T * k * int64_t(sizeof(double) + sizeof(int64_t));
  chunks = std::max<int64_t>(
      1, std::min(chunks, (int64_t(1) << 28) / std::max<int64_t>(1, list_bytes)));
  chunks = std::min<int64_t>(chunks, 65535);
  const int64_t per_chunk = (n_itiles + chunks - 1) / chunks;
  chunks = (n_itiles + per_chunk - 1) / per_chunk;

  DeviceBuffer hv(sizeof(double) * chunks * T * k, stream),
      hi(sizeof(int64_t) * chunks * T * k, stream), hn(sizeof(int64_t) * chunks * T, stream);
  const Lists lists{hv.as<double>(), hi.as<int64_t>(), hn.as<int64_t>()};
  dim3 grid(static_cast<unsigned>(n_jtiles), static_cast<unsigned>(chunks));
  tiles_kernel<Policy><<<grid, kThreads, 0, stream>>>(A, B, inner, Np, Tp, T, k, per_chunk,
                                                      n_itiles, pol, lists);
  check_launch("screened tiles_kernel");
  finalize(lists, chunks);
  // The scratch buffers are freed in stream order, after the finalize kernel.
}

}  // namespace screened
}  // namespace cuda
}  // namespace miakit
