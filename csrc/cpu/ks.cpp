// CPU kernels of the two-sample K-S statistic (include/miakit/ks.h), pairs shared by the
// threads:
// - ks_merge: one merge of sorted samples per pair;
// - ks_unsorted: the same extremes from unsorted samples, without sorting them whole.
//   Each pair's values are dealt into buckets of value (a monotone function of the
//   value, so that a bucket is an interval and equal values share one). The bucket
//   counts give F_a - F_b exactly at every bucket's last value, a lower bound of the
//   largest difference (and an upper one of the smallest), and bound the difference
//   anywhere inside a bucket by the counts at its two ends; only the buckets whose
//   bound reaches the best difference seen are dealt again, finer, or sorted and merged
//   (ks_merge_run). Every value at which the extreme is attained lies in such a bucket,
//   so the result is the full merge's (see the note at ks_unsorted_pair).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels_attack.h"
#include "miakit/ks.h"
#include "parallel.h"
#include "scratch.h"
#include "isa.h"

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

namespace {

// Tuned on 2 x 1,000 normal values per pair (bench/bench_ks.py): finer buckets bound the
// runs more tightly but cost more bookkeeping per level.
using BucketId = uint16_t;
constexpr int kMaxBuckets = 256;  // buckets of one level
constexpr int64_t kPerBucket = 8;  // values per bucket on average
constexpr int kMaxDepth = 4;      // levels of dealing before a run is sorted whatever its size
constexpr int64_t kLeaf = 32;     // runs this small are merged by counting

// Scratch of one thread: per level, the dealt values (both samples) and their bucket ids.
struct KsScratch {
  Isa isa = Isa::generic;  // instruction set of the vectorized loops (isa.h)
  std::vector<double> values;
  std::vector<BucketId> ids;
  int64_t stride = 0;  // entries per level

