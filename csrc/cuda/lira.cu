// CUDA kernels for LiRA (docs/methods/lira.md): fitting the IN/OUT Gaussians, scoring a
// target against them, and leave-one-out scoring of many targets in one pass. Twin of
// cpu/lira.cpp: the same statistics, median/removal rules and status counting, through
// the same shared functions (include/miakit/lira_math.h, signals.h).
//
// One thread block owns a tile of E consecutive examples and loops over tiles
// (grid-stride). Per tile, in shared memory:
//   1. fill:  every model's observation of every (example, augmentation) column, in
//             double, column-major [column][model]. From logits, each model's slice of
//             the tile is contiguous ([M, N, A, C] layout), so it is staged with
//             coalesced asynchronous copies (cp.async, double-buffered over chunks of
//             models) and the signal is computed from shared memory;
//   2. stats: one warp per column: IN/OUT counts, means and M2 (two passes, as the CPU),
//             and for the median the column sorted with IN values first, then OUT;
//   3. score: one thread per (example, target): the statistics without the target (and,
//             with balanced references, without its partner on the other side) follow
//             from the column's (stats_without, median_without with the removed model's
//             rank found by binary search in its sorted side), as on the CPU.
// The logits are read once per pass (twice for the pooled variance, whose per-target
// sums need a pass of their own, as on the CPU), and the [M, N, A] observations are
// never stored whole. Columns of more than 256 models are sorted by a slower warp
// bitonic sort; tiles too large for shared memory keep their workspace in a per-block
// global scratch buffer. Both only change where and how fast, not what is computed.
#include <cuda_pipeline_primitives.h>

#include <cub/warp/warp_merge_sort.cuh>
#include <memory>

#include "cuda/common.cuh"

