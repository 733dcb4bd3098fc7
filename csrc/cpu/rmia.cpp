// CPU kernel for RMIA's counting (docs/methods/rmia.md): each row's population ratios are
// sorted once, then every scored ratio is placed by binary search with the pairwise test
// itself (include/miakit/rmia.h), so the result equals the dense N x Z count exactly, in
// O((N + Z) log Z) time and O(Z) memory per row.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels_attack.h"
#include "miakit/rmia.h"
#include "parallel.h"

namespace miakit {
namespace cpu {

RmiaStatus rmia_count(const RmiaCountArgs& a) {
  const int64_t R = a.x_ratio.shape[0], N = a.x_ratio.shape[1], Z = a.pop_ratio.shape[1];
  const Tensor &xr = a.x_ratio, &pr = a.pop_ratio, &so = a.sorted, &out = a.out;
  const bool has_self = a.self.data != nullptr;
  std::vector<int64_t> n_valid(R, 0);
  // 1. Each row's population, NaN entries left out, sorted ascending.
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t r = 0; r < R; ++r) {
    const double* src = pr.ptr<double>() + r * pr.strides[0];
    double* dst = so.ptr<double>() + r * so.strides[0];
    int64_t n = 0;
    for (int64_t z = 0; z < Z; ++z) {
      const double v = src[z * pr.strides[1]];
      if (!std::isnan(v)) dst[n++] = v;
    }
    std::sort(dst, dst + n);
    n_valid[r] = n;
  }
  // 2. Every scored ratio by binary search; (row, example) pairs share the threads, so
  // one row alone (one target) still uses all of them.
  const double gamma = a.gamma;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < R * N; ++i) {
    const int64_t r = i / N, j = i - r * N;
    const double x = xr.ptr<double>()[r * xr.strides[0] + j * xr.strides[1]];
    const bool self =
        has_self && a.self.ptr<uint8_t>()[r * a.self.strides[0] + j * a.self.strides[1]] != 0;
    out.ptr<double>()[r * out.strides[0] + j * out.strides[1]] =
        rmia_share(so.ptr<double>() + r * so.strides[0], n_valid[r], x, self, gamma);
  }
  RmiaStatus st;
  for (int64_t r = 0; r < R; ++r) st.empty_rows += n_valid[r] == 0;
  return st;
}

}  // namespace cpu
}  // namespace miakit
