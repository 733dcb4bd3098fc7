// CPU kernel of the fused softmax cross-entropy residual (kernels_train.h). Rows are
// split over threads; within a row the K heads are the contiguous, vectorized axis and
// the row's C x K values stay in L1 across the three passes (max, exp-sum, scale).
#include <algorithm>
#include <vector>

#include "parallel.h"
#include "simd.h"
#include "kernels_train.h"
#include "miakit/softmax_ce.h"

namespace miakit {
namespace cpu {

namespace {

// One row: logits of K heads over C classes (zr, [C][K]) -> weighted residuals in rr
// (which may be zr); adds the row's weighted loss to ls [K] and its residuals to
// gb [C][K]. With implied_last, zr's last class is first set to minus the others' sum.
MIAKIT_CPU_CLONES void residual_row(float* zr, float* rr, const float* wr, int64_t yr,
                                    int64_t C, int64_t K, bool implied_last, float* mx,
                                    float* sum, float* zy, float* scale, double* ls,
                                    double* gb) {
  if (implied_last) {
    float* zl = zr + (C - 1) * K;
#pragma omp simd
    for (int64_t k = 0; k < K; ++k) zl[k] = 0.0f;
    for (int64_t c = 0; c + 1 < C; ++c)
#pragma omp simd
      for (int64_t k = 0; k < K; ++k) zl[k] -= zr[c * K + k];
  }
  for (int64_t k = 0; k < K; ++k) {
    mx[k] = zr[k];
    zy[k] = zr[yr * K + k];
    sum[k] = 0.0f;
  }
  for (int64_t c = 1; c < C; ++c)
#pragma omp simd
    for (int64_t k = 0; k < K; ++k) mx[k] = std::max(mx[k], zr[c * K + k]);
  for (int64_t c = 0; c < C; ++c)
#pragma omp simd
    for (int64_t k = 0; k < K; ++k) {
      const float e = expf_nonpos(zr[c * K + k] - mx[k]);
      rr[c * K + k] = e;
      sum[k] += e;
    }
#pragma omp simd
  for (int64_t k = 0; k < K; ++k) {
    ls[k] += static_cast<double>(wr[k] * (mx[k] + logf_ge1(sum[k]) - zy[k]));
    scale[k] = wr[k] / sum[k];
  }
  for (int64_t c = 0; c < C; ++c) {
    float* rc = rr + c * K;
    double* gc = gb + c * K;
    const float at_y = c == yr ? 1.0f : 0.0f;
#pragma omp simd
    for (int64_t k = 0; k < K; ++k) {
      const float v = rc[k] * scale[k] - at_y * wr[k];
      rc[k] = v;
      gc[k] += v;
    }
  }
}

}  // namespace

int64_t softmax_ce(const SoftmaxCEArgs& a) {
  const int64_t R = a.z.shape[0], C = a.z.shape[1], K = a.z.shape[2];
  float* z = a.z.ptr<float>();
  float* res = a.res.data != nullptr ? a.res.ptr<float>() : z;
  const int64_t* y = a.y.ptr<int64_t>();
  const float* w = a.w.ptr<float>();
  double* loss = a.loss.ptr<double>();
  float* gbias = a.gbias.ptr<float>();
  const int64_t CK = C * K;
  // Per-thread partial sums, added in thread order afterwards: with the static schedule
  // the result is the same bits on every run with the same number of threads.
  const int threads = max_threads();
  // Each thread's partials start on their own cache line: with few heads they are a
  // few dozen bytes, and threads sharing a line would stall on every row.
  const int64_t stride = (K + CK + 7) / 8 * 8 + 8;
  std::vector<double> part(static_cast<size_t>(threads) * stride, 0.0);
  int64_t bad = 0;
#pragma omp parallel num_threads(threads) reduction(+ : bad)
  {
    std::vector<float> mx(K), sum(K), zy(K), scale(K);
    double* ls = part.data() + static_cast<size_t>(thread_id()) * stride;
    double* gb = ls + K;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      const int64_t yr = y[r];
      if (yr < 0 || yr >= C) {
        ++bad;
        if (res != z) std::fill(res + r * CK, res + (r + 1) * CK, 0.0f);
        continue;
      }
      residual_row(z + r * CK, res + r * CK, w + r * K, yr, C, K, a.implied_last, mx.data(),
                   sum.data(), zy.data(), scale.data(), ls, gb);
    }
  }
  for (int t = 0; t < threads; ++t) {
    const double* ls = part.data() + static_cast<size_t>(t) * stride;
    for (int64_t k = 0; k < K; ++k) loss[k] += ls[k];
    for (int64_t i = 0; i < CK; ++i) gbias[i] += static_cast<float>(ls[K + i]);
  }
  return bad;
}

}  // namespace cpu
}  // namespace miakit
