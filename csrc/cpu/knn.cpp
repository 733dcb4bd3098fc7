// CPU kernel for exact k nearest neighbours (docs/methods/generative.md).
//
// d^2(q, r) = |q|^2 + |r|^2 - 2 q.r, so ranking reference rows for a query is ranking
// 2 q.r - |r|^2: one matrix product, run by the screened product of screened_gemm.h with
// rows = reference, columns = queries, inner = features, fa = 2, fb = 0, pen = -|r|^2.
// The product (float32) only screens, with the margin of include/miakit/knn.h; every entry
// that can enter a query's list is recomputed as sum_d (q_d - r_d)^2 in float64, so the
// lists hold the exact float64 distances, the lower reference index first on ties. Beyond
// the inputs and outputs, memory is the packed panels of one tile of rows and columns.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels_risk.h"
#include "miakit/influence.h"
#include "miakit/knn.h"
#include "parallel.h"
#include "screened_gemm.h"

namespace miakit {
namespace cpu {

namespace {

// Row norms |x_i|^2 in float64 and the count of elements not finite in float32 (the
// precision of the screen) or rows whose squared norm overflows it.
template <class T>
int64_t row_norms(const Tensor& x, std::vector<double>& out) {
  const int64_t n = x.shape[0], D = x.shape[1];
  const T* p = x.ptr<T>();
  out.assign(n, 0.0);
  int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad)
  for (int64_t i = 0; i < n; ++i) {
    const T* row = p + i * x.strides[0];
    double s = 0.0;
    for (int64_t d = 0; d < D; ++d) {
      const double v = Load<T>::get(row + d * x.strides[1]);
      bad += !std::isfinite(static_cast<float>(v));
      s += v * v;
    }
    bad += !std::isfinite(static_cast<float>(s));
    out[i] = s;
  }
  return bad;
}

template <class T>
RiskStatus knn_typed(const KnnArgs& a) {
  const Tensor& Qt = a.queries;
  const Tensor& Rt = a.reference;
  const int64_t Q = Qt.shape[0], R = Rt.shape[0], D = Qt.shape[1], k = a.vals.shape[1];
  RiskStatus st;
  const Micro micro = pick_micro();
  st.kernel = micro.name;
  const int MR = micro.mr, NR = micro.nr;

  std::vector<double> qn2, rn2;
  st.nonfinite = row_norms<T>(Qt, qn2) + row_norms<T>(Rt, rn2);
  if (st.nonfinite) return st;

  const int64_t r_pad = (R + MR - 1) / MR * MR, q_pad = (Q + NR - 1) / NR * NR;
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> fa(r_pad, 2.0f), fb(r_pad, 0.0f), pen(r_pad, -inf), cs_f(q_pad, 0.0f);
  double r_max = 0.0;
  for (int64_t i = 0; i < R; ++i) {
    pen[i] = -static_cast<float>(rn2[i]);
    r_max = std::max(r_max, std::sqrt(rn2[i]));
  }
  std::vector<double> offset(Q);  // threshold = worst held (-d^2) + |q|^2 - margin
  std::vector<float> thr(q_pad, inf);
  for (int64_t j = 0; j < Q; ++j) {
    offset[j] = qn2[j] - knn_margin(D, std::sqrt(qn2[j]), r_max);
    thr[j] = -inf;
  }

  // Lists hold -d^2, so that "larger first, lower index on ties" is the order wanted.
  std::vector<double> hv(static_cast<size_t>(Q * k));
  std::vector<int64_t> hi(static_cast<size_t>(Q * k));
  std::vector<int64_t> hn(Q, 0);

  const T* qp = Qt.ptr<T>();
  const T* rp = Rt.ptr<T>();
  auto pack_rows = [&](int64_t i0, float* dst) {
    for (int r = 0; r < MR; ++r) {
      const int64_t i = i0 + r;
      const T* row = rp + i * Rt.strides[0];
      for (int64_t d = 0; d < D; ++d) {
        dst[d * MR + r] = i < R ? static_cast<float>(Load<T>::get(row + d * Rt.strides[1])) : 0.0f;
      }
    }
  };
  auto pack_cols = [&](int64_t j0, int64_t j1, float* dst) {
    for (int c = 0; c < NR; ++c) {
      const int64_t j = j0 + c;
      const T* row = qp + j * Qt.strides[0];
      for (int64_t d = 0; d < D; ++d) {
        dst[d * NR + c] = j < j1 ? static_cast<float>(Load<T>::get(row + d * Qt.strides[1])) : 0.0f;
      }
    }
  };
  auto skip_col = [](int64_t) { return false; };
  const bool exclude_self = a.exclude_self;
  auto on_candidate = [&](int64_t j, int64_t i, float) {
    if (exclude_self && i == j) return;
    TopK h{&hv[j * k], &hi[j * k], k, hn[j]};
    const double v = -sq_distance<T>(qp + j * Qt.strides[0], Qt.strides[1],
                                     rp + i * Rt.strides[0], Rt.strides[1], D);
    if (!h.accepts(v, i)) return;
    h.push(v, i);
    hn[j] = h.n;
    thr[j] = screen_threshold(h, offset[j]);
  };
  screened_product("queries", micro, R, Q, D, fa.data(), fb.data(), pen.data(), cs_f.data(),
                   thr.data(), pack_rows, pack_cols, skip_col, on_candidate);

  // -d^2 back to d^2
  write_sorted_lists(hv, hi, hn, k, a.vals, a.idx, -1.0);
  return st;
}

}  // namespace

RiskStatus knn(const KnnArgs& a) {
  switch (a.queries.dtype) {
    case DType::f16: return knn_typed<Half>(a);
    case DType::bf16: return knn_typed<BFloat16>(a);
    case DType::f32: return knn_typed<float>(a);
    case DType::f64: return knn_typed<double>(a);
    default: throw InputError("queries: expected a floating-point array");
  }
}

}  // namespace cpu
}  // namespace miakit
