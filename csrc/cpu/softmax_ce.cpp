// CPU kernel of the fused softmax cross-entropy residual (kernels_train.h). Rows are
// split over threads; within a row the K heads are the contiguous, vectorized axis and
// the row's C x K values stay in L1 across the three passes (max, exp-sum, scale).
#include <algorithm>
#include <vector>

#include "parallel.h"
#include "scratch.h"
#include "isa.h"
#include "kernels_train.h"
#include "miakit/softmax_ce.h"

namespace miakit {
namespace cpu {

namespace {

// Adds the bias [C][K] to one row's logits, the first `classes` of them.
MIAKIT_ISA_BODY void add_bias_body(float* zr, const float* bias, int64_t classes, int64_t K) {
  for (int64_t c = 0; c < classes; ++c)
#pragma omp simd
    for (int64_t k = 0; k < K; ++k) zr[c * K + k] += bias[c * K + k];
}
MIAKIT_ISA_DISPATCH(void, add_bias, (float* zr, const float* bias, int64_t classes, int64_t K),
                    (zr, bias, classes, K))

// The last class of one row, [C][K], as minus the sum of the others (implied_last).
MIAKIT_ISA_BODY void fill_last_class_body(float* zr, int64_t C, int64_t K) {
  float* zl = zr + (C - 1) * K;
#pragma omp simd
  for (int64_t k = 0; k < K; ++k) zl[k] = 0.0f;
  for (int64_t c = 0; c + 1 < C; ++c)
#pragma omp simd
    for (int64_t k = 0; k < K; ++k) zl[k] -= zr[c * K + k];
}
MIAKIT_ISA_DISPATCH(void, fill_last_class, (float* zr, int64_t C, int64_t K), (zr, C, K))

// One row: logits of K heads over C classes (zr, [C][K]) -> weighted residuals in rr
// (which may be zr); adds the row's weighted loss to ls [K] and its residuals to
// gb [C][K] (float: the caller moves it into double every few rows).
MIAKIT_ISA_BODY void residual_row_body(const float* zr, float* rr, const float* wr, int64_t yr,
                                       int64_t C, int64_t K, float* mx, float* sum, float* zy,
                                       float* scale, double* ls, float* gb) {
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
    float* gc = gb + c * K;
    if (c == yr) {
#pragma omp simd
      for (int64_t k = 0; k < K; ++k) {
        const float v = rc[k] * scale[k] - wr[k];
        rc[k] = v;
        gc[k] += v;
      }
    } else {
#pragma omp simd
      for (int64_t k = 0; k < K; ++k) {
        const float v = rc[k] * scale[k];
        rc[k] = v;
        gc[k] += v;
      }
    }
  }
}
MIAKIT_ISA_DISPATCH(void, residual_row,
                    (const float* zr, float* rr, const float* wr, int64_t yr, int64_t C, int64_t K,
                     float* mx, float* sum, float* zy, float* scale, double* ls, float* gb),
                    (zr, rr, wr, yr, C, K, mx, sum, zy, scale, ls, gb))

// Adds a float partial sum into its double total and clears it.
MIAKIT_ISA_BODY void flush_partial_body(float* f, double* d, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    d[i] += static_cast<double>(f[i]);
    f[i] = 0.0f;
  }
}
MIAKIT_ISA_DISPATCH(void, flush_partial, (float* f, double* d, int64_t n), (f, d, n))

// Rows summed in float before their bias-gradient sum moves into double: a float sum of
// a few dozen residuals in [-1, 1] loses nothing the gradient needs, and a double add
// per value per row cost as much as the exponentials.
constexpr int64_t kFloatRows = 32;

// Copies the row's logits of the heads that have a destination into the head-major out.
void copy_row_out(const float* zr, int64_t C, int64_t K, const int64_t* dest, float* out,
                  int64_t head_stride) {
  for (int64_t k = 0; k < K; ++k) {
    if (dest[k] < 0) continue;
    float* o = out + dest[k] * head_stride;
    for (int64_t c = 0; c < C; ++c) o[c] = zr[c * K + k];
  }
}

}  // namespace

int64_t softmax_ce(const SoftmaxCEArgs& a) {
  const int64_t R = a.z.shape[0], C = a.z.shape[1], K = a.z.shape[2];
  float* z = a.z.ptr<float>();
  float* res = a.res.data != nullptr ? a.res.ptr<float>() : z;
  const float* bias = a.bias.data != nullptr ? a.bias.ptr<float>() : nullptr;
  float* out = a.out.data != nullptr ? a.out.ptr<float>() : nullptr;
  const int64_t* dest = out != nullptr ? a.out_heads.ptr<int64_t>() : nullptr;
  const int64_t head_stride = out != nullptr ? a.out.shape[1] * C : 0;
  const int64_t* y = a.y.ptr<int64_t>();
  const float* w = a.w.ptr<float>();
  double* loss = a.loss.ptr<double>();
  float* gbias = a.gbias.ptr<float>();
  const int64_t CK = C * K;
  const Isa isa = cpu_isa();
  // Per-thread partial sums, added in thread order afterwards: with the static schedule
  // the result is the same bits on every run with the same number of threads.
  const int threads = max_threads();
  // Each thread's partials start on their own cache line: with few heads they are a
  // few dozen bytes, and threads sharing a line would stall on every row.
  const int64_t stride = (K + CK + 7) / 8 * 8 + 8;
  std::vector<double> part(static_cast<size_t>(threads) * stride, 0.0);
  int64_t bad = 0;
  // Each thread's per-head row values and float partial of the bias gradient, allocated
  // here (scratch.h).
  ThreadBuffers<float> rowvals(threads, {4, K}, "z"), gbfs(threads, {CK}, "z");
#pragma omp parallel num_threads(threads) reduction(+ : bad)
  {
    const int tid = thread_id();
    float* const mx = rowvals.of(tid);
    float* const sum = mx + K;
    float* const zy = sum + K;
    float* const scale = zy + K;
    float* const gbf = gbfs.of(tid);
    std::fill(gbf, gbf + CK, 0.0f);
    double* ls = part.data() + static_cast<size_t>(tid) * stride;
    double* gb = ls + K;
    int64_t in_float = 0;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      if (bias != nullptr) add_bias(isa, z + r * CK, bias, a.implied_last ? C - 1 : C, K);
      if (a.implied_last) fill_last_class(isa, z + r * CK, C, K);
      if (out != nullptr)  // before an in-place residual replaces the logits
        copy_row_out(z + r * CK, C, K, dest, out + (a.row0 + r) * C, head_stride);
      const int64_t yr = y[r];
      if (yr < 0 || yr >= C) {
        ++bad;
        if (res != z) std::fill(res + r * CK, res + (r + 1) * CK, 0.0f);
        continue;
      }
      residual_row(isa, z + r * CK, res + r * CK, w + r * K, yr, C, K, mx, sum, zy, scale, ls,
                   gbf);
      if (++in_float == kFloatRows) {
        flush_partial(isa, gbf, gb, CK);
        in_float = 0;
      }
    }
    flush_partial(isa, gbf, gb, CK);
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
