// CUDA kernel for RMIA's counting: twin of cpu/rmia.cpp, through the same pairwise test
// and binary search (include/miakit/rmia.h).
//   1. pack:   each row's population into the scratch rows, NaN (not in the population)
//              replaced by +inf, which sorts last and which no ratio beats; and the count
//              of real entries per row;
//   2. sort:   every row ascending at once (cub::DeviceSegmentedSort);
//   3. search: one thread per (row, example), binary search over the row's real entries.
#include <cub/device/device_segmented_sort.cuh>

#include "cuda/common.cuh"
#include "kernels_attack.h"
#include "miakit/rmia.h"

namespace miakit {
namespace cuda {

namespace {

constexpr int kThreads = 256;

struct PackParams {
  const double* pop;
  int64_t p0, p1;
  double* packed;  // [R][Z] contiguous
  unsigned long long* n_valid;  // [R]
  int64_t* offsets;  // [R + 1]
  int64_t R, Z;
};

__global__ void pack_kernel(const PackParams p) {
  const int64_t total = p.R * p.Z;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += step) {
    const int64_t r = i / p.Z, z = i - r * p.Z;
    const double v = p.pop[r * p.p0 + z * p.p1];
    const bool real = !isnan(v);
    p.packed[i] = real ? v : INFINITY;
    if (real) atomicAdd(p.n_valid + r, 1ull);
    if (z == 0) p.offsets[r] = r * p.Z;
    if (i == 0) p.offsets[p.R] = total;
  }
}

struct SearchParams {
  const double* x;
  int64_t x0, x1;
  const uint8_t* self;  // nullptr: nobody is in their own population
  int64_t s0, s1;
  const double* sorted;  // [R][Z] contiguous
  const unsigned long long* n_valid;
  double* out;
  int64_t o0, o1;
  int64_t R, N, Z;
  double gamma;
};

__global__ void search_kernel(const SearchParams p) {
  const int64_t total = p.R * p.N;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += step) {
    const int64_t r = i / p.N, j = i - r * p.N;
    const double x = p.x[r * p.x0 + j * p.x1];
    const bool self = p.self != nullptr && p.self[r * p.s0 + j * p.s1] != 0;
    p.out[r * p.o0 + j * p.o1] = rmia_share(p.sorted + r * p.Z,
                                            static_cast<int64_t>(p.n_valid[r]), x, self,
                                            p.gamma);
  }
}

}  // namespace

RmiaStatus rmia_count(const RmiaCountArgs& a, std::uintptr_t stream) {
  DeviceGuard guard(a.x_ratio.device_id);
  const cudaStream_t s = as_stream(stream);
  const int64_t R = a.x_ratio.shape[0], N = a.x_ratio.shape[1], Z = a.pop_ratio.shape[1];
  RmiaStatus st;
  if (R == 0) return st;
  if (R * Z > INT32_MAX || R > INT32_MAX)
    throw InputError("population: at most 2^31 - 1 ratios per call on the GPU (rows x size)");
  Counters n_valid(static_cast<size_t>(R), s);
  DeviceBuffer packed(sizeof(double) * R * Z, s);
  DeviceBuffer offsets(sizeof(int64_t) * (R + 1), s);
  if (Z > 0) {
    PackParams pp{a.pop_ratio.ptr<double>(), a.pop_ratio.strides[0], a.pop_ratio.strides[1],
                  packed.as<double>(), n_valid.data(), offsets.as<int64_t>(), R, Z};
    pack_kernel<<<grid_size(R * Z, kThreads, 8), kThreads, 0, s>>>(pp);
    check_launch("rmia pack_kernel");
    // Sorted into the caller's scratch rows (contiguous, checked by the binding).
    size_t temp_bytes = 0;
    const int64_t* begin = offsets.as<int64_t>();
    check(cub::DeviceSegmentedSort::SortKeys(nullptr, temp_bytes, packed.as<double>(),
                                             a.sorted.ptr<double>(), static_cast<int>(R * Z),
                                             static_cast<int>(R), begin, begin + 1, s),
          "cub::DeviceSegmentedSort::SortKeys (size)");
    DeviceBuffer temp(temp_bytes, s);
    check(cub::DeviceSegmentedSort::SortKeys(temp.as<void>(), temp_bytes, packed.as<double>(),
                                             a.sorted.ptr<double>(), static_cast<int>(R * Z),
                                             static_cast<int>(R), begin, begin + 1, s),
          "cub::DeviceSegmentedSort::SortKeys");
  }
  if (N > 0) {
    SearchParams sp{a.x_ratio.ptr<double>(), a.x_ratio.strides[0], a.x_ratio.strides[1],
                    a.self.data ? a.self.ptr<uint8_t>() : nullptr,
                    a.self.data ? a.self.strides[0] : 0, a.self.data ? a.self.strides[1] : 0,
                    a.sorted.ptr<double>(), n_valid.data(), a.out.ptr<double>(),
                    a.out.strides[0], a.out.strides[1], R, N, Z, a.gamma};
    search_kernel<<<grid_size(R * N, kThreads, 8), kThreads, 0, s>>>(sp);
    check_launch("rmia search_kernel");
  }
  for (int64_t v : n_valid.fetch()) st.empty_rows += v == 0;
  return st;
}

}  // namespace cuda
}  // namespace miakit
