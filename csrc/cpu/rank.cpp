// CPU kernels ranking one attack's scores for every ROC metric (docs/methods/metrics.md).
//
// The audit reports, per attack, the ROC, the AUC with its cluster-robust standard error,
// TPR at several FPRs with cluster-robust intervals, leakage tests and an empirical
// epsilon. All of them are functions of one descending order of the scores.
//
// rank_scores computes that order once, by a parallel radix sort of order-preserving
// 64-bit keys (radix_sort: most significant digit first, then within the cache), each
// carrying its cluster and membership (so that the walk reads memory in
// order; the order within a group of equal scores does not matter to any output), then
// walks it once, writing at the end of every group of equal scores its score (thr) and the
// members / non-members at or above it (tp, fp), and per cluster the class counts and the
// sums of the AUC placements (a member's: the share of non-members it beats, ties one
// half; a non-member's: the share of members beating it, ties one half), from which the
// clustered AUC standard error follows. Index 0 of the per-point outputs is the point
// before any score (thr = +inf, counts 0). It also returns the walk's payloads in order.
//
// cluster_sums walks those payloads again up to the points asked for (given by their
// element counts tp + fp) and writes there, for members (p) and non-members (n), the
// running sums of sum_c k_c^2 (an element of cluster c, the k-th of its class there, adds
// 2k + 1) and of sum_c k_c n_c (it adds n_c, its cluster's class total): the
// cluster-robust variance of the TPR and FPR at a point follows from them in O(1). It
// also sums the fourth-moment terms k_c^4, k_c^3 n_c, k_c^2 n_c^2 and k_c n_c^3, from which
// sum_c (k_c - p n_c)^4 follows, and with it the effective number of clusters behind that
// variance (its Satterthwaite degrees of freedom). Only the few points the metrics use
// are asked for. The counts and second-moment sums are integers, exact.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels_metrics.h"
#include "parallel.h"
#include "radix_sort.h"