  // For pairs of up to `total` values together.
  KsScratch(Isa set, int64_t total)
      : isa(set),
        values(scratch_count({total + 2, kMaxDepth + 2}, sizeof(double), "a_values, b_values")),
        ids(scratch_count({total + 2, kMaxDepth + 2}, sizeof(BucketId), "a_values, b_values")),
        stride(total + 2) {}
  double* level_values(int depth) { return values.data() + stride * depth; }
  BucketId* level_ids(int depth) { return ids.data() + stride * depth; }
};

struct KsPair {
  int64_t n, m;        // full sample sizes
  KsSides sides;       // which extremes must be exact
  // largest and smallest i m - j n attained so far (bounds of the extremes), as doubles:
  // every i m - j n here is an integer below 2^53 in magnitude, so exact
  double best_max, best_min;
  KsState state;
};

// Can a run whose i m - j n lies within [lower, upper] hold a wanted extreme?
bool wanted(const KsPair& p, double upper, double lower) {
  switch (p.sides) {
    case KsSides::max: return upper >= p.best_max;
    case KsSides::min: return lower <= p.best_min;
    case KsSides::larger: return std::max(upper, -lower) >= std::max(p.best_max, -p.best_min);
    default: return upper >= p.best_max || lower <= p.best_min;
  }
}

// Sorts a copy of the run and merges it.
void sorted_leaf(const double* a, int64_t na, const double* b, int64_t nb, int64_t i0,
                 int64_t j0, KsPair& p, double* tmp) {
  std::copy(a, a + na, tmp);
  std::copy(b, b + nb, tmp + na);
  std::sort(tmp, tmp + na);
  std::sort(tmp + na, tmp + na + nb);
  ks_merge_run(tmp, na, tmp + na, nb, i0, j0, p.n, p.m, p.state);
}

// A small run, unsorted: each value's counts i, j by counting (for every value of a,
// the run's values it does not exceed, 8 lanes at a time), each value then offered to
// its sample's side out of order (ks_update_* decide by (k, double, value), not by
// arrival).
MIAKIT_ISA_BODY void counted_leaf_body(const double* a, int64_t na, const double* b, int64_t nb,
                                       int64_t i0, int64_t j0, KsPair& p) {
  constexpr int64_t kCap = kLeaf + 8;
  alignas(64) double v[kCap];
  alignas(64) int64_t ci[kCap], cj[kCap];
  const int64_t len = na + nb, padded = (len + 7) / 8 * 8;
  std::copy(a, a + na, v);
  std::copy(b, b + nb, v + na);
  std::fill(v + len, v + padded, 0.0);
  std::fill(ci, ci + padded, 0);
  std::fill(cj, cj + padded, 0);
  for (int64_t u = 0; u < na; ++u) {
    const double x = a[u];
    for (int64_t t = 0; t < padded; ++t) ci[t] += v[t] >= x;
  }
  for (int64_t u = 0; u < nb; ++u) {
    const double x = b[u];
    for (int64_t t = 0; t < padded; ++t) cj[t] += v[t] >= x;
  }
  const double dn = static_cast<double>(p.n), dm = static_cast<double>(p.m);
  for (int64_t t = 0; t < len; ++t) {
    const int64_t i = i0 + ci[t], j = j0 + cj[t];
    const int64_t k = i * p.m - j * p.n;
    const bool in_a = t < na;
    ks_update_max(in_a ? p.state.max_a : p.state.max_b, k, i, j, dn, dm, v[t]);
    ks_update_min(in_a ? p.state.min_a : p.state.min_b, k, i, j, dn, dm, v[t]);
    p.best_max = std::max(p.best_max, static_cast<double>(k));
    p.best_min = std::min(p.best_min, static_cast<double>(k));
  }
}
MIAKIT_ISA_DISPATCH(void, counted_leaf,
                    (const double* a, int64_t na, const double* b, int64_t nb, int64_t i0,
                     int64_t j0, KsPair& p),
                    (a, na, b, nb, i0, j0, p))

// Are all values finite? (x * 0 is 0 for a finite x, NaN otherwise; 8 lanes apart.)
// A pass of its own: fused into value_range it measured slower.
MIAKIT_ISA_BODY bool all_finite_body(const double* a, int64_t na, const double* b, int64_t nb) {
  double z[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int side = 0; side < 2; ++side) {
    const double* x = side == 0 ? a : b;
    const int64_t len = side == 0 ? na : nb;
    int64_t t = 0;
    for (; t + 8 <= len; t += 8) {
      for (int u = 0; u < 8; ++u) z[u] += x[t + u] * 0.0;
    }
    for (; t < len; ++t) z[0] += x[t] * 0.0;
  }
  double all = 0.0;
  for (int u = 0; u < 8; ++u) all += z[u];
  return all == 0.0;
}
MIAKIT_ISA_DISPATCH(bool, all_finite, (const double* a, int64_t na, const double* b, int64_t nb),
                    (a, na, b, nb))

// Smallest and largest value of the run (finite values: the comparisons are minpd/maxpd).
MIAKIT_ISA_BODY void value_range_body(const double* a, int64_t na, const double* b, int64_t nb,
                                      double& lo_out, double& hi_out) {
  double l[8], h[8];
  for (int u = 0; u < 8; ++u) l[u] = h[u] = na > 0 ? a[0] : b[0];
  for (int side = 0; side < 2; ++side) {
    const double* x = side == 0 ? a : b;
    const int64_t len = side == 0 ? na : nb;
    int64_t t = 0;
    for (; t + 8 <= len; t += 8) {
      for (int u = 0; u < 8; ++u) {
        l[u] = x[t + u] < l[u] ? x[t + u] : l[u];
        h[u] = x[t + u] > h[u] ? x[t + u] : h[u];
      }
    }
    for (; t < len; ++t) {
      l[0] = x[t] < l[0] ? x[t] : l[0];
      h[0] = x[t] > h[0] ? x[t] : h[0];
    }
  }
  double lo = l[0], hi = h[0];
  for (int u = 1; u < 8; ++u) {
    lo = l[u] < lo ? l[u] : lo;
    hi = h[u] > hi ? h[u] : hi;
  }
  lo_out = lo;
  hi_out = hi;
}
MIAKIT_ISA_DISPATCH(void, value_range,
                    (const double* a, int64_t na, const double* b, int64_t nb, double& lo_out,
                     double& hi_out),
                    (a, na, b, nb, lo_out, hi_out))

// Bucket ids: floor((v - lo) * scale), capped at top; non-decreasing in v (every step
// rounds monotonically), so a bucket is an interval of values and equal values share it.
MIAKIT_ISA_BODY void bucket_ids_body(const double* x, int64_t len, double lo, double scale,
                                     int top, BucketId* ids) {
  for (int64_t t = 0; t < len; ++t) {
    const int k = static_cast<int>((x[t] - lo) * scale);
    ids[t] = static_cast<BucketId>(k < top ? k : top);
  }
}
MIAKIT_ISA_DISPATCH(void, bucket_ids,
                    (const double* x, int64_t len, double lo, double scale, int top, BucketId* ids),
                    (x, len, lo, scale, top, ids))

// Bucket k holds the values of a ca[k] .. ca[k+1] and of b cb[k] .. cb[k+1] (running
// counts of this run, offsets i0 m - j0 n = base): its last value has i m - j n =
// base + ca[k+1] m - cb[k+1] n exactly, which updates the best values; inside it
// i m - j n lies within [base + ca[k] m - cb[k+1] n, base + ca[k+1] m - cb[k] n]. keep[k]:
// the bucket is not empty and that interval reaches a wanted extreme (as wanted()).
MIAKIT_ISA_BODY void bucket_bounds_body(const int32_t* ca, const int32_t* cb, int buckets,
                                        double base, double dm, double dn, KsSides sides,
                                        double& best_max, double& best_min, uint8_t* keep) {
  double hi[8], lo[8];
  for (int u = 0; u < 8; ++u) {
    hi[u] = best_max;
    lo[u] = best_min;
  }
  int k = 0;
  for (; k + 8 <= buckets; k += 8) {
    for (int u = 0; u < 8; ++u) {
      const double end = base + ca[k + u + 1] * dm - cb[k + u + 1] * dn;
      hi[u] = end > hi[u] ? end : hi[u];
      lo[u] = end < lo[u] ? end : lo[u];
    }
  }
  for (; k < buckets; ++k) {
    const double end = base + ca[k + 1] * dm - cb[k + 1] * dn;
    hi[0] = end > hi[0] ? end : hi[0];
    lo[0] = end < lo[0] ? end : lo[0];
  }
  for (int u = 0; u < 8; ++u) {
    best_max = hi[u] > best_max ? hi[u] : best_max;
    best_min = lo[u] < best_min ? lo[u] : best_min;
  }
  const double big = std::max(best_max, -best_min);
  for (k = 0; k < buckets; ++k) {
    const double upper = base + ca[k + 1] * dm - cb[k] * dn;
    const double lower = base + ca[k] * dm - cb[k + 1] * dn;
    const bool filled = ca[k + 1] + cb[k + 1] > ca[k] + cb[k];
    const bool up = upper >= best_max, down = lower <= best_min;
    bool want;
    switch (sides) {
      case KsSides::max: want = up; break;
      case KsSides::min: want = down; break;
      case KsSides::larger: want = std::max(upper, -lower) >= big; break;
      default: want = up || down;
    }
    keep[k] = filled && want;
  }
}
MIAKIT_ISA_DISPATCH(void, bucket_bounds,
                    (const int32_t* ca, const int32_t* cb, int buckets, double base, double dm,
                     double dn, KsSides sides, double& best_max, double& best_min, uint8_t* keep),
                    (ca, cb, buckets, base, dm, dn, sides, best_max, best_min, keep))

// The run of values a[0..na), b[0..nb) (unsorted; all values of the two samples in one
// interval, i0 and j0 values of a and b below it).
void solve(const double* a, int64_t na, const double* b, int64_t nb, int64_t i0, int64_t j0,
           KsPair& p, KsScratch& s, int depth) {
  double* out = s.level_values(depth);
  const int64_t len = na + nb;
  if (len <= kLeaf) {
    counted_leaf(s.isa, a, na, b, nb, i0, j0, p);
    return;
  }
  if (depth >= kMaxDepth) {
    sorted_leaf(a, na, b, nb, i0, j0, p, out);
    return;
  }
  double lo, hi;
  value_range(s.isa, a, na, b, nb, lo, hi);
  const int buckets =
      static_cast<int>(std::min<int64_t>(kMaxBuckets, std::max<int64_t>(2, len / kPerBucket)));
  const double width = hi - lo;
  const double scale = static_cast<double>(buckets) / width;
  if (!(width > 0.0) || !std::isfinite(width) || !std::isfinite(scale)) {
    sorted_leaf(a, na, b, nb, i0, j0, p, out);  // all equal, or a range too wide to divide
    return;
  }
  BucketId* ia = s.level_ids(depth);
  BucketId* ib = ia + na;
  bucket_ids(s.isa, a, na, lo, scale, buckets - 1, ia);
  bucket_ids(s.isa, b, nb, lo, scale, buckets - 1, ib);
  // counts per bucket (the two samples interleaved: two independent chains of updates),
  // then in place their running sums: ca[k] = values of a before bucket k
  int32_t ca[kMaxBuckets + 1], cb[kMaxBuckets + 1];
  std::fill(ca, ca + buckets + 1, 0);
  std::fill(cb, cb + buckets + 1, 0);
  const int64_t both = std::min(na, nb);
  for (int64_t t = 0; t < both; ++t) {
    ++ca[ia[t] + 1];
    ++cb[ib[t] + 1];
  }
  for (int64_t t = both; t < na; ++t) ++ca[ia[t] + 1];
  for (int64_t t = both; t < nb; ++t) ++cb[ib[t] + 1];
  for (int k = 0; k < buckets; ++k) {
    ca[k + 1] += ca[k];
    cb[k + 1] += cb[k];
  }
  // exact i m - j n at each bucket's last value, and which buckets can hold an extreme
  const double base = static_cast<double>(i0) * static_cast<double>(p.m) -
                      static_cast<double>(j0) * static_cast<double>(p.n);
  uint8_t keep[kMaxBuckets];
  bucket_bounds(s.isa, ca, cb, buckets, base, static_cast<double>(p.m), static_cast<double>(p.n),
                p.sides, p.best_max, p.best_min, keep);
  // deal the values of the kept buckets; the others go to a dump slot
  int32_t pos_a[kMaxBuckets], pos_b[kMaxBuckets];
  int32_t kept_a = 0, kept_b = 0;
  for (int k = 0; k < buckets; ++k) {
    pos_a[k] = kept_a;
    pos_b[k] = kept_b;
    kept_a += keep[k] ? ca[k + 1] - ca[k] : 0;
    kept_b += keep[k] ? cb[k + 1] - cb[k] : 0;
  }
  const int32_t dump = kept_a + kept_b;
  for (int k = 0; k < buckets; ++k) {
    pos_b[k] += kept_a;
    if (!keep[k]) pos_a[k] = pos_b[k] = dump;
  }
  for (int64_t t = 0; t < both; ++t) {
    const int ka = ia[t], kb = ib[t];
    out[pos_a[ka]] = a[t];
    pos_a[ka] += keep[ka];
    out[pos_b[kb]] = b[t];
    pos_b[kb] += keep[kb];
  }
  for (int64_t t = both; t < na; ++t) {
    const int k = ia[t];
    out[pos_a[k]] = a[t];
    pos_a[k] += keep[k];
  }
  for (int64_t t = both; t < nb; ++t) {
    const int k = ib[t];
    out[pos_b[k]] = b[t];
    pos_b[k] += keep[k];
  }
  // pos_a[k] now ends bucket k's values of a (and pos_b of b). The kept buckets, the most
  // promising first (the result does not depend on the order: ks_update_*), so that the
  // best values grow early and prune the rest.
  const double dm = static_cast<double>(p.m), dn = static_cast<double>(p.n);
  const auto upper = [&](int k) { return base + ca[k + 1] * dm - cb[k] * dn; };
  const auto lower = [&](int k) { return base + ca[k] * dm - cb[k + 1] * dn; };
  const auto promise = [&](int k) {
    switch (p.sides) {
      case KsSides::max: return upper(k);
      case KsSides::min: return -lower(k);
      default: return std::max(upper(k), -lower(k));
    }
  };
  int order[kMaxBuckets];
  double score[kMaxBuckets];
  int kept = 0;
  for (int k = 0; k < buckets; ++k) {
    if (!keep[k]) continue;
    const double sc = promise(k);
    int u = kept++;
    while (u > 0 && score[u - 1] < sc) {  // insertion: few buckets are kept
      score[u] = score[u - 1];
      order[u] = order[u - 1];
      --u;
    }
    score[u] = sc;
    order[u] = k;
  }
  for (int q = 0; q < kept; ++q) {
    const int k = order[q];
    if (!wanted(p, upper(k), lower(k))) continue;  // the best values have grown since
    const int32_t na_k = ca[k + 1] - ca[k], nb_k = cb[k + 1] - cb[k];
    solve(out + pos_a[k] - na_k, na_k, out + pos_b[k] - nb_k, nb_k, i0 + ca[k], j0 + cb[k], p, s,
          depth + 1);
  }
}

// One pair from unsorted samples (NaN results when a value is NaN or infinite).
//
// Why the pruned merge equals the full one: the full merge's maximum (likewise minimum)
// is decided by the values where i m - j n attains its largest value K: the winner is
// the largest (k, double i / n - j / m, -value) (ks_update_max), each sample's values
// apart, a's kept on a tie of the doubles with b's. Every value attaining K is offered
// here, so the side(s) attaining K end in the same state. A side whose best is below K
// loses the final comparison in both merges, provided doubles of different k are ordered
// like k: |i / n - j / m - k / (n m)| <= 3 * 2^-54 in floating point, so this holds when
// 1 / (n m) > 6 * 2^-54, i.e. n m < 2^53 / 3 (we take 10^15); larger pairs are sorted
// and merged whole. With sides = KsSides::larger only the extreme of larger magnitude is kept
// exact (both when they tie): every value attaining it lies in a run whose bound reaches
// the best magnitude seen.
KsExtremes ks_unsorted_pair(const double* a, int64_t n, const double* b, int64_t m,
                            KsSides sides, KsScratch& s) {
  if (!all_finite(s.isa, a, n, b, m)) {  // NaN or inf: the caller reports it
    const double nan = std::numeric_limits<double>::quiet_NaN();
    return KsExtremes{nan, nan, nan, nan};
  }
  KsPair p{n, m, sides, -std::numeric_limits<double>::infinity(),
           std::numeric_limits<double>::infinity(), ks_state()};
  const double nm = static_cast<double>(n) * static_cast<double>(m);
  if (nm >= 1.0e15) {
    sorted_leaf(a, n, b, m, 0, 0, p, s.level_values(0));
  } else {
    solve(a, n, b, m, 0, 0, p, s, 0);
  }
  return ks_finish(p.state);
}

}  // namespace

