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
}

}  // namespace miakit