namespace miakit {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kSortItems = 8;  // fast path: one warp sorts a column of up to 256 models
constexpr int kSortCapacity = 32 * kSortItems;
constexpr int kMaxChunk = 32;  // models staged per chunk of logits
constexpr int kBlocksPerSm = 2;  // the kernel needs about 110-128 registers per thread
constexpr size_t kGlobalWorkspaceCap = size_t(1) << 30;

enum class Phase : int { fit = 0, loo_pooled = 1, loo_score = 2 };

// Statistics of one (example, augmentation) column, as cpu::Column holds them.
struct ColStat {
  int n_in, n_out;
  double mean_in, m2_in, mean_out, m2_out;
};

// Sort key of the fast path: IN values (grp 0) first, then OUT (grp 1), then padding.
struct SortKey {
  double v;
  int grp;
};
struct SortLess {
  __device__ __forceinline__ bool operator()(const SortKey& a, const SortKey& b) const {
    return a.grp < b.grp || (a.grp == b.grp && a.v < b.v);
  }
};
using WarpSort = cub::WarpMergeSort<SortKey, kSortItems, 32>;

// Everything a tile kernel needs, by value. Offsets are in bytes: `ws_*` relative to the
// workspace (shared memory, or this block's slice of a global buffer), `sm_*` relative to
// shared memory.
struct TileParams {
  // Source: scores [M, N, A] or logits [M, N, A, C] (+ labels [N]).
  const void* data;
  int64_t ds0, ds1, ds2, ds3;
  const int64_t* labels;
  int64_t ls;
  int C;
  Signal signal;
  const uint8_t* keep;
  int64_t ks0, ks1;
  int M, A;
  int64_t N;
  // Tiling.
  int E;          // examples per tile
  int Mp;         // column stride (odd: conflict-free shared memory access)
  int Mc, Mc_log; // models per staged chunk (a power of two)
  int Lp;         // stride of a staged model slice, in elements (odd)
  bool staged;    // logits slices contiguous: stage them with cp.async
  bool sorted;    // the median is needed: sort the columns
  bool fast_sort; // M <= kSortCapacity: sort in registers (cub::WarpMergeSort)
  bool ws_global;
  unsigned char* ws;
  int64_t ws_stride;
  int64_t ws_member, ws_vals, ws_sorted;
  int64_t sm_colstat, sm_labels, sm_union, sm_wtot, sm_end;
  // What to compute.
  Phase phase;
  Center center;
  Variance variance;
  Mode mode;
  Offline offline;
  References references;
  double min_std;
  // Fit outputs: [N, A] float64 (strides o*), counts [N] int64.
  double *mu_in, *mu_out, *sd_in, *sd_out;
  int64_t mi0, mi1, mo0, mo1, si0, si1, so0, so1;
  int64_t *n_in, *n_out;
  int64_t ni0, no0;
  // Leave-one-out.
  const int64_t* targets;
  int64_t ts;
  int K;
  double* out;
  int64_t os0, os1;
  const double* pooled_sd;  // [K][2] (IN, OUT) for variance == global
  double* partial;          // [gridDim.x][4 + 4K] sums of the pooled pre-pass
  unsigned long long* counts;  // [nonfinite logits, bad label, nonfinite scores, clamped[K], empty[K]]
};

struct Tile {
  int64_t n0;
  int Et, cols;
  uint8_t* member;  // [Et][M]
  double* vals;     // [cols][Mp], column = e * A + a
  double* sorted;   // [cols][Mp]: IN sorted ascending, then OUT sorted ascending
  ColStat* stat;    // [cols]
  int64_t* labels;  // [Et]
};

// ---------------------------------------------------------------------------------------
// 1. Fill

template <class T>
__device__ __forceinline__ void copy_async(T* dst_shared, const T* src_global) {
  if constexpr (sizeof(T) == 4 || sizeof(T) == 8) {
    __pipeline_memcpy_async(dst_shared, src_global, sizeof(T));
  } else {
    *dst_shared = *src_global;  // 2-byte types: cp.async moves 4, 8 or 16 bytes
  }
}

// Observations from logits: one signal per (model, column) through compute_signal. As on
// the CPU, values beyond kLiraMaxAbsObservation are counted in `large` (the caller then
// takes the path that rescales).
template <class T>
__device__ void fill_from_logits(const TileParams& p, const Tile& t, unsigned char* smem,
                                 long long& nonfinite, long long& bad_label, long long& large) {
  const T* base = static_cast<const T*>(p.data);
  T* stage = reinterpret_cast<T*>(smem + p.sm_union);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int L = t.cols * p.C;  // elements of one model's slice of the tile
  const int nchunks = (p.M + p.Mc - 1) / p.Mc;

  // Chunk c goes to buffer c & 1; one warp per model row, lanes along the slice, so every
  // warp-wide copy reads 32 consecutive elements.
  auto issue = [&](int c) {
    if (p.staged) {
      const int m0 = c * p.Mc, mv = min(p.Mc, p.M - m0);
      T* dst = stage + (c & 1) * p.Mc * p.Lp;
      for (int mc = warp; mc < mv; mc += kWarps) {
        const T* src = base + (m0 + mc) * p.ds0 + t.n0 * p.ds1;
        for (int i = lane; i < L; i += 32) copy_async(dst + mc * p.Lp + i, src + i);
      }
    }
    __pipeline_commit();
  };

  issue(0);
  for (int c = 0; c < nchunks; ++c) {
    if (c + 1 < nchunks) {
      issue(c + 1);
      __pipeline_wait_prior(1);
    } else {
      __pipeline_wait_prior(0);
    }
    __syncthreads();
    const int m0 = c * p.Mc, mv = min(p.Mc, p.M - m0);
    const T* buf = stage + (c & 1) * p.Mc * p.Lp;
    // Consecutive threads take consecutive models of one column: their shared-memory
    // rows are Lp (odd) apart and their results land side by side in the column.
    for (int r = threadIdx.x; r < (t.cols << p.Mc_log); r += kThreads) {
      const int mc = r & (p.Mc - 1), col = r >> p.Mc_log;
      if (mc >= mv) continue;
      const int e = col / p.A, a = col - e * p.A;
      const int m = m0 + mc;
      const T* row;
      int64_t stride;
      if (p.staged) {
        row = buf + mc * p.Lp + col * p.C;
        stride = 1;
      } else {
        row = base + m * p.ds0 + (t.n0 + e) * p.ds1 + a * p.ds2;
        stride = p.ds3;
      }
      const SignalValue v = compute_signal<T>(p.signal, row, stride, p.C, t.labels[e]);
      nonfinite += v.status == 1;
      bad_label += v.status == 2;
      large += v.status == 0 && !(fabs(v.value) <= kLiraMaxAbsObservation);
      t.vals[col * p.Mp + m] = v.value;
    }
    __syncthreads();  // the buffer of chunk c is refilled by chunk c + 2
  }
}

// Observations from precomputed scores: consecutive threads read consecutive columns of
// one model (contiguous in [M, N, A]).
template <class T>
__device__ void fill_from_scores(const TileParams& p, const Tile& t, long long& nonfinite) {
  const T* base = static_cast<const T*>(p.data);
  const int total = p.M * t.cols;
  for (int r = threadIdx.x; r < total; r += kThreads) {
    const int m = r / t.cols, col = r - m * t.cols;
    const int e = col / p.A, a = col - e * p.A;
    const double v = Load<T>::get(base + m * p.ds0 + (t.n0 + e) * p.ds1 + a * p.ds2);
    nonfinite += !is_finite(v);
    t.vals[col * p.Mp + m] = v;
  }
}

// ---------------------------------------------------------------------------------------
// 2. Column statistics and sorting (one warp per column)

// Sorts a[0..n) ascending, in place, by one warp: the bitonic network in which every
// comparator puts the smaller value first. Positions >= n act as +inf and never move, so
// comparators reaching them are skipped and n need not be a power of two. Used when a
// column has more models than the register sort holds.
__device__ void warp_sort(double* a, int n, int lane) {
  int P = 1;
  while (P < n) P <<= 1;
  for (int k = 2; k <= P; k <<= 1) {
    const int half = k >> 1;
    for (int t = lane; t < P / 2; t += 32) {  // mirror comparators within blocks of k
      const int i = (t / half) * k + (t % half);
      const int l = i ^ (k - 1);
      if (l < n) {
        const double x = a[i], y = a[l];
        if (y < x) { a[i] = y; a[l] = x; }
      }
    }
    __syncwarp();
    for (int j = k >> 2; j > 0; j >>= 1) {  // half-cleaners
      for (int t = lane; t < P / 2; t += 32) {
        const int i = (t / j) * 2 * j + (t % j);
        const int l = i + j;
        if (l < n) {
          const double x = a[i], y = a[l];
          if (y < x) { a[i] = y; a[l] = x; }
        }
      }
      __syncwarp();
    }
  }
}

// The column sorted into `dst`: IN values ascending in [0, n_in), OUT values ascending
// in [n_in, n_in + n_out).
__device__ void sort_column(const TileParams& p, const double* v, const uint8_t* member,
                            int n_in, double* dst, unsigned char* smem) {
  const int lane = threadIdx.x & 31;
  if (p.fast_sort) {
    auto* tmp = reinterpret_cast<typename WarpSort::TempStorage*>(smem + p.sm_union);
    SortKey keys[kSortItems];
#pragma unroll
    for (int i = 0; i < kSortItems; ++i) {
      const int m = i * 32 + lane;  // which slot holds which model does not matter
      keys[i] = m < p.M ? SortKey{v[m], member[m] ? 0 : 1} : SortKey{INFINITY, 2};
    }
    WarpSort(tmp[threadIdx.x >> 5]).Sort(keys, SortLess());
#pragma unroll
    for (int i = 0; i < kSortItems; ++i) {
      const int pos = lane * kSortItems + i;  // blocked arrangement after the sort
      if (pos < p.M) dst[pos] = keys[i].v;
    }
    __syncwarp();
    return;
  }
  // Large columns: partition IN before OUT (ballot prefix sums), then sort each side.
  int base_in = 0, base_out = n_in;
  for (int m0 = 0; m0 < p.M; m0 += 32) {
    const int m = m0 + lane;
    const bool valid = m < p.M;
    const bool in = valid && member[m];
    const unsigned bi = __ballot_sync(kFullMask, in);
    const unsigned bo = __ballot_sync(kFullMask, valid && !in);
    const unsigned below = (1u << lane) - 1u;
    if (in) dst[base_in + __popc(bi & below)] = v[m];
    else if (valid) dst[base_out + __popc(bo & below)] = v[m];
    base_in += __popc(bi);
    base_out += __popc(bo);
  }
  __syncwarp();
  warp_sort(dst, n_in, lane);
  warp_sort(dst + n_in, p.M - n_in, lane);
}

// Counts, means and M2 of both sides, exactly as cpu::Column::analyze defines them
// (mean first, then squared deviations from it).
__device__ ColStat column_stats(const TileParams& p, const double* v, const uint8_t* member) {
  const int lane = threadIdx.x & 31;
  double s_in = 0.0, s_out = 0.0;
  int n_in = 0, n_out = 0;
  for (int m = lane; m < p.M; m += 32) {
    if (member[m]) { s_in += v[m]; ++n_in; } else { s_out += v[m]; ++n_out; }
  }
  s_in = warp_sum(s_in);
  s_out = warp_sum(s_out);
  n_in = warp_sum(n_in);
  n_out = warp_sum(n_out);
  const double mean_in = n_in ? s_in / n_in : 0.0, mean_out = n_out ? s_out / n_out : 0.0;
  double q_in = 0.0, q_out = 0.0;
  for (int m = lane; m < p.M; m += 32) {
    const double d = v[m] - (member[m] ? mean_in : mean_out);
    if (member[m]) q_in += d * d; else q_out += d * d;
  }
  q_in = warp_sum(q_in);
  q_out = warp_sum(q_out);
  return {n_in, n_out, n_in ? mean_in : NAN, q_in, n_out ? mean_out : NAN, q_out};
}

__device__ void analyze_columns(const TileParams& p, const Tile& t, unsigned char* smem) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  double* wtot = reinterpret_cast<double*>(smem + p.sm_wtot);
  for (int col = warp; col < t.cols; col += kWarps) {
    const int e = col / p.A, a = col - e * p.A;
    const uint8_t* member = t.member + e * p.M;
    const double* v = t.vals + col * p.Mp;
    const ColStat cs = column_stats(p, v, member);
    double* srt = t.sorted + col * p.Mp;
    if (p.sorted) sort_column(p, v, member, cs.n_in, srt, smem);
    if (lane == 0) {
      t.stat[col] = cs;
      if (p.phase == Phase::fit) {
        const int64_t n = t.n0 + e;
        // cpu::lira_fit: the median (or mean) of each side, NaN when the side is empty;
        // the population spread before clamping (the Python layer clamps and counts).
        double mi = cs.mean_in, mo = cs.mean_out;
        if (p.sorted) {
          mi = cs.n_in > 0 ? median_without(srt, cs.n_in, -1) : NAN;
          mo = cs.n_out > 0 ? median_without(srt + cs.n_in, cs.n_out, -1) : NAN;
        }
        p.mu_in[n * p.mi0 + a * p.mi1] = mi;
        p.mu_out[n * p.mo0 + a * p.mo1] = mo;
        p.sd_in[n * p.si0 + a * p.si1] = cs.n_in ? sqrt(cs.m2_in / cs.n_in) : NAN;
        p.sd_out[n * p.so0 + a * p.so1] = cs.n_out ? sqrt(cs.m2_out / cs.n_out) : NAN;
        if (a == 0) {
          p.n_in[n * p.ni0] = cs.n_in;
          p.n_out[n * p.no0] = cs.n_out;
        }
      } else if (p.phase == Phase::loo_pooled) {
        // This warp's running totals; summed over warps in a fixed order at the end, so
        // the pooled spreads do not depend on scheduling.
        wtot[warp * 4 + 0] += cs.m2_in;
        wtot[warp * 4 + 1] += cs.n_in;
        wtot[warp * 4 + 2] += cs.m2_out;
        wtot[warp * 4 + 3] += cs.n_out;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// 3. Targets

// A rank of x within sorted[0..n): the first position holding x. The CPU uses the rank
// of the target's own entry; among equal values any position holding x leaves the same
// sorted remainder, so median_without gives the same result.
__device__ __forceinline__ int rank_of(const double* sorted, int n, double x) {
  int lo = 0, hi = n;
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (sorted[mid] < x) lo = mid + 1; else hi = mid;
  }
  return lo;
}

struct SideFit {
  double mu, sd;
  bool ok;
};

// Twin of cpu Column::without: mean and M2 of one side without model m, from the
// running statistics, or directly from the column's values when the removal left M2
// too close to its rounding error (m2_needs_recompute).
__device__ void side_stats_without(const SideStats& s, const double* vals_col,
                                   const uint8_t* member_row, int M, bool is_in, int m,
                                   double* mean, double* m2, int* n) {
  stats_without(s, vals_col[m], true, mean, m2, n);
  if (!m2_needs_recompute(s.m2, *m2, *n)) return;
  const uint8_t side = is_in ? 1 : 0;
  double sum = 0.0;
  for (int j = 0; j < M; ++j) {
    if (j != m && (member_row[j] != 0) == side) sum += vals_col[j];
  }
  *mean = sum / *n;
  double q = 0.0;
  for (int j = 0; j < M; ++j) {
    if (j != m && (member_row[j] != 0) == side) q += (vals_col[j] - *mean) * (vals_col[j] - *mean);
  }
  *m2 = q;
}

// Twin of cpu side_without: centre and spread of one side without model `removed` (the
// target on its own side, its balanced partner on the other; -1: nobody); ok = false when
// the side is then empty.
__device__ SideFit side_without(const TileParams& p, const ColStat& c, const double* sorted_col,
                                const double* vals_col, const uint8_t* member_row, int removed,
                                bool is_in, double global_sd) {
  const SideStats s = is_in ? SideStats{c.n_in, c.mean_in, c.m2_in}
                            : SideStats{c.n_out, c.mean_out, c.m2_out};
  double mean, m2;
  int n;
  if (removed >= 0) {
    side_stats_without(s, vals_col, member_row, p.M, is_in, removed, &mean, &m2, &n);
  } else {
    stats_without(s, 0.0, false, &mean, &m2, &n);
  }
  if (n <= 0) return {NAN, NAN, false};
  double mu = mean;
  if (p.center == Center::median) {
    const double* side = is_in ? sorted_col : sorted_col + c.n_in;
    mu = median_without(side, s.n, removed >= 0 ? rank_of(side, s.n, vals_col[removed]) : -1);
  }
  const double sd = p.variance == Variance::global ? global_sd : sqrt(m2 / n);
  return {mu, sd, true};
}

// Twin of cpu removed_models: the model left out of the IN and of the OUT side for target
// m on one example (-1: nobody).
struct Removed {
  int in, out;
};

__device__ __forceinline__ Removed removed_models(const TileParams& p, int m,
                                                  const uint8_t* member_row) {
  const int partner =
      p.references == References::balanced ? balanced_partner(m, p.M, member_row) : -1;
  return member_row[m] != 0 ? Removed{m, partner} : Removed{partner, m};
}

// Leave-one-out scores of this tile: one thread per (example, target), examples fastest
// so that neighbouring threads write neighbouring outputs.
__device__ void score_targets(const TileParams& p, const Tile& t) {
  const bool online = p.mode == Mode::online;
  const int pairs = t.Et * p.K;
  for (int r = threadIdx.x; r < pairs; r += kThreads) {
    const int k = r / t.Et, e = r - k * t.Et;
    const int m = static_cast<int>(p.targets[k * p.ts]);
    const uint8_t* mrow = t.member + e * p.M;
    const Removed rm = removed_models(p, m, mrow);
    const double gsd_in = p.pooled_sd ? p.pooled_sd[2 * k] : NAN;
    const double gsd_out = p.pooled_sd ? p.pooled_sd[2 * k + 1] : NAN;
    double acc = 0.0;
    bool empty = false;
    int clamped = 0;
    for (int a = 0; a < p.A; ++a) {
      const int col = e * p.A + a;
      const ColStat cs = t.stat[col];
      const double x = t.vals[col * p.Mp + m];
      const double* srt = t.sorted + col * p.Mp;
      const double* vcol = t.vals + col * p.Mp;
      SideFit out = side_without(p, cs, srt, vcol, mrow, rm.out, false, gsd_out);
      SideFit in{0.0, 1.0, true};
      if (online) in = side_without(p, cs, srt, vcol, mrow, rm.in, true, gsd_in);
      if (!out.ok || !in.ok) {
        empty = true;
        continue;
      }
      if (!(out.sd >= p.min_std)) { out.sd = p.min_std; ++clamped; }
      if (online && !(in.sd >= p.min_std)) { in.sd = p.min_std; ++clamped; }
      acc += lira_observation(p.mode, p.offline, x, in.mu, in.sd, out.mu, out.sd);
    }
    p.out[k * p.os0 + (t.n0 + e) * p.os1] = empty ? NAN : acc / p.A;
    if (clamped) atomicAdd(p.counts + 3 + k, static_cast<unsigned long long>(clamped));
    if (empty) atomicAdd(p.counts + 3 + p.K + k, 1ull);
  }
}

// Pre-pass of the pooled ("global") variance: per target, each side's M2 and count
// without its models (the target, and its balanced partner), summed over the columns.
// Summed as such, never as the total minus what the removal takes away, which would cancel
// catastrophically when the removed models hold the largest deviations (as cpu::lira_loo).
// One thread per target, so each partial sum has one owner and a fixed order.
__device__ void accumulate_removed(const TileParams& p, const Tile& t) {
  double* part = p.partial + static_cast<int64_t>(blockIdx.x) * (4 + 4 * int64_t(p.K));
  for (int k = threadIdx.x; k < p.K; k += kThreads) {
    const int m = static_cast<int>(p.targets[k * p.ts]);
    double q_in = 0.0, c_in = 0.0, q_out = 0.0, c_out = 0.0;
    for (int col = 0; col < t.cols; ++col) {
      const int e = col / p.A;
      const ColStat cs = t.stat[col];
      const uint8_t* mrow = t.member + e * p.M;
      const Removed rm = removed_models(p, m, mrow);
      const double* vcol = t.vals + col * p.Mp;
      double mean, m2;
      int n;
      const SideStats s_in{cs.n_in, cs.mean_in, cs.m2_in};
      if (rm.in >= 0) {
        side_stats_without(s_in, vcol, mrow, p.M, true, rm.in, &mean, &m2, &n);
      } else {
        stats_without(s_in, 0.0, false, &mean, &m2, &n);
      }
      q_in += m2;
      c_in += n;
      const SideStats s_out{cs.n_out, cs.mean_out, cs.m2_out};
      if (rm.out >= 0) {
        side_stats_without(s_out, vcol, mrow, p.M, false, rm.out, &mean, &m2, &n);
      } else {
        stats_without(s_out, 0.0, false, &mean, &m2, &n);
      }
      q_out += m2;
      c_out += n;
    }
    double* mine = part + 4 + 4 * int64_t(k);
    mine[0] += q_in;
    mine[1] += c_in;
    mine[2] += q_out;
    mine[3] += c_out;
  }
}

// ---------------------------------------------------------------------------------------
// The tile kernel

template <class T, bool FromLogits>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm) lira_tile_kernel(const TileParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  unsigned char* ws = p.ws_global ? p.ws + blockIdx.x * p.ws_stride : smem;
  Tile t;
  t.member = ws + p.ws_member;
  t.vals = reinterpret_cast<double*>(ws + p.ws_vals);
  t.sorted = reinterpret_cast<double*>(ws + p.ws_sorted);
  t.stat = reinterpret_cast<ColStat*>(smem + p.sm_colstat);
  t.labels = reinterpret_cast<int64_t*>(smem + p.sm_labels);
  double* wtot = reinterpret_cast<double*>(smem + p.sm_wtot);
  if (p.phase == Phase::loo_pooled) {
    for (int i = threadIdx.x; i < 4 * kWarps; i += kThreads) wtot[i] = 0.0;
  }
  long long nonfinite = 0, bad_label = 0, nonfinite_scores = 0;

  const int64_t ntiles = (p.N + p.E - 1) / p.E;
  for (int64_t tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
    t.n0 = tile * p.E;
    t.Et = static_cast<int>(p.N - t.n0 < p.E ? p.N - t.n0 : p.E);
    t.cols = t.Et * p.A;
    // Membership [Et][M]: neighbouring threads read neighbouring examples of a model.
    for (int r = threadIdx.x; r < t.Et * p.M; r += kThreads) {
      const int m = r / t.Et, e = r - m * t.Et;
      t.member[e * p.M + m] = p.keep[m * p.ks0 + (t.n0 + e) * p.ks1] != 0;
    }
    if (FromLogits) {
      for (int e = threadIdx.x; e < t.Et; e += kThreads) t.labels[e] = p.labels[(t.n0 + e) * p.ls];
    }
    __syncthreads();
    if constexpr (FromLogits) {
      fill_from_logits<T>(p, t, smem, nonfinite, bad_label, nonfinite_scores);
    } else {
      fill_from_scores<T>(p, t, nonfinite_scores);
    }
    __syncthreads();
    analyze_columns(p, t, smem);
    __syncthreads();
    if (p.phase == Phase::loo_score) score_targets(p, t);
    if (p.phase == Phase::loo_pooled) accumulate_removed(p, t);
    __syncthreads();  // the next tile overwrites the workspace
  }

  if (p.phase == Phase::loo_pooled) {
    if (threadIdx.x < 4) {
      double s = 0.0;
      for (int w = 0; w < kWarps; ++w) s += wtot[w * 4 + threadIdx.x];
      p.partial[static_cast<int64_t>(blockIdx.x) * (4 + 4 * int64_t(p.K)) + threadIdx.x] = s;
    }
  } else {
    // The CPU counts bad input in the fit and in the scoring pass only.
    flush_count(nonfinite, p.counts + 0);
    flush_count(bad_label, p.counts + 1);
    flush_count(nonfinite_scores, p.counts + 2);
  }
}

// Pooled spreads without each target, from the pre-pass sums (blocks added in order):
// sum of M2 without target k's models / sum of their counts, as cpu::lira_loo. (The
// first four slots of a block's row hold the totals of all models, unused here.)
__global__ void pooled_sd_kernel(const double* partial, int nblocks, int K, double* pooled_sd) {
  const int64_t row = 4 + 4 * int64_t(K);
  for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < K; k += gridDim.x * blockDim.x) {
    double kept[4] = {0.0, 0.0, 0.0, 0.0};
    for (int b = 0; b < nblocks; ++b) {
      for (int j = 0; j < 4; ++j) kept[j] += partial[b * row + 4 + 4 * k + j];
    }
    pooled_sd[2 * k] = kept[1] > 0 ? sqrt(kept[0] / kept[1]) : NAN;
    pooled_sd[2 * k + 1] = kept[3] > 0 ? sqrt(kept[2] / kept[3]) : NAN;
  }
}

// Score a target's observations against fitted statistics: twin of cpu::lira_score.
struct ScoreParams {
  const void* target;
  DType tdtype;
  int64_t t0, t1;
  const double *mu_in, *mu_out, *sd_in, *sd_out;
  int64_t mi0, mi1, mo0, mo1, si0, si1, so0, so1;
  double* out;
  int64_t os;
  int64_t N;
  int A;
  Mode mode;
  Offline offline;
  unsigned long long* counts;  // [nonfinite scores, empty]
};

__global__ void __launch_bounds__(kThreads) lira_score_kernel(const ScoreParams p) {
  long long nonfinite = 0, empty = 0;
  const bool online = p.mode == Mode::online;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < p.N;
       j += step) {
    double acc = 0.0;
    bool ok = true;
    for (int q = 0; q < p.A; ++q) {
      const double s = load_as_double(p.target, p.tdtype, j * p.t0 + q * p.t1);
      nonfinite += !is_finite(s);
      const double mo = p.mu_out[j * p.mo0 + q * p.mo1], so = p.sd_out[j * p.so0 + q * p.so1];
      const double mi = online ? p.mu_in[j * p.mi0 + q * p.mi1] : 0.0;
      const double si = online ? p.sd_in[j * p.si0 + q * p.si1] : 1.0;
      if (!is_finite(mo) || !is_finite(mi)) ok = false;
      acc += lira_observation(p.mode, p.offline, s, mi, si, mo, so);
    }
    empty += !ok;
    p.out[j * p.os] = ok ? acc / p.A : NAN;
  }
  flush_count(nonfinite, p.counts + 0);
  flush_count(empty, p.counts + 1);
}