void ks_unsorted(const KsUnsortedArgs& a) {
  const int64_t B = a.d_max.shape[0];
  const double* av = a.a_values.ptr<double>();
  const double* bv = a.b_values.ptr<double>();
  const int64_t* ab = a.a_begin.ptr<int64_t>();
  const int64_t* ae = a.a_end.ptr<int64_t>();
  const int64_t* bb = a.b_begin.ptr<int64_t>();
  const int64_t* be = a.b_end.ptr<int64_t>();
  int64_t longest = 0;
  for (int64_t r = 0; r < B; ++r) longest = std::max(longest, (ae[r] - ab[r]) + (be[r] - bb[r]));
  const Isa isa = cpu_isa();
  const int threads = team_for(B);
  std::vector<KsScratch> scratch =
      per_thread<KsScratch>(threads, "a_values, b_values", isa, longest);
#pragma omp parallel num_threads(threads)
  {
    KsScratch& s = scratch[thread_id()];
#pragma omp for schedule(dynamic, 16)
    for (int64_t r = 0; r < B; ++r) {
      const KsExtremes e =
          ks_unsorted_pair(av + ab[r], ae[r] - ab[r], bv + bb[r], be[r] - bb[r], a.sides, s);
      a.d_max.ptr<double>()[r * a.d_max.strides[0]] = e.d_max;
      a.d_min.ptr<double>()[r * a.d_min.strides[0]] = e.d_min;
      a.loc_max.ptr<double>()[r * a.loc_max.strides[0]] = e.loc_max;
      a.loc_min.ptr<double>()[r * a.loc_min.strides[0]] = e.loc_min;
    }
  }
}

