// CPU kernel for RMIA's counting (docs/methods/rmia.md). Per row, the population ratios
// (NaN entries left out) and the scored ratios are each sorted once, by radix sort
// (radix_sort.h), and one walk up both places every scored ratio: the count of
// population entries x beats is non-decreasing in x (include/miakit/rmia.h: the test is
// monotone in both ratios for ratios >= 0), so the walk's pointer only moves forward and
// stops, for each x, at the first entry the test fails, which is the binary search's
// answer (the CUDA kernel's) with the very same test. The result equals the dense N x Z
// count exactly, in O(N + Z) time per row and O(N + Z) memory per thread.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels_attack.h"
#include "miakit/rmia.h"
#include "parallel.h"
#include "radix_sort.h"
#include "scratch.h"

namespace miakit {
namespace cpu {

RmiaStatus rmia_count(const RmiaCountArgs& a) {
  const int64_t R = a.x_ratio.shape[0], N = a.x_ratio.shape[1], Z = a.pop_ratio.shape[1];
  const Tensor &xr = a.x_ratio, &pr = a.pop_ratio, &so = a.sorted, &out = a.out;
  const bool has_self = a.self.data != nullptr;
  const double gamma = a.gamma;
  const int64_t longest = std::max(N, Z);
  if (longest > int64_t(UINT32_MAX))  // positions travel as 32-bit payloads
    throw InputError("x_ratio, pop_ratio: expected rows of at most 2^32 - 1 ratios");
  std::vector<int64_t> n_valid(R, 0);
  // Each thread's sort buffers, for the longest row, allocated here (scratch.h).
  const int threads = team_for(R);
  ThreadBuffers<uint64_t> keys(threads, {2, longest}, "pop_ratio");
  ThreadBuffers<uint32_t> pays(threads, {2, longest}, "pop_ratio");
  ThreadBuffers<uint32_t> hists(threads, {radix::kPasses, radix::kBuckets}, "pop_ratio");
#pragma omp parallel num_threads(threads)
  {
    const int tid = thread_id();
    uint64_t* const k = keys.of(tid);
    uint64_t* const k2 = k + longest;
    uint32_t* const p = pays.of(tid);
    uint32_t* const p2 = p + longest;
    uint32_t* const hist = hists.of(tid);
#pragma omp for schedule(dynamic, 1)
    for (int64_t r = 0; r < R; ++r) {
      // 1. The row's population, NaN entries left out, sorted ascending into `sorted`.
      const double* src = pr.ptr<double>() + r * pr.strides[0];
      double* sorted = so.ptr<double>() + r * so.strides[0];
      int64_t n = 0;
      for (int64_t z = 0; z < Z; ++z) {
        const double v = src[z * pr.strides[1]];
        if (!std::isnan(v)) {
          k[n] = radix::ascending_key(v);
          p[n++] = static_cast<uint32_t>(z);
        }
      }
      const uint32_t* zs = radix::sort_segment(k, p, k2, p2, n, 64, hist) ? p2 : p;
      for (int64_t i = 0; i < n; ++i) sorted[i] = src[zs[i] * pr.strides[1]];  // the values
      n_valid[r] = n;
      // 2. The scored ratios ascending (with their positions), and one walk.
      const double* x = xr.ptr<double>() + r * xr.strides[0];
      for (int64_t j = 0; j < N; ++j) {
        k[j] = radix::ascending_key(x[j * xr.strides[1]]);
        p[j] = static_cast<uint32_t>(j);
      }
      const bool in2 = radix::sort_segment(k, p, k2, p2, N, 64, hist);
      const uint32_t* ps = in2 ? p2 : p;
      const uint8_t* self = has_self ? a.self.ptr<uint8_t>() + r * a.self.strides[0] : nullptr;
      double* o = out.ptr<double>() + r * out.strides[0];
      int64_t c = 0;
      for (int64_t i = 0; i < N; ++i) {
        const int64_t j = ps[i];
        const double xj = x[j * xr.strides[1]];
        int64_t count = 0;  // a NaN ratio beats nothing (and leaves the walk where it is)
        if (!std::isnan(xj)) {
          while (c < n && rmia_beats(xj, sorted[c], gamma)) ++c;
          count = c;
        }
        const bool own = self != nullptr && self[j * a.self.strides[1]] != 0;
        o[j * out.strides[1]] = rmia_share_of(count, n, xj, own, gamma);
      }
    }
  }
  RmiaStatus st;
  for (int64_t r = 0; r < R; ++r) st.empty_rows += n_valid[r] == 0;
  return st;
}

}  // namespace cpu
}  // namespace miakit