namespace miakit {
namespace cpu {

namespace {

using radix::ascending_key;
using radix::radix_sort;
using radix::value_of;

// Larger score -> smaller key; -0.0 and +0.0 share one key (they are equal scores).
inline uint64_t descending_key(double s) { return ~ascending_key(s); }

// The score back from its key.
inline double score_of(uint64_t key) { return value_of(~key); }

// What the walk needs of an element travels with its key: its cluster (its input
// position when there are no clusters) and whether it is a member (the top bit).
constexpr uint32_t kMemberBit = uint32_t(1) << 31;

}  // namespace

RankStatus rank_scores(const RankArgs& a) {
  const int64_t n = a.scores.shape[0];
  const bool clustered = a.clusters.data != nullptr;
  const int64_t n_clusters = a.n_pos_c.shape[0];
  RankStatus st;
  const double* sp = a.scores.ptr<double>();
  const uint8_t* y = a.members.ptr<uint8_t>();
  const int64_t* cl = clustered ? a.clusters.ptr<int64_t>() : nullptr;
  const int64_t ss = a.scores.strides[0], ys = a.members.strides[0];
  const int64_t cs = clustered ? a.clusters.strides[0] : 0;
  const int64_t period = a.period;
  // Kept scores go to positions in input order: each thread owns a block, counts what it
  // keeps, then writes from its offset.
  const int threads = std::max(1, max_threads());
  std::vector<int64_t> kept(static_cast<size_t>(threads) + 1, 0);
  int64_t bad = 0, bad_cluster = 0, n_pos = 0, n_kept = 0;
  // The sort needs no memory of its own: it runs in the output buffers, which the walk
  // fills only afterwards. Keys in tp[1..n] and thr[1..n] (as bits), payloads in order
  // and in the first half of fp[1..]. The walk writes point g (g <= the elements read so
  // far) to thr[g], tp[g], fp[g]; with the keys one slot ahead, it only overwrites keys
  // already read; the payloads are moved to order before it starts.
  double* thr = a.thr.ptr<double>();
  int64_t* tp = a.tp.ptr<int64_t>();
  int64_t* fp = a.fp.ptr<int64_t>();
  uint32_t* order = reinterpret_cast<uint32_t*>(a.order.ptr<int32_t>());
  uint64_t* key = reinterpret_cast<uint64_t*>(tp + 1);
  uint64_t* key2 = reinterpret_cast<uint64_t*>(thr + 1);
  uint32_t* pay = order;
  uint32_t* pay2 = reinterpret_cast<uint32_t*>(fp + 1);
#pragma omp parallel num_threads(threads) reduction(+ : bad, bad_cluster, n_pos)
  {
    const int t = thread_id(), nt = team_size();
    const int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
    int64_t mine = 0;
    for (int64_t i = lo; i < hi; ++i) mine += std::isfinite(sp[i * ss]) || !a.skip_nonfinite;
    kept[t + 1] = mine;
#pragma omp barrier
#pragma omp single
    {
      for (int u = 0; u < nt; ++u) kept[u + 1] += kept[u];
      n_kept = kept[nt];
    }
    int64_t at = kept[t];
    for (int64_t i = lo; i < hi; ++i) {
      const double s = sp[i * ss];
      const bool finite = std::isfinite(s);
      if (!finite && a.skip_nonfinite) continue;
      bad += !finite;
      const int64_t c = clustered ? cl[i * cs] : period > 0 ? i % period : i;
      bad_cluster += c < 0 || c >= n_clusters;
      const bool m = y[i * ys] != 0;
      n_pos += m;
      key[at] = descending_key(s);
      pay[at] = static_cast<uint32_t>(c) | (m ? kMemberBit : 0u);
      ++at;
    }
  }
  st.skipped = n - n_kept;
  st.nonfinite = bad;
  st.bad_cluster = bad_cluster;
  if (bad || bad_cluster) return st;
  const int64_t n_neg = n_kept - n_pos;
  st.n_pos = n_pos;
  st.n_neg = n_neg;

  int64_t* npc = a.n_pos_c.ptr<int64_t>();
  int64_t* nnc = a.n_neg_c.ptr<int64_t>();
  double* sum_v = a.sum_v.ptr<double>();
  double* sum_w = a.sum_w.ptr<double>();
  std::fill(npc, npc + n_clusters, 0);
  std::fill(nnc, nnc + n_clusters, 0);
  std::fill(sum_v, sum_v + n_clusters, 0.0);
  std::fill(sum_w, sum_w + n_clusters, 0.0);
  for (int64_t i = 0; i < n_kept; ++i) {
    const uint32_t p = pay[i];
    ((p & kMemberBit) ? npc : nnc)[p & ~kMemberBit] += 1;
  }
  if (radix_sort(key, pay, key2, pay2, n_kept)) {  // sorted pairs in (key2, pay2)
    key = key2;
    std::memcpy(order, pay2, static_cast<size_t>(n_kept) * sizeof(uint32_t));
  }
  thr[0] = std::numeric_limits<double>::infinity();
  tp[0] = fp[0] = 0;
  int64_t t_run = 0, f_run = 0, g = 0, wins2 = 0, best_point = 0;
  double best_gain = 0.0;
  const double inv_pos = n_pos ? 1.0 / static_cast<double>(n_pos) : 0.0;
  const double inv_neg = n_neg ? 1.0 / static_cast<double>(n_neg) : 0.0;
  for (int64_t i0 = 0; i0 < n_kept;) {
    // the group of equal scores and its class counts (sequential reads only)
    int64_t i1 = i0 + 1, members = pay[i0] >> 31;
    while (i1 < n_kept && key[i1] == key[i0]) members += pay[i1++] >> 31;
    const int64_t t0 = t_run, f0 = f_run;
    t_run += members;
    f_run += (i1 - i0) - members;
    // twice the Mann-Whitney count: each member of the group beats the non-members below
    // it (two halves each) and ties with the group's non-members (one half each)
    wins2 += members * (2 * (n_neg - f_run) + (f_run - f0));
    // Youden's point: the first point of the largest TPR - FPR (as numpy's argmax of
    // tp / n_pos - fp / n_neg over the points, point 0 giving 0)
    const double gain = static_cast<double>(t_run) / static_cast<double>(n_pos) -
                        static_cast<double>(f_run) / static_cast<double>(n_neg);
    // placements: a member beats the non-members below its group, ties one half; a
    // non-member is beaten by the members above it, ties one half
    const double v =
        (static_cast<double>(n_neg - f_run) + 0.5 * static_cast<double>(f_run - f0)) * inv_neg;
    const double w = (static_cast<double>(t0) + 0.5 * static_cast<double>(t_run - t0)) * inv_pos;
    for (int64_t i = i0; i < i1; ++i) {
      const uint32_t p = pay[i];
      if (p & kMemberBit) {
        sum_v[p & ~kMemberBit] += v;
      } else {
        sum_w[p & ~kMemberBit] += w;
      }
    }
    ++g;
    if (gain > best_gain) {
      best_gain = gain;
      best_point = g;
    }
    thr[g] = score_of(key[i0]);
    tp[g] = t_run;
    fp[g] = f_run;
    i0 = i1;
  }
  st.points = g + 1;
  st.wins2 = wins2;
  st.youden_point = best_point;
  return st;
}

int64_t cluster_sums(const ClusterSumArgs& a) {
  const uint32_t* order = a.order.ptr<uint32_t>();
  const int64_t n = a.order.shape[0], P = a.positions.shape[0];
  const int64_t n_clusters = a.n_pos_c.shape[0];
  const int64_t* pos = a.positions.ptr<int64_t>();
  const int64_t* npc = a.n_pos_c.ptr<int64_t>();
  const int64_t* nnc = a.n_neg_c.ptr<int64_t>();
  for (int64_t j = 0; j < P; ++j) {
    if (pos[j] < 0 || pos[j] > n || (j > 0 && pos[j] < pos[j - 1])) return j + 1;
  }
  for (int64_t i = 0; i < n; ++i) {
    if ((order[i] & ~kMemberBit) >= n_clusters) return -1;
  }
  // [12, P]: per class (members first, then non-members) sum_c k_c^2 and sum_c k_c n_c
  // (integers, exact), then sum_c k_c^4, k_c^3 n_c, k_c^2 n_c^2, k_c n_c^3 (doubles: they
  // only set the degrees of freedom of the interval, and k_c^4 can pass 2^63)
  double* out = a.out.ptr<double>();
  std::vector<int64_t> seen_p(n_clusters, 0), seen_n(n_clusters, 0);
  int64_t sq[2] = {0, 0}, kn[2] = {0, 0};
  double k4[2] = {0, 0}, k3n[2] = {0, 0}, k2n2[2] = {0, 0}, kn3[2] = {0, 0};
  int64_t i = 0;
  for (int64_t j = 0; j < P; ++j) {
    for (; i < pos[j]; ++i) {
      const uint32_t p = order[i];
      const uint32_t c = p & ~kMemberBit;
      const int side = (p & kMemberBit) ? 0 : 1;
      int64_t& seen = side == 0 ? seen_p[c] : seen_n[c];
      const int64_t k = seen++;  // k_c goes from k to k + 1
      const double nc = static_cast<double>(side == 0 ? npc[c] : nnc[c]);
      const double kd = static_cast<double>(k);
      sq[side] += 2 * k + 1;
      kn[side] += side == 0 ? npc[c] : nnc[c];
      k4[side] += ((4.0 * kd + 6.0) * kd + 4.0) * kd + 1.0;
      k3n[side] += nc * ((3.0 * kd + 3.0) * kd + 1.0);
      k2n2[side] += nc * nc * (2.0 * kd + 1.0);
      kn3[side] += nc * nc * nc;
    }
    for (int side = 0; side < 2; ++side) {
      double* o = out + 6 * side * P + j;
      o[0] = static_cast<double>(sq[side]);
      o[P] = static_cast<double>(kn[side]);
      o[2 * P] = k4[side];
      o[3 * P] = k3n[side];
      o[4 * P] = k2n2[side];
      o[5 * P] = kn3[side];
    }
  }
  return 0;
}

}  // namespace cpu
}  // namespace miakit