// ---------------------------------------------------------------------------------
// Asymptotic p-values: pieces of scipy.stats.kstwo.sf (scipy.stats._ksstats._kolmogn)
// that scipy evaluates one value at a time.

bool ks_smirnov_supported(int64_t n) {
  return LDBL_MANT_DIG >= 64 && n >= 2 && n <= kKsSmirnovMaxN;
}

namespace {

// Smirnov's one-sided P(D+_n >= x) = x sum_{j=0}^{floor(n (1 - x))} C(n, j)
// (1 - x - j/n)^(n-j) (x + j/n)^(j-1), every term from its logarithm in extended
// precision (64-bit significand): a logarithm of magnitude L (at most ~ n log n) costs
// ~ L 2^-64 relative, below 1e-13 for n <= kKsSmirnovMaxN; log C(n, j) is a compensated
// running sum. scipy (cephes smirnov) sums the same positive terms in double-double.
// logk[k] = log k for k = 1..n.
double ks_smirnov_sf_one(int64_t n, double x, const long double* logk) {
  using ld = long double;
  const ld nx = static_cast<ld>(n) * static_cast<ld>(x);
  const ld logn = logk[n];
  const int64_t last = static_cast<int64_t>(std::floor(static_cast<ld>(n) - nx));
  ld lc = 0.0L, lc_err = 0.0L, sum = 0.0L;
  for (int64_t j = 0; j <= last && j < n; ++j) {
    if (j > 0) {  // log C(n, j) = log C(n, j - 1) + log(n - j + 1) - log j, compensated
      const ld step = (logk[n - j + 1] - logk[j]) - lc_err;
      const ld t = lc + step;
      lc_err = (t - lc) - step;
      lc = t;
    }
    const ld a = static_cast<ld>(n - j) - nx;  // n (1 - x - j/n)
    if (!(a > 0.0L)) break;
    const ld b = static_cast<ld>(j) + nx;  // n (x + j/n)
    const ld lt = lc + static_cast<ld>(n - j) * (std::log(a) - logn) +
                  static_cast<ld>(j - 1) * (std::log(b) - logn);
    sum += std::exp(lt);
  }
  return static_cast<double>(static_cast<ld>(x) * sum);
}

// log k! - (k log k - k + log(2 pi k) / 2), k >= 1: Stirling's series from k = 10 on.
double stirling_rest(int64_t k) {
  if (k < 10) {
    const double dk = static_cast<double>(k);
    return std::lgamma(dk + 1.0) - (dk * std::log(dk) - dk + 0.5 * std::log(2.0 * M_PI * dk));
  }
  const double r = 1.0 / static_cast<double>(k), r2 = r * r;
  return r * (1.0 / 12 - r2 * (1.0 / 360 - r2 * (1.0 / 1260 - r2 * (1.0 / 1680))));
}

// The same sum in double precision, each term's logarithm rearranged so that no part of
// it is much larger than n x (log C(n, j) by Stirling's formula, its n log n - j log j -
// (n - j) log(n - j) cancelled against the powers):
//   log term_j = (n - j) log1p(-n x / (n - j)) + j log1p(n x / j) - log((j + n x) / n)
//                + log(n / (2 pi j (n - j))) / 2 + rest(n) - rest(j) - rest(n - j).
// Rounding then costs ~ n x 2^-53 relative per term: below 3e-13 for n x <= 1000
// (kKsSmirnovDoubleNx); beyond, the extended-precision sum.
double ks_smirnov_sf_double(int64_t n, double x) {
  const double dn = static_cast<double>(n), nx = dn * x;
  const int64_t last = static_cast<int64_t>(std::floor(dn - nx));
  const double rest_n = stirling_rest(n);
  double sum = std::exp(dn * std::log1p(-x)) / x;  // j = 0: (1 - x)^n / x
  for (int64_t j = 1; j <= last && j < n; ++j) {
    const double nj = static_cast<double>(n - j), dj = static_cast<double>(j);
    if (!(nj - nx > 0.0)) break;
    const double lam = nj * std::log1p(-nx / nj) + dj * std::log1p(nx / dj) + rest_n -
                       stirling_rest(j) - stirling_rest(n - j);
    sum += std::exp(lam) * std::sqrt(dn / (2.0 * M_PI * dj * nj)) * (dn / (dj + nx));
  }
  return x * sum;
}

constexpr double kKsSmirnovDoubleNx = 1000.0;

}  // namespace