// ---------------------------------------------------------------------------------------
// Host side: planning the tiles and launching

int64_t align16(int64_t x) { return (x + 15) & ~int64_t(15); }

// Ranks, shapes and dtypes of every array were checked by the binding (bindings_lira.cpp).
void source_dims(const LiraSource& src, int64_t* M, int64_t* N, int64_t* A) {
  const Tensor& t = src.from_logits ? src.logits : src.scores;
  *M = t.shape[0];
  *N = t.shape[1];
  *A = t.shape[2];
}

// Shared memory of the current device: tiles are sized so that kBlocksPerSm blocks fit
// on an SM (target); a tile whose workspace exceeds what one block may have (limit) keeps
// its workspace in global memory instead.
struct SmemBudget {
  size_t target, limit;
};

SmemBudget smem_budget() {
  int device = 0, per_sm = 0, per_block = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device),
        "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
        "cudaDeviceGetAttribute");
  const size_t reserve = 2048;  // the runtime keeps 1 KiB per block
  const size_t limit = static_cast<size_t>(per_block);
  const size_t target = std::min(limit, static_cast<size_t>(per_sm) / kBlocksPerSm - reserve);
  return {target, limit};
}

// Fills the source, tiling and workspace fields of p. The workspace holds the tile's
// membership and one or two [cols][Mp] double arrays (observations, sorted columns); the
// rest of shared memory holds column statistics, labels and a union of the two logits
// staging buffers and the per-warp sort storage.
void plan_tiles(TileParams& p, const LiraSource& src, const Tensor& keep, Phase phase,
                Center center) {
  const SmemBudget budget = smem_budget();
  int64_t M, N, A;
  source_dims(src, &M, &N, &A);
  const Tensor& d = src.from_logits ? src.logits : src.scores;
  const int64_t C = src.from_logits ? d.shape[3] : 1;
  if (M > (int64_t(1) << 24) || A > (int64_t(1) << 16) || C > (int64_t(1) << 30))
    throw InputError("shadow data: too many models, augmentations or classes for the CUDA kernels");
  p.data = d.data;
  p.ds0 = d.strides[0];
  p.ds1 = d.strides[1];
  p.ds2 = d.strides[2];
  p.ds3 = src.from_logits ? d.strides[3] : 0;
  p.C = static_cast<int>(C);
  p.labels = src.from_logits ? src.labels.ptr<const int64_t>() : nullptr;
  p.ls = src.from_logits ? src.labels.strides[0] : 0;
  p.keep = keep.ptr<const uint8_t>();
  p.ks0 = keep.strides[0];
  p.ks1 = keep.strides[1];
  p.M = static_cast<int>(M);
  p.N = N;
  p.A = static_cast<int>(A);
  p.phase = phase;
  p.sorted = center == Center::median && phase != Phase::loo_pooled;
  p.fast_sort = M <= kSortCapacity;
  p.Mp = static_cast<int>(M | 1);
  const int64_t tsize = dtype_size(d.dtype);
  bool staged = src.from_logits && d.strides[3] == 1 && d.strides[2] == C &&
                d.strides[1] == A * C;

  // Sets the layout for E examples per tile and chunks of Mc models; returns the
  // workspace size (membership, observations and sorted columns). p.sm_end is then the
  // size of the rest: column statistics, labels, and a union of the two logits staging
  // buffers and the per-warp sort storage (never live at the same time).
  auto layout = [&](int64_t E, int64_t Mc) {
    const int64_t cols = E * A;
    p.E = static_cast<int>(E);
    p.ws_member = 0;
    p.ws_vals = align16(E * M);
    p.ws_sorted = p.ws_vals + align16(cols * p.Mp * 8);
    const int64_t ws_end = p.ws_sorted + (p.sorted ? align16(cols * p.Mp * 8) : 0);
    int64_t uni = 0;
    if (staged) uni = 2 * Mc * ((cols * C) | 1) * tsize;
    if (p.sorted && p.fast_sort)
      uni = std::max<int64_t>(uni, kWarps * int64_t(sizeof(typename WarpSort::TempStorage)));
    p.sm_colstat = 0;
    p.sm_labels = align16(cols * int64_t(sizeof(ColStat)));
    p.sm_union = p.sm_labels + align16(E * 8);
    p.sm_wtot = p.sm_union + align16(uni);
    p.sm_end = p.sm_wtot + kWarps * 4 * 8;
    p.Lp = staged ? static_cast<int>((cols * C) | 1) : 0;
    p.Mc = static_cast<int>(Mc);
    return ws_end;
  };
  // Shared memory needed, with the workspace in it or in global memory.
  auto need = [&](int64_t E, int64_t Mc, bool ws_shared) {
    const int64_t ws = layout(E, Mc);
    return static_cast<size_t>(p.sm_end + (ws_shared ? align16(ws) : 0));
  };

  // Examples per tile: about two columns per warp (longer contiguous reads per model),
  // fewer while shared memory is short.
  int64_t E = std::max<int64_t>(1, std::min<int64_t>(N, 2 * kWarps / std::max<int64_t>(A, 1)));
  while (E > 1 && need(E, kMaxChunk, true) > budget.target) --E;
  // Then, in order of preference: everything within the per-block target; everything
  // within what one block may have; the workspace in global memory. With very many
  // classes fewer models are staged at a time, and none if even one does not fit.
  auto largest_chunk = [&](bool ws_shared, size_t bytes) -> int64_t {
    for (int64_t c = kMaxChunk; c >= 1; c >>= 1) {
      if (need(E, c, ws_shared) <= bytes) return c;
    }
    return 0;
  };
  int64_t Mc = kMaxChunk;
  bool ws_shared = true;
  if (!staged) {
    ws_shared = need(E, Mc, true) <= budget.limit;
  } else if ((Mc = largest_chunk(true, budget.target)) == 0 &&
             (Mc = largest_chunk(true, budget.limit)) == 0) {
    ws_shared = false;
    Mc = largest_chunk(false, budget.limit);
    if (Mc == 0) {  // not even one model's slice fits: read the logits in place
      staged = false;
      Mc = kMaxChunk;
      ws_shared = need(E, Mc, true) <= budget.limit;
    }
  }
  const int64_t ws_bytes = layout(E, Mc);
  p.ws_global = !ws_shared;
  if (size_t(p.sm_end) > budget.limit)
    throw InputError("shadow data: too many augmentations for the CUDA kernels");
  // Indices inside a tile are 32-bit.
  if (E * A * int64_t(p.Mp) >= (int64_t(1) << 31) || E * M >= (int64_t(1) << 31))
    throw InputError("shadow data: too many models x augmentations for the CUDA kernels");
  p.staged = staged;
  p.Mc_log = 0;
  while ((1 << p.Mc_log) < p.Mc) ++p.Mc_log;
  if (p.ws_global) {
    p.ws_stride = align16(ws_bytes);
  } else {
    // Workspace first in shared memory, the rest after it.
    const int64_t shift = align16(ws_bytes);
    p.sm_colstat += shift;
    p.sm_labels += shift;
    p.sm_union += shift;
    p.sm_wtot += shift;
    p.sm_end += shift;
    p.ws_stride = 0;
  }
}

