// CPU kernels for label memorization and influence (docs/methods/memorization.md).
//
// Influence top-k. With K = keep [M, N] (0/1) and C = correct_test [M, T],
//   infl[i, j] = S[i, j] / n_in[i] - (colsum[j] - S[i, j]) / n_out[i],   S = K^T C,
// so one matrix product gives both masked means. S is computed tile by tile by the screened
// product of screened_gemm.h and never stored beyond one register tile: each tile is
// screened against the running top-k threshold of its test columns with a cheap float
// bound; only the few entries that can enter a list are evaluated exactly in float64 and
// pushed. Products are accumulated in float32: exact for 0/1 inputs (M < 2^24), and
// within about M * 6e-8 relative for probabilities.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "kernels_risk.h"
#include "miakit/influence.h"
#include "parallel.h"
#include "scratch.h"
#include "screened_gemm.h"

namespace miakit {
namespace cpu {

namespace {

// Everything derived from keep and C before the product: per-row factors and counts,
// per-column sums, screening margins, constant columns.
struct Prep {
  int64_t M = 0, N = 0, T = 0, k = 0;
  std::vector<int64_t> n_in;
  std::vector<float> fa, fb, pen;  // padded to a multiple of mr
  std::vector<uint8_t> valid;
  std::vector<double> cs, margin;
  std::vector<float> cs_f;         // padded to a multiple of nr
  std::vector<uint8_t> constant;   // every model gives the same value: infl == 0
  int64_t n_valid = 0;
};

}  // namespace

RiskStatus influence(const InfluenceArgs& args) {
  const Tensor& K = args.keep;
  const Tensor& C = args.c;
  const int64_t M = K.shape[0], N = K.shape[1], T = C.shape[1], k = args.vals.shape[1];
  RiskStatus st;
  const Micro micro = pick_micro();
  st.kernel = micro.name;
  const int MR = micro.mr, NR = micro.nr;
  const int64_t n_pad = (N + MR - 1) / MR * MR;
  const int64_t t_pad = (T + NR - 1) / NR * NR;
  const uint8_t* keep = K.ptr<uint8_t>();

  Prep p;
  p.n_in.assign(N, 0);
  p.fa.assign(n_pad, 0.0f);
  p.fb.assign(n_pad, 0.0f);
  p.pen.assign(n_pad, -kScreenInf);
  p.valid.assign(n_pad, 0);
  p.cs.assign(T, 0.0);
  p.margin.assign(T, 0.0);
  p.cs_f.assign(t_pad, 0.0f);
  p.constant.assign(T, 0);
  std::vector<double> abs_cs(T, 0.0);
  int64_t nonfinite = 0, empty = 0;
  double amax = 0.0, bmax = 0.0;
  // Row and column statistics in blocks of rows (columns), so that keep (correct_test) is
  // read row by row; each thread's per-column extremes of a block, allocated here.
  constexpr int64_t kRowBlock = 1024;
  const int threads = team_for(std::max(N, T) / kRowBlock + 1);
  ThreadBuffers<double> los(threads, {kRowBlock}, "correct_test"),
      his(threads, {kRowBlock}, "correct_test");

#pragma omp parallel num_threads(threads) reduction(+ : nonfinite, empty) \
    reduction(max : amax, bmax)
  {
    double* lo = los.of(thread_id());
    double* hi = his.of(thread_id());
#pragma omp for schedule(static)
    for (int64_t i0 = 0; i0 < N; i0 += kRowBlock) {
      const int64_t i1 = std::min(N, i0 + kRowBlock);
      for (int64_t m = 0; m < M; ++m) {
        const uint8_t* row = keep + m * K.strides[0];
        for (int64_t i = i0; i < i1; ++i) p.n_in[i] += row[i * K.strides[1]] != 0;
      }
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t ni = p.n_in[i], no = M - ni;
        if (ni == 0 || no == 0) {
          ++empty;
          continue;
        }
        const double a = 1.0 / ni + 1.0 / no, b = 1.0 / no;
        p.fa[i] = static_cast<float>(a);
        p.fb[i] = static_cast<float>(b);
        p.pen[i] = 0.0f;
        p.valid[i] = 1;
        amax = std::max(amax, a);
        bmax = std::max(bmax, b);
      }
    }
    // Column statistics of the float32 values the product will use.
#pragma omp for schedule(static)
    for (int64_t j0 = 0; j0 < T; j0 += kRowBlock) {
      const int64_t j1 = std::min(T, j0 + kRowBlock);
      std::fill(lo, lo + (j1 - j0), INFINITY);
      std::fill(hi, hi + (j1 - j0), -INFINITY);
      for (int64_t m = 0; m < M; ++m) {
        for (int64_t j = j0; j < j1; ++j) {
          const float f = static_cast<float>(
              load_as_double(C.data, C.dtype, m * C.strides[0] + j * C.strides[1]));
          nonfinite += !std::isfinite(f);
          p.cs[j] += f;
          abs_cs[j] += std::fabs(f);
          lo[j - j0] = std::min<double>(lo[j - j0], f);
          hi[j - j0] = std::max<double>(hi[j - j0], f);
        }
      }
      for (int64_t j = j0; j < j1; ++j) {
        p.cs_f[j] = static_cast<float>(p.cs[j]);
        p.constant[j] = lo[j - j0] == hi[j - j0];
      }
    }
  }
  st.nonfinite = nonfinite;
  st.empty = empty;
  if (nonfinite) return st;
  p.n_valid = N - empty;
  for (int64_t j = 0; j < T; ++j) p.margin[j] = 1e-6 * abs_cs[j] * (amax + bmax);

