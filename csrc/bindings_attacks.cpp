// Bindings of the attack kernels beyond LiRA: RMIA's counting.
#include <cmath>

#include "kernels_attack.h"
#include "pyconvert.h"

namespace miakit {

namespace {

void check_rows(const Tensor& t, const char* name, int64_t rows, int64_t cols, DType dtype) {
  if (t.ndim != 2 || t.shape[0] != rows || (cols >= 0 && t.shape[1] != cols) ||
      t.dtype != dtype)
    throw InputError(std::string(name) + ": expected a 2-D " +
                     (dtype == DType::f64 ? "float64" : "uint8") + " array with " +
                     std::to_string(rows) + " rows" +
                     (cols >= 0 ? " and " + std::to_string(cols) + " columns" : ""));
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
    for (const Tensor* t : {&a.a_values, &a.b_values}) {
      if (t->ndim != 1 || t->dtype != DType::f64 || (t->shape[0] > 1 && t->strides[0] != 1))
        throw InputError("samples: expected contiguous 1-D float64 values");
    }
    for (const Tensor* t : {&a.a_offsets, &a.b_offsets}) {
      if (t->ndim != 1 || t->dtype != DType::i64 || (t->shape[0] > 1 && t->strides[0] != 1))
        throw InputError("offsets: expected contiguous 1-D int64 offsets");
    }
    const int64_t B = a.a_offsets.shape[0] - 1;
    if (B < 0 || a.b_offsets.shape[0] != B + 1)
      throw InputError("offsets: expected B + 1 offsets for each sample");
    for (const Tensor* t : {&a.d_max, &a.d_min, &a.loc_max, &a.loc_min}) {
      if (t->ndim != 1 || t->shape[0] != B || t->dtype != DType::f64)
        throw InputError("outputs: expected float64 arrays of one entry per pair");
    }
    same_device({{"a_values", &a.a_values}, {"a_offsets", &a.a_offsets},
                 {"b_values", &a.b_values}, {"b_offsets", &a.b_offsets},
                 {"d_max", &a.d_max}, {"d_min", &a.d_min}, {"loc_max", &a.loc_max},
                 {"loc_min", &a.loc_min}});
    {
      py::gil_scoped_release nogil;
      MIAKIT_DISPATCH(ks_merge, a, stream, a.a_values);
    }
  });
}

}  // namespace miakit