using TileKernel = void (*)(TileParams);

TileKernel pick_kernel(const LiraSource& src) {
  const DType t = src.from_logits ? src.logits.dtype : src.scores.dtype;
  const bool lg = src.from_logits;
  switch (t) {
    case DType::f16: return lg ? lira_tile_kernel<Half, true> : lira_tile_kernel<Half, false>;
    case DType::bf16:
      return lg ? lira_tile_kernel<BFloat16, true> : lira_tile_kernel<BFloat16, false>;
    case DType::f32: return lg ? lira_tile_kernel<float, true> : lira_tile_kernel<float, false>;
    case DType::f64: return lg ? lira_tile_kernel<double, true> : lira_tile_kernel<double, false>;
    default: throw InputError("scores/logits: unsupported dtype");
  }
}

// Blocks for a tile kernel: as many as fit on the device at once (the kernel loops over
// tiles), never more than there are tiles, and few enough that a global workspace stays
// under its cap.
int tile_grid(TileKernel kernel, const TileParams& p) {
  const size_t smem = static_cast<size_t>(p.sm_end);
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem)),
        "cudaFuncSetAttribute");
  int per_sm = 0, device = 0, sms = 1;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem),
        "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
        "cudaDeviceGetAttribute");
  const int64_t ntiles = (p.N + p.E - 1) / p.E;
  int64_t grid = std::min<int64_t>(ntiles, int64_t(std::max(per_sm, 1)) * sms);
  if (p.ws_global) grid = std::min<int64_t>(grid, int64_t(kGlobalWorkspaceCap) / p.ws_stride);
  return static_cast<int>(std::max<int64_t>(grid, 1));
}

