// CUDA kernel of the two-sample K-S statistic: twin of cpu/ks.cpp, one thread per pair
// running the same merge (include/miakit/ks.h).
#include "cuda/common.cuh"
#include "kernels_attack.h"
#include "miakit/ks.h"

namespace miakit {
namespace cuda {

namespace {

constexpr int kThreads = 128;

struct KsParams {
  const double *av, *bv;
  const int64_t *ao, *bo;
  double *d_max, *d_min, *loc_max, *loc_min;
  int64_t s_max, s_min, s_lmax, s_lmin;
  int64_t B;
};

__global__ void ks_kernel(const KsParams p) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < p.B;
       r += step) {
    const KsExtremes e =
        ks_extremes(p.av + p.ao[r], p.ao[r + 1] - p.ao[r], p.bv + p.bo[r], p.bo[r + 1] - p.bo[r]);
    p.d_max[r * p.s_max] = e.d_max;
    p.d_min[r * p.s_min] = e.d_min;
    p.loc_max[r * p.s_lmax] = e.loc_max;
    p.loc_min[r * p.s_lmin] = e.loc_min;
  }
}

}  // namespace

void ks_merge(const KsMergeArgs& a, std::uintptr_t stream) {
  DeviceGuard guard(a.d_max.device_id);
  const cudaStream_t s = as_stream(stream);
  KsParams p{a.a_values.ptr<double>(), a.b_values.ptr<double>(), a.a_offsets.ptr<int64_t>(),
             a.b_offsets.ptr<int64_t>(), a.d_max.ptr<double>(), a.d_min.ptr<double>(),
             a.loc_max.ptr<double>(), a.loc_min.ptr<double>(), a.d_max.strides[0],
             a.d_min.strides[0], a.loc_max.strides[0], a.loc_min.strides[0],
             a.d_max.shape[0]};
  if (p.B == 0) return;
  ks_kernel<<<grid_size(p.B, kThreads, 8), kThreads, 0, s>>>(p);
  check_launch("ks_kernel");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize (ks)");
}

}  // namespace cuda
}  // namespace miakit
