// Kernel entry points of the ROC metrics (docs/methods/metrics.md). CPU only: the metrics
// run on the host arrays the attacks return.
#pragma once

#include <cstdint>

#include "tensor.h"

namespace miakit {

struct RankStatus {
  int64_t nonfinite = 0;    // NaN/inf scores
  int64_t bad_cluster = 0;  // cluster ids outside [0, n_clusters)
  int64_t n_pos = 0, n_neg = 0;
  int64_t points = 0;       // ROC points written (groups of equal scores + 1)
  int64_t skipped = 0;      // non-finite scores left out (skip_nonfinite)
  int64_t wins2 = 0;        // 2 x (member-above-non-member pairs + ties / 2): the AUC
                            // is wins2 / (2 n_pos n_neg); below 2^63 for n < 2^31
  int64_t youden_point = 0; // first point of the largest TPR - FPR (0: none above 0)
};

// scores [n] float64, members [n] uint8 (0/1), clusters [n] int64 or absent (data null:
// every score its own cluster, n_clusters = n; or, with period > 0, score i in cluster
// i % period, n_clusters = period: the columns of a C-ordered [rows, period] matrix).
// skip_nonfinite: NaN/inf scores are left out (counted in skipped) instead of refused. Per-point outputs [n + 1]: thr float64,
// tp/fp int64. order [n] uint32: the walk's payloads (cluster | member << 31) in ranked
// order. Per-cluster outputs [n_clusters]: n_pos_c/n_neg_c int64, sum_v/sum_w float64.
// See cpu/rank.cpp.
// The sort runs inside these output buffers (cpu/rank.cpp): no other memory per score.
struct RankArgs {
  Tensor scores, members, clusters;
  int64_t period = 0;
  bool skip_nonfinite = false;
  Tensor thr, tp, fp, order;
  Tensor n_pos_c, n_neg_c, sum_v, sum_w;
};

// order [n] uint32 from rank_scores, positions [P] int64 ascending in [0, n] (elements at
// or above each point: tp + fp), n_pos_c/n_neg_c [n_clusters] int64; out [12, P] float64:
// per class (members, then non-members) sum k^2, sum k n, sum k^4, k^3 n, k^2 n^2, k n^3.
struct ClusterSumArgs {
  Tensor order, positions, n_pos_c, n_neg_c, out;
};

namespace cpu {
RankStatus rank_scores(const RankArgs& a);
// 0 on success; j + 1 when positions[j] is out of range or out of order; -1 when a
// payload names a cluster outside [0, n_clusters).
int64_t cluster_sums(const ClusterSumArgs& a);
}  // namespace cpu

}  // namespace miakit