void run_tiles(TileKernel kernel, TileParams p, int grid, cudaStream_t s) {
  std::unique_ptr<DeviceBuffer> ws;
  if (p.ws_global) {
    ws = std::make_unique<DeviceBuffer>(static_cast<size_t>(grid * p.ws_stride), s);
    p.ws = ws->as<unsigned char>();
  }
  kernel<<<grid, kThreads, static_cast<size_t>(p.sm_end), s>>>(p);
  check_launch("lira_tile_kernel");
}  // the workspace is released in stream order, after the kernel

void set_options(TileParams& p, const LiraOptions& o) {
  p.signal = o.signal;
  p.center = o.center;
  p.variance = o.variance;
  p.mode = o.mode;
  p.offline = o.offline;
  p.references = o.references;
  p.min_std = o.min_std;
}

// The target indices, read back to validate them as the CPU kernel does.
std::vector<int64_t> host_targets(const Tensor& tg, cudaStream_t s) {
  const int64_t K = tg.shape[0];
  std::vector<int64_t> out(K);
  if (K == 0) return out;
  if (tg.strides[0] < 0) throw InputError("targets: negative strides are not supported");
  const int64_t span = (K - 1) * tg.strides[0] + 1;
  std::vector<int64_t> raw(span);
  check(cudaMemcpyAsync(raw.data(), tg.data, span * sizeof(int64_t), cudaMemcpyDeviceToHost, s),
        "cudaMemcpyAsync (targets)");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  for (int64_t k = 0; k < K; ++k) out[k] = raw[k * tg.strides[0]];
  return out;
}