void ks_smirnov_sf(const int64_t* n, const double* x, double* out, int64_t count) {
  int64_t largest = 0;  // the extended-precision sums' log k table
  for (int64_t r = 0; r < count; ++r) {
    if (static_cast<double>(n[r]) * x[r] > kKsSmirnovDoubleNx) largest = std::max(largest, n[r]);
  }
  std::vector<long double> logk(static_cast<size_t>(largest + 1), 0.0L);
  for (int64_t k = 1; k <= largest; ++k) logk[k] = std::log(static_cast<long double>(k));
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t r = 0; r < count; ++r) {
    out[r] = static_cast<double>(n[r]) * x[r] <= kKsSmirnovDoubleNx
                 ? ks_smirnov_sf_double(n[r], x[r])
                 : ks_smirnov_sf_one(n[r], x[r], logk.data());
  }
}

namespace {

using Matrix = std::vector<double>;

Matrix matmul(const Matrix& a, const Matrix& b, int m) {
  Matrix c(static_cast<size_t>(m) * m, 0.0);
  for (int i = 0; i < m; ++i) {
    for (int k = 0; k < m; ++k) {
      const double aik = a[i * m + k];
      for (int j = 0; j < m; ++j) c[i * m + j] += aik * b[k * m + j];
    }
  }
  return c;
}

// P(D_n <= d) by Durbin's matrix (Marsaglia, Tsang and Wang 2003), step for step as
// scipy's _kolmogn_DMTW: the k-th diagonal entry of H^n n! / n^n, rescaled by 2^128.
double ks_kolmogorov_dmtw_cdf(int64_t n, double d) {
  const double e128 = std::ldexp(1.0, 128), em128 = std::ldexp(1.0, -128);
  if (d >= 1.0) return 1.0;
  const double nd = static_cast<double>(n) * d;
  if (nd <= 0.5) return 0.0;
  const int k = static_cast<int>(std::ceil(nd));
  const double h = k - nd;
  const int m = 2 * k - 1;
  std::vector<double> v(m), w(m);
  double fac = 1.0;
  for (int j = 1; j <= m; ++j) {
    v[j - 1] = 1.0 - std::pow(h, j);
    w[j - 1] = fac;
    fac /= j;
    v[j - 1] *= fac;
  }
  const double tt = std::pow(std::max(2 * h - 1.0, 0.0), m) - 2 * std::pow(h, m);
  v[m - 1] = (1.0 + tt) * fac;
  Matrix H(static_cast<size_t>(m) * m, 0.0);
  for (int i = 1; i < m; ++i) {
    for (int r = i - 1; r < m; ++r) H[r * m + i] = w[r - (i - 1)];
  }
  for (int r = 0; r < m; ++r) H[r * m] = v[r];
  for (int c = 0; c < m; ++c) H[(m - 1) * m + c] = v[m - 1 - c];
  Matrix P(static_cast<size_t>(m) * m, 0.0);
  for (int i = 0; i < m; ++i) P[i * m + i] = 1.0;
  int64_t nn = n;
  int64_t expnt = 0, hexpnt = 0;
  while (nn > 0) {
    if (nn % 2) {
      P = matmul(P, H, m);
      expnt += hexpnt;
    }
    H = matmul(H, H, m);
    hexpnt *= 2;
    if (std::abs(H[(k - 1) * m + (k - 1)]) > e128) {
      for (double& e : H) e /= e128;
      hexpnt += 128;
    }
    nn /= 2;
  }
  double p = P[(k - 1) * m + (k - 1)];
  for (int64_t i = 1; i <= n; ++i) {
    p = static_cast<double>(i) * p / static_cast<double>(n);
    if (std::abs(p) < em128) {
      p *= e128;
      expnt -= 128;
    }
  }
  if (expnt != 0) p = std::ldexp(p, static_cast<int>(expnt));
  return std::min(1.0, std::max(0.0, p));
}

}  // namespace

void ks_kolmogorov_dmtw(const int64_t* n, const double* x, double* out, int64_t count) {
  // Each value's matrices are as large as its n x makes them, so are allocated by the
  // iteration; a failure is carried out of the loop and thrown after it (the bindings
  // bound n x, so this is a last resort).
  FirstError error;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t r = 0; r < count; ++r)
    error.run([&] { out[r] = ks_kolmogorov_dmtw_cdf(n[r], x[r]); });
  error.rethrow();
}

}  // namespace cpu
}  // namespace miakit