  // Running lists, one per test column, and each column's screening threshold.
  std::vector<double> hv(static_cast<size_t>(T * k));
  std::vector<int64_t> hi(static_cast<size_t>(T * k));
  std::vector<int64_t> hn(T, 0);
  std::vector<float> thr(t_pad, kScreenInf);  // padding columns never pass
  for (int64_t j = 0; j < T; ++j) {
    if (p.constant[j]) {
      // A constant column gives infl = mean - mean = 0 for every example: the list is
      // the first k examples that qualify; screening is switched off (+inf).
      TopK h{&hv[j * k], &hi[j * k], k, 0};
      for (int64_t i = 0; i < N && h.n < k; ++i) {
        if (p.valid[i]) h.push(0.0, i);
      }
      hn[j] = h.n;
    } else {
      thr[j] = -kScreenInf;
    }
  }

  // The product S = K^T C, screened: infl = S fa - colsum fb (+ pen: -inf for rows that
  // never qualify) against each column's threshold; candidates are evaluated in float64.
  auto pack_rows = [&](int64_t i0, float* dst) {
    const int64_t nr = std::max<int64_t>(0, std::min<int64_t>(MR, N - i0));
    for (int64_t m = 0; m < M; ++m) {
      const uint8_t* row = keep + m * K.strides[0];
      float* d = dst + m * MR;
      int64_t r = 0;
      for (; r < nr; ++r) d[r] = row[(i0 + r) * K.strides[1]] != 0 ? 1.0f : 0.0f;
      for (; r < MR; ++r) d[r] = 0.0f;
    }
  };
  auto pack_cols = [&](int64_t j0, int64_t j1, float* dst) {
    for (int64_t m = 0; m < M; ++m) {
      for (int c = 0; c < NR; ++c) {
        const int64_t j = j0 + c;
        dst[m * NR + c] = j < j1 ? static_cast<float>(load_as_double(
                                       C.data, C.dtype, m * C.strides[0] + j * C.strides[1]))
                                 : 0.0f;
      }
    }
  };
  auto skip_col = [&](int64_t j) { return p.constant[j] != 0; };
  auto on_candidate = [&](int64_t j, int64_t i, float s) {
    if (!p.valid[i]) return;
    TopK h{&hv[j * k], &hi[j * k], k, hn[j]};
    const double v = influence_value(s, p.cs[j], p.n_in[i], M - p.n_in[i]);
    if (!h.accepts(v, i)) return;
    h.push(v, i);
    hn[j] = h.n;
    thr[j] = screen_threshold(h, -p.margin[j]);
  };
  screened_product("keep", micro, N, T, M, p.fa.data(), p.fb.data(), p.pen.data(), p.cs_f.data(),
                   thr.data(), pack_rows, pack_cols, skip_col, on_candidate);

  // Sorted lists to the outputs; NaN / -1 where fewer than k examples qualify.
  write_sorted_lists(hv, hi, hn, k, args.vals, args.idx, 1.0);
  return st;
}

RiskStatus memorization(const MemorizationArgs& a) {
  const Tensor& S = a.signal;
  const Tensor& K = a.keep;
  const int64_t M = S.shape[0], N = S.shape[1];
  const uint8_t* keep = K.ptr<uint8_t>();
  double* out = a.out.ptr<double>();
  int64_t* nin = a.n_in.ptr<int64_t>();
  int64_t nonfinite = 0, empty = 0;
  constexpr int64_t kBlock = 2048;  // examples per block: the sums stay in L1/L2
  const int threads = team_for((N + kBlock - 1) / kBlock);
  ThreadBuffers<double> sums(threads, {2, kBlock}, "correct");
  ThreadBuffers<int64_t> counts(threads, {kBlock}, "correct");
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : nonfinite, empty)
  for (int64_t n0 = 0; n0 < N; n0 += kBlock) {
    const int64_t n1 = std::min(N, n0 + kBlock), len = n1 - n0;
    // IN and OUT sums are kept apart (not total minus IN, which could cancel).
    double* s_in = sums.of(thread_id());
    double* s_out = s_in + kBlock;
    int64_t* c_in = counts.of(thread_id());
    std::fill(s_in, s_in + len, 0.0);
    std::fill(s_out, s_out + len, 0.0);
    std::fill(c_in, c_in + len, int64_t{0});
    for (int64_t m = 0; m < M; ++m) {
      const uint8_t* krow = keep + m * K.strides[0];
      for (int64_t n = n0; n < n1; ++n) {
        const double v = load_as_double(S.data, S.dtype, m * S.strides[0] + n * S.strides[1]);
        const bool in = krow[n * K.strides[1]] != 0;
        nonfinite += !is_finite(v);
        s_in[n - n0] += in ? v : 0.0;
        s_out[n - n0] += in ? 0.0 : v;
        c_in[n - n0] += in;
      }
    }
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t ci = c_in[n - n0], co = M - ci;
      const bool side_empty = ci == 0 || co == 0;
      empty += side_empty;
      out[n * a.out.strides[0]] =
          side_empty ? NAN : memorization_value(s_in[n - n0], ci, s_out[n - n0], co);
      nin[n * a.n_in.strides[0]] = ci;
    }
  }
  return {nonfinite, empty, 0};
}

}  // namespace cpu
}  // namespace miakit
