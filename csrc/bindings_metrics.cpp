// Bindings of the ROC metrics kernel: one ranking of an attack's scores.
#include "kernels_metrics.h"
#include "pyconvert.h"

namespace miakit {

void register_metrics(py::module_& m) {
  m.def("rank_scores", [](py::handle scores, py::handle members, py::handle clusters,
                          int64_t period, bool skip_nonfinite,
                          py::handle thr, py::handle tp, py::handle fp, py::handle order,
                          py::handle n_pos_c, py::handle n_neg_c, py::handle sum_v,
                          py::handle sum_w) {
    RankArgs a;
    a.scores = to_tensor(scores, "scores");
    const int64_t n = a.scores.ndim == 1 ? a.scores.shape[0] : -1;
    check_vec(a.scores, "scores", DType::f64, n);
    if (n >= (int64_t(1) << 31))
      throw InputError("scores: at most 2,147,483,647 scores can be ranked in one call");
    a.members = to_tensor(members, "members");
    check_vec(a.members, "members", DType::u8, n);
    if (!clusters.is_none()) {
      a.clusters = to_tensor(clusters, "clusters");
      check_vec(a.clusters, "clusters", DType::i64, n);
      if (period != 0) throw InputError("period: expected 0 when clusters are given");
    }
    if (period < 0 || (period > 0 && n % period != 0))
      throw InputError("period: expected 0 or a positive divisor of the number of scores");
    a.period = period;
    a.skip_nonfinite = skip_nonfinite;
    // the sort runs inside thr, tp and fp: contiguous, one entry more than the scores
    a.thr = to_tensor(thr, "thr", true);
    check_vec(a.thr, "thr", DType::f64, n + 1);
    check_contiguous(a.thr, "thr", DType::f64, 1, "a contiguous 1-D float64 array");
    a.tp = to_tensor(tp, "tp", true);
    check_vec(a.tp, "tp", DType::i64, n + 1);
    check_contiguous(a.tp, "tp", DType::i64, 1, "a contiguous 1-D int64 array");
    a.fp = to_tensor(fp, "fp", true);
    check_vec(a.fp, "fp", DType::i64, n + 1);
    check_contiguous(a.fp, "fp", DType::i64, 1, "a contiguous 1-D int64 array");
    a.order = to_tensor(order, "order", true);
    // payloads are 32-bit words (cluster | member << 31), held by numpy as int32
    check_contiguous(a.order, "order", DType::i32, 1, "a contiguous 1-D int32 array");
    check_shape(a.order, "order", {n}, "one entry per score");
    a.n_pos_c = to_tensor(n_pos_c, "n_pos_c", true);
    const int64_t nc = a.n_pos_c.ndim == 1 ? a.n_pos_c.shape[0] : -1;
    if (a.clusters.data == nullptr && nc != (period > 0 ? period : n))
      throw InputError("n_pos_c: expected one entry per cluster (per score without clusters, "
                       "per column with a period)");
    check_vec(a.n_pos_c, "n_pos_c", DType::i64, nc);
    if (nc >= (int64_t(1) << 31)) throw InputError("clusters: at most 2,147,483,647 clusters");
    a.n_neg_c = to_tensor(n_neg_c, "n_neg_c", true);
    check_vec(a.n_neg_c, "n_neg_c", DType::i64, nc);
    a.sum_v = to_tensor(sum_v, "sum_v", true);
    check_vec(a.sum_v, "sum_v", DType::f64, nc);
    a.sum_w = to_tensor(sum_w, "sum_w", true);
    check_vec(a.sum_w, "sum_w", DType::f64, nc);
    RankStatus st;
    {
      py::gil_scoped_release nogil;
      st = cpu::rank_scores(a);
    }
    py::dict d;
    d["nonfinite"] = st.nonfinite;
    d["bad_cluster"] = st.bad_cluster;
    d["n_pos"] = st.n_pos;
    d["n_neg"] = st.n_neg;
    d["points"] = st.points;
    d["skipped"] = st.skipped;
    d["wins2"] = st.wins2;
    d["youden_point"] = st.youden_point;
    return d;
  });

  m.def("rank_cluster_sums", [](py::handle order, py::handle positions, py::handle n_pos_c,
                                py::handle n_neg_c, py::handle out) {
    ClusterSumArgs a;
    a.order = to_tensor(order, "order");
    check_contiguous(a.order, "order", DType::i32, 1, "the contiguous int32 order of rank_scores");
    a.positions = to_tensor(positions, "positions");
    const int64_t P = a.positions.ndim == 1 ? a.positions.shape[0] : -1;
    check_vec(a.positions, "positions", DType::i64, P);
    if (a.positions.strides[0] != 1) throw InputError("positions: expected a contiguous array");
    a.n_pos_c = to_tensor(n_pos_c, "n_pos_c");
    const int64_t nc = a.n_pos_c.ndim == 1 ? a.n_pos_c.shape[0] : -1;
    check_vec(a.n_pos_c, "n_pos_c", DType::i64, nc);
    a.n_neg_c = to_tensor(n_neg_c, "n_neg_c");
    check_vec(a.n_neg_c, "n_neg_c", DType::i64, nc);
    a.out = to_tensor(out, "out", true);
    if (a.out.ndim != 2 || a.out.shape[0] != 12 || a.out.shape[1] != P ||
        a.out.dtype != DType::f64 || a.out.strides[1] != 1 || a.out.strides[0] != P)
      throw InputError("out: expected a contiguous float64 array of shape (12, positions)");
    int64_t r;
    {
      py::gil_scoped_release nogil;
      r = cpu::cluster_sums(a);
    }
    if (r > 0)
      throw InputError("positions: expected ascending element counts in [0, n], entry " +
                       std::to_string(r - 1) + " is not");
    if (r < 0) throw InputError("order: a payload names a cluster outside n_pos_c");
  });
}

}  // namespace miakit