// The four fitted Gaussians' arrays [N, A] float64 (means and deviations, IN and OUT)
// into a kernel's parameters: written by the fit, read by the score.
template <class Params>
void bind_fit_stats(Params& p, const Tensor& mu_in, const Tensor& mu_out, const Tensor& sd_in,
                    const Tensor& sd_out) {
  p.mu_in = mu_in.ptr<double>();
  p.mu_out = mu_out.ptr<double>();
  p.sd_in = sd_in.ptr<double>();
  p.sd_out = sd_out.ptr<double>();
  p.mi0 = mu_in.strides[0];
  p.mi1 = mu_in.strides[1];
  p.mo0 = mu_out.strides[0];
  p.mo1 = mu_out.strides[1];
  p.si0 = sd_in.strides[0];
  p.si1 = sd_in.strides[1];
  p.so0 = sd_out.strides[0];
  p.so1 = sd_out.strides[1];
}

}  // namespace

LiraStatus lira_fit(const LiraFitArgs& a, std::uintptr_t stream) {
  const Tensor& src = a.source.from_logits ? a.source.logits : a.source.scores;
  DeviceGuard guard(src.device_id);
  const cudaStream_t s = as_stream(stream);
  TileParams p{};
  set_options(p, a.opt);
  plan_tiles(p, a.source, a.keep, Phase::fit, a.opt.center);
  bind_fit_stats(p, a.mu_in, a.mu_out, a.sd_in, a.sd_out);
  p.n_in = a.n_in.ptr<int64_t>();
  p.n_out = a.n_out.ptr<int64_t>();
  p.ni0 = a.n_in.strides[0];
  p.no0 = a.n_out.strides[0];
  Counters counts(3, s);
  p.counts = counts.data();
  if (p.N > 0 && p.A > 0) {
    const TileKernel kernel = pick_kernel(a.source);
    run_tiles(kernel, p, tile_grid(kernel, p), s);
  }
  const std::vector<int64_t> c = counts.fetch();
  LiraStatus st;
  st.signal.nonfinite = c[0];
  st.signal.bad_label = c[1];
  st.nonfinite_scores = c[2];
  return st;
}

