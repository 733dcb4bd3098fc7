// CPU kernel of the two-sample K-S statistic: one merge of sorted samples per pair
// (include/miakit/ks.h), pairs shared by the threads.
#include "kernels_attack.h"
#include "miakit/ks.h"
#include "parallel.h"

namespace miakit {
namespace cpu {

void ks_merge(const KsMergeArgs& a) {
  const int64_t B = a.d_max.shape[0];
  const double* av = a.a_values.ptr<double>();
  const double* bv = a.b_values.ptr<double>();
  const int64_t* ao = a.a_offsets.ptr<int64_t>();
  const int64_t* bo = a.b_offsets.ptr<int64_t>();
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t r = 0; r < B; ++r) {
    const KsExtremes e = ks_extremes(av + ao[r], ao[r + 1] - ao[r], bv + bo[r], bo[r + 1] - bo[r]);
    a.d_max.ptr<double>()[r * a.d_max.strides[0]] = e.d_max;
    a.d_min.ptr<double>()[r * a.d_min.strides[0]] = e.d_min;
    a.loc_max.ptr<double>()[r * a.loc_max.strides[0]] = e.loc_max;
    a.loc_min.ptr<double>()[r * a.loc_min.strides[0]] = e.loc_min;
  }
}

}  // namespace cpu
}  // namespace miakit
