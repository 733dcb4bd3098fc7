// CUDA twin of cpu/softmax_ce.cpp (kernels_train.h), with the float32 exp and log of
// include/miakit/softmax_ce.h. A block takes a chunk of rows; its threads take the heads
// (consecutive k: coalesced reads of z), each walking its chunk's rows, then summing the
// chunk's residual per class for the bias gradient with one atomic per (class, head).
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/common.cuh"
#include "kernels_train.h"
#include "miakit/softmax_ce.h"

namespace miakit {
namespace cuda {

namespace {

constexpr int64_t kRowsPerBlock = 64;

__global__ void softmax_ce_kernel(float* z, float* res, const int64_t* y, const float* w,
                                  const float* bias, int64_t R, int64_t C, int64_t K,
                                  bool implied_last,
                                  float* out, const int64_t* dest, int64_t out_rows,
                                  int64_t row0, double* loss, float* gbias,
                                  unsigned long long* bad) {
  const int64_t r0 = blockIdx.x * kRowsPerBlock;
  const int64_t r1 = min(R, r0 + kRowsPerBlock);
  long long mine = 0;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    double ls = 0.0;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t yr = y[r];
      float* zr = z + r * C * K + k;
      float* rr = res + r * C * K + k;
      if (bias != nullptr)
        for (int64_t c = 0; c < (implied_last ? C - 1 : C); ++c) zr[c * K] += bias[c * K + k];
      if (implied_last) {
        float last = 0.0f;
        for (int64_t c = 0; c + 1 < C; ++c) last -= zr[c * K];
        zr[(C - 1) * K] = last;
      }
      if (out != nullptr && dest[k] >= 0) {  // before an in-place residual replaces them
        float* o = out + (dest[k] * out_rows + row0 + r) * C;
        for (int64_t c = 0; c < C; ++c) o[c] = zr[c * K];
      }
      if (yr < 0 || yr >= C) {
        mine += k == 0;
        if (rr != zr)
          for (int64_t c = 0; c < C; ++c) rr[c * K] = 0.0f;
        continue;
      }
      const float wr = w[r * K + k];
      float mx = zr[0];
      for (int64_t c = 1; c < C; ++c) mx = fmaxf(mx, zr[c * K]);
      const float zy = zr[yr * K];
      float sum = 0.0f;
      for (int64_t c = 0; c < C; ++c) {
        const float e = expf_nonpos(zr[c * K] - mx);
        rr[c * K] = e;
        sum += e;
      }
      ls += static_cast<double>(wr * (mx + logf_ge1(sum) - zy));
      const float scale = wr / sum;
      for (int64_t c = 0; c < C; ++c) rr[c * K] = rr[c * K] * scale - (c == yr ? wr : 0.0f);
    }
    atomicAdd(loss + k, ls);
    for (int64_t c = 0; c < C; ++c) {
      float acc = 0.0f;
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t yr = y[r];
        if (yr >= 0 && yr < C) acc += res[r * C * K + c * K + k];
      }
      atomicAdd(gbias + c * K + k, acc);
    }
  }
  flush_count(mine, bad);
}

}  // namespace

int64_t softmax_ce(const SoftmaxCEArgs& a, std::uintptr_t stream_handle) {
  DeviceGuard guard(a.z.device_id);
  cudaStream_t stream = as_stream(stream_handle);
  const int64_t R = a.z.shape[0], C = a.z.shape[1], K = a.z.shape[2];
  if (R == 0 || C == 0 || K == 0) return 0;
  const int threads = static_cast<int>(std::min<int64_t>(256, ((K + 31) / 32) * 32));
  const int64_t blocks = (R + kRowsPerBlock - 1) / kRowsPerBlock;
  Counters bad(1, stream);
  softmax_ce_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      a.z.ptr<float>(), a.res.data != nullptr ? a.res.ptr<float>() : a.z.ptr<float>(),
      a.y.ptr<int64_t>(), a.w.ptr<float>(),
      a.bias.data != nullptr ? a.bias.ptr<float>() : nullptr, R, C, K, a.implied_last,
      a.out.data != nullptr ? a.out.ptr<float>() : nullptr,
      a.out.data != nullptr ? a.out_heads.ptr<int64_t>() : nullptr,
      a.out.data != nullptr ? a.out.shape[1] : 0, a.row0, a.loss.ptr<double>(),
      a.gbias.ptr<float>(), bad.data());
  check_launch("softmax_ce_kernel");
  return static_cast<int64_t>(bad.fetch()[0]);
}

}  // namespace cuda
}  // namespace miakit
