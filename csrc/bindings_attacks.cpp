// Bindings of the attack kernels beyond LiRA: RMIA's counting.
#include <cmath>
#include <string>

#include "kernels_attack.h"
#include "miakit/ks.h"
#include "pyconvert.h"

namespace miakit {

namespace {

// The largest n x of ks_kstwo_piece's Durbin piece: a matrix of at most 2,000 x 2,000
// (scipy takes this method only while n x^2 < 2.2 and n <= 100,000, so n x < 470).
constexpr double kKsDurbinMaxNx = 1000.0;

// A pair's sample values: contiguous 1-D float64.
void check_samples(const Tensor& t, const char* name) {
  check_contiguous(t, name, DType::f64, 1, "contiguous 1-D float64 values");
}

// The four K-S outputs: float64, one entry per pair (on the CPU when on_cpu).
void check_pair_outputs(const Tensor& d_max, const Tensor& d_min, const Tensor& loc_max,
                        const Tensor& loc_min, int64_t B, bool on_cpu) {
  check_vec(d_max, "d_max", DType::f64, B, on_cpu);
  check_vec(d_min, "d_min", DType::f64, B, on_cpu);
  check_vec(loc_max, "loc_max", DType::f64, B, on_cpu);
  check_vec(loc_min, "loc_min", DType::f64, B, on_cpu);
}

// The p-value pieces' arguments: sample sizes n (int64), values v of `vdtype` and out
// (float64), contiguous 1-D CPU arrays of one length, which it returns.
int64_t check_sizes_values_out(const Tensor& n, const Tensor& v, const char* vname,
                               DType vdtype, const Tensor& out, const char* fn) {
  check_cpu({{"n", &n}, {vname, &v}, {"out", &out}}, fn);
  const std::string one_per = std::string("one per entry of ") + vname;
  check_contiguous(v, vname, vdtype, 1,
                   vdtype == DType::i64 ? "contiguous 1-D int64 values"
                                        : "contiguous 1-D float64 values");
  const int64_t R = v.shape[0];
  check_contiguous(n, "n", DType::i64, 1, "contiguous 1-D int64 values");
  check_shape(n, "n", {R}, one_per.c_str());
  check_contiguous(out, "out", DType::f64, 1, "a contiguous 1-D float64 array");
  check_shape(out, "out", {R}, one_per.c_str());
  return R;
}

}  // namespace

void register_attacks(py::module_& m) {
  // RMIA: out[r, i] = share of row r's population (pop_ratio, NaN = not in it) that
  // x_ratio[r, i] beats (x / z > gamma); self (or None) marks x's own population entry.
  m.def("rmia_count", [](py::handle x_ratio, py::handle pop_ratio, py::handle self,
                         py::handle sorted, py::handle out, double gamma,
                         std::uintptr_t stream) {
    RmiaCountArgs a;
    a.x_ratio = to_tensor(x_ratio, "x_ratio");
    a.pop_ratio = to_tensor(pop_ratio, "pop_ratio");
    a.sorted = to_tensor(sorted, "sorted", true);
    a.out = to_tensor(out, "out", true);
    a.gamma = gamma;
    if (!(gamma > 0.0) || !std::isfinite(gamma))
      throw InputError("gamma: expected a positive finite threshold");
    const int64_t R = a.x_ratio.ndim == 2 ? a.x_ratio.shape[0] : -1;
    check_rows(a.x_ratio, "x_ratio", R, -1, DType::f64);
    const int64_t N = a.x_ratio.shape[1];
    check_rows(a.pop_ratio, "pop_ratio", R, -1, DType::f64);
    const int64_t Z = a.pop_ratio.shape[1];
    check_rows(a.sorted, "sorted", R, Z, DType::f64);
    if (Z > 1 && a.sorted.strides[1] != 1)
      throw InputError("sorted: expected rows contiguous in memory");
    check_rows(a.out, "out", R, N, DType::f64);
    std::vector<std::pair<const char*, const Tensor*>> devs = {
        {"x_ratio", &a.x_ratio}, {"pop_ratio", &a.pop_ratio}, {"sorted", &a.sorted},
        {"out", &a.out}};
    if (!self.is_none()) {
      a.self = to_tensor(self, "self");
      if (a.self.dtype == DType::b8) a.self.dtype = DType::u8;
      check_rows(a.self, "self", R, N, DType::u8);
      devs.push_back({"self", &a.self});
    }
    same_device(devs);
    RmiaStatus st;
    {
      py::gil_scoped_release nogil;
      st = MIAKIT_DISPATCH(rmia_count, a, stream, a.x_ratio);
    }
    py::dict d;
    d["empty_rows"] = st.empty_rows;
    return d;
  });

  // Two-sample K-S extremes of B pairs of sorted samples stored back to back (CSR).
  m.def("ks_merge", [](py::handle a_values, py::handle a_offsets, py::handle b_values,
                       py::handle b_offsets, py::handle d_max, py::handle d_min,
                       py::handle loc_max, py::handle loc_min, std::uintptr_t stream) {
    KsMergeArgs a;
    a.a_values = to_tensor(a_values, "a_values");
    a.a_offsets = to_tensor(a_offsets, "a_offsets");
    a.b_values = to_tensor(b_values, "b_values");
    a.b_offsets = to_tensor(b_offsets, "b_offsets");
    a.d_max = to_tensor(d_max, "d_max", true);
    a.d_min = to_tensor(d_min, "d_min", true);
    a.loc_max = to_tensor(loc_max, "loc_max", true);
    a.loc_min = to_tensor(loc_min, "loc_min", true);
    check_samples(a.a_values, "a_values");
    check_samples(a.b_values, "b_values");
    check_contiguous(a.a_offsets, "a_offsets", DType::i64, 1, "contiguous 1-D int64 offsets");
    const int64_t B = a.a_offsets.shape[0] - 1;
    if (B < 0) throw InputError("a_offsets: expected B + 1 offsets for B pairs, got none");
    check_contiguous(a.b_offsets, "b_offsets", DType::i64, 1, "contiguous 1-D int64 offsets");
    check_shape(a.b_offsets, "b_offsets", {B + 1}, "B + 1 offsets, as a_offsets");
    check_pair_outputs(a.d_max, a.d_min, a.loc_max, a.loc_min, B, false);
    same_device({{"a_values", &a.a_values}, {"a_offsets", &a.a_offsets},
                 {"b_values", &a.b_values}, {"b_offsets", &a.b_offsets},
                 {"d_max", &a.d_max}, {"d_min", &a.d_min}, {"loc_max", &a.loc_max},
                 {"loc_min", &a.loc_min}});
    {
      py::gil_scoped_release nogil;
      MIAKIT_DISPATCH(ks_merge, a, stream, a.a_values);
    }
  });

  // Two-sample K-S extremes of B pairs of unsorted samples (CPU): pair r's samples are
  // a_values[a_begin[r]:a_end[r]] and b_values[b_begin[r]:b_end[r]]; sides as KsSides.
  m.def("ks_unsorted", [](py::handle a_values, py::handle a_begin, py::handle a_end,
                          py::handle b_values, py::handle b_begin, py::handle b_end,
                          py::handle d_max, py::handle d_min, py::handle loc_max,
                          py::handle loc_min, KsSides sides) {
    KsUnsortedArgs a;
    a.sides = sides;
    a.a_values = to_tensor(a_values, "a_values");
    a.a_begin = to_tensor(a_begin, "a_begin");
    a.a_end = to_tensor(a_end, "a_end");
    a.b_values = to_tensor(b_values, "b_values");
    a.b_begin = to_tensor(b_begin, "b_begin");
    a.b_end = to_tensor(b_end, "b_end");
    a.d_max = to_tensor(d_max, "d_max", true);
    a.d_min = to_tensor(d_min, "d_min", true);
    a.loc_max = to_tensor(loc_max, "loc_max", true);
    a.loc_min = to_tensor(loc_min, "loc_min", true);
    check_cpu({{"a_values", &a.a_values}, {"a_begin", &a.a_begin}, {"a_end", &a.a_end},
               {"b_values", &a.b_values}, {"b_begin", &a.b_begin}, {"b_end", &a.b_end},
               {"d_max", &a.d_max}, {"d_min", &a.d_min}, {"loc_max", &a.loc_max},
               {"loc_min", &a.loc_min}},
              "ks_unsorted (sort CUDA samples and use ks_merge)");
    check_samples(a.a_values, "a_values");
    check_samples(a.b_values, "b_values");
    check_contiguous(a.d_max, "d_max", DType::f64, 1, "a 1-D float64 array, one entry per pair");
    const int64_t B = a.d_max.shape[0];
    check_pair_outputs(a.d_max, a.d_min, a.loc_max, a.loc_min, B, true);
    // Each pair's samples: values[begin[r]:end[r]], not empty, within the values.
    const auto bounds = [B](const Tensor& begin, const char* bname, const Tensor& end,
                            const char* ename, int64_t size, const char* values) {
      check_contiguous(begin, bname, DType::i64, 1, "contiguous 1-D int64 bounds");
      check_shape(begin, bname, {B}, "one per pair");
      check_contiguous(end, ename, DType::i64, 1, "contiguous 1-D int64 bounds");
      check_shape(end, ename, {B}, "one per pair");
      const int64_t* lo = begin.ptr<int64_t>();
      const int64_t* hi = end.ptr<int64_t>();
      for (int64_t r = 0; r < B; ++r) {
        if (lo[r] < 0 || hi[r] <= lo[r] || hi[r] > size)
          throw InputError(std::string(bname) + ", " + ename + ": expected non-empty samples "
                           "within " + values + " (" + std::to_string(size) + " values), got [" +
                           std::to_string(lo[r]) + ", " + std::to_string(hi[r]) +
                           ") for pair " + std::to_string(r));
      }
    };
    bounds(a.a_begin, "a_begin", a.a_end, "a_end", a.a_values.shape[0], "a_values");
    bounds(a.b_begin, "b_begin", a.b_end, "b_end", a.b_values.shape[0], "b_values");
    {
      py::gil_scoped_release nogil;
      cpu::ks_unsorted(a);
    }
  }, py::arg("a_values"), py::arg("a_begin"), py::arg("a_end"), py::arg("b_values"),
     py::arg("b_begin"), py::arg("b_end"), py::arg("d_max"), py::arg("d_min"),
     py::arg("loc_max"), py::arg("loc_min"), py::arg("sides"));

  // Exact two-sided K-S p-values of equal sizes (include/miakit/ks.h): out[r] =
  // P(D_{n[r],n[r]} >= h[r] / n[r]), as scipy computes it.
  m.def("ks_prob_outside_square", [](py::handle n, py::handle h, py::handle out) {
    const Tensor tn = to_tensor(n, "n"), th = to_tensor(h, "h"), to = to_tensor(out, "out", true);
    const int64_t R = check_sizes_values_out(tn, th, "h", DType::i64, to,
                                             "ks_prob_outside_square");
    const int64_t* pn = tn.ptr<int64_t>();
    const int64_t* ph = th.ptr<int64_t>();
    for (int64_t r = 0; r < R; ++r) {
      if (ph[r] < 1 || ph[r] > pn[r])
        throw InputError("h: expected 1 <= h <= n");
    }
    double* po = to.ptr<double>();
    py::gil_scoped_release nogil;
    for (int64_t r = 0; r < R; ++r) po[r] = ks_prob_outside_square(pn[r], ph[r]);
  });

  // Pieces of scipy.stats.kstwo.sf (cpu/ks.cpp): KsPiece.smirnov -> out = smirnov(n, x);
  // KsPiece.durbin -> out = P(D_n <= x) by Durbin's matrix. "ks_smirnov_max_n": the
  // largest n the first supports (0 where this build's long double is too short).
  m.def("ks_kstwo_piece", [](KsPiece kind, py::handle n, py::handle x, py::handle out) {
    const Tensor tn = to_tensor(n, "n"), tx = to_tensor(x, "x"), to = to_tensor(out, "out", true);
    const int64_t R = check_sizes_values_out(tn, tx, "x", DType::f64, to, "ks_kstwo_piece");
    const int64_t* pn = tn.ptr<int64_t>();
    const double* px = tx.ptr<double>();
    for (int64_t r = 0; r < R; ++r) {
      if (!(px[r] > 0.0 && px[r] < 1.0) || pn[r] < 1)
        throw InputError("n, x: expected n >= 1 and 0 < x < 1");
      if (kind == KsPiece::smirnov && !cpu::ks_smirnov_supported(pn[r]))
        throw InputError("n: outside the sizes smirnov is computed for here");
      // Durbin's matrix has (2 ceil(n x) - 1)^2 entries, squared log2(n) times.
      if (kind == KsPiece::durbin && static_cast<double>(pn[r]) * px[r] > kKsDurbinMaxNx)
        throw InputError("n, x: Durbin's matrix is computed for n x up to " +
                         std::to_string(static_cast<int>(kKsDurbinMaxNx)) + ", got n = " +
                         std::to_string(pn[r]) + ", x = " + std::to_string(px[r]));
    }
    py::gil_scoped_release nogil;
    if (kind == KsPiece::smirnov) {
      cpu::ks_smirnov_sf(pn, px, to.ptr<double>(), R);
    } else {
      cpu::ks_kolmogorov_dmtw(pn, px, to.ptr<double>(), R);
    }
  }, py::arg("kind"), py::arg("n"), py::arg("x"), py::arg("out"));
  m.attr("ks_smirnov_max_n") = cpu::ks_smirnov_supported(cpu::kKsSmirnovMaxN) ? cpu::kKsSmirnovMaxN : 0;
}

}  // namespace miakit