LiraStatus lira_score(const LiraScoreArgs& a, std::uintptr_t stream) {
  DeviceGuard guard(a.target.device_id);
  const cudaStream_t s = as_stream(stream);
  ScoreParams p{};
  p.target = a.target.data;
  p.tdtype = a.target.dtype;
  p.t0 = a.target.strides[0];
  p.t1 = a.target.strides[1];
  bind_fit_stats(p, a.mu_in, a.mu_out, a.sd_in, a.sd_out);
  p.out = a.out.ptr<double>();
  p.os = a.out.strides[0];
  p.N = a.target.shape[0];
  p.A = static_cast<int>(a.target.shape[1]);
  p.mode = a.opt.mode;
  p.offline = a.opt.offline;
  Counters counts(2, s);
  p.counts = counts.data();
  if (p.N > 0) {
    lira_score_kernel<<<grid_size(p.N, kThreads, 8), kThreads, 0, s>>>(p);
    check_launch("lira_score_kernel");
  }
  const std::vector<int64_t> c = counts.fetch();
  LiraStatus st;
  st.nonfinite_scores = c[0];
  st.clamped.assign(1, 0);
  st.empty.assign(1, c[1]);
  return st;
}

LiraStatus lira_loo(const LiraLooArgs& a, std::uintptr_t stream) {
  const Tensor& src = a.source.from_logits ? a.source.logits : a.source.scores;
  int64_t M, N, A;
  source_dims(a.source, &M, &N, &A);
  DeviceGuard guard(src.device_id);
  const cudaStream_t s = as_stream(stream);
  const std::vector<int64_t> targets = host_targets(a.targets, s);
  for (const int64_t t : targets) {
    if (t < 0 || t >= M) throw InputError("targets: model index out of range");
  }
  const int64_t K = static_cast<int64_t>(targets.size());
  if (K > (int64_t(1) << 24)) throw InputError("targets: too many targets");
  LiraStatus st;
  st.clamped.assign(K, 0);
  st.empty.assign(K, 0);
  if (K == 0 || N == 0 || A == 0) return st;

  Counters counts(3 + 2 * K, s);
  const TileKernel kernel = pick_kernel(a.source);
  TileParams p{};
  set_options(p, a.opt);
  p.targets = a.targets.ptr<const int64_t>();
  p.ts = a.targets.strides[0];
  p.K = static_cast<int>(K);
  p.out = a.out.ptr<double>();
  p.os0 = a.out.strides[0];
  p.os1 = a.out.strides[1];
  p.counts = counts.data();

  // Pooled variance: a first pass sums, per target, the M2 its removal takes away.
  std::unique_ptr<DeviceBuffer> pooled;
  if (a.opt.variance == Variance::global) {
    TileParams q = p;
    plan_tiles(q, a.source, a.keep, Phase::loo_pooled, a.opt.center);
    const int grid = tile_grid(kernel, q);
    const size_t row = static_cast<size_t>(4 + 4 * K);
    DeviceBuffer partial(grid * row * sizeof(double), s);
    check(cudaMemsetAsync(partial.as<double>(), 0, grid * row * sizeof(double), s),
          "cudaMemsetAsync (partial sums)");
    q.partial = partial.as<double>();
    run_tiles(kernel, q, grid, s);
    pooled = std::make_unique<DeviceBuffer>(static_cast<size_t>(2 * K) * sizeof(double), s);
    pooled_sd_kernel<<<grid_size(K, kThreads, 4), kThreads, 0, s>>>(
        partial.as<double>(), grid, static_cast<int>(K), pooled->as<double>());
    check_launch("pooled_sd_kernel");
    p.pooled_sd = pooled->as<double>();
  }

  plan_tiles(p, a.source, a.keep, Phase::loo_score, a.opt.center);
  run_tiles(kernel, p, tile_grid(kernel, p), s);

  const std::vector<int64_t> c = counts.fetch();
  st.signal.nonfinite = c[0];
  st.signal.bad_label = c[1];
  st.nonfinite_scores = c[2];
  for (int64_t k = 0; k < K; ++k) {
    st.clamped[k] = c[3 + k];
    st.empty[k] = c[3 + K + k];
  }
  return st;
}

}  // namespace cuda
}  // namespace miakit
