// Bindings of the shadow-training kernels (kernels_train.h).
#include <string>

#include "kernels_train.h"
#include "pyconvert.h"

namespace miakit {

namespace {

void require(const Tensor& t, const char* name, DType dtype, int ndim, const char* what) {
  if (t.ndim != ndim || t.dtype != dtype)
    throw InputError(std::string(name) + ": expected " + what);
  int64_t stride = 1;  // C-contiguous
  for (int i = ndim - 1; i >= 0; --i) {
    if (t.shape[i] > 1 && t.strides[i] != stride)
      throw InputError(std::string(name) + ": expected a C-contiguous array");
    stride *= t.shape[i];
  }
}

}  // namespace

void register_train(py::module_& m) {
  // Fused softmax cross-entropy residual of K heads on a block of rows; returns the number
  // of labels outside [0, C) (their rows are left out).
  m.def("softmax_ce", [](py::handle z, py::handle y, py::handle w, py::handle loss,
                         py::handle gbias, std::uintptr_t stream, py::handle res,
                         bool implied_last, py::handle out, py::handle out_heads,
                         int64_t row0, py::handle bias) {
    SoftmaxCEArgs a;
    a.z = to_tensor(z, "z", true);
    a.implied_last = implied_last;
    a.y = to_tensor(y, "y");
    a.w = to_tensor(w, "w");
    a.loss = to_tensor(loss, "loss", true);
    a.gbias = to_tensor(gbias, "gbias", true);
    require(a.z, "z", DType::f32, 3, "float32 logits [R, C, K]");
    const int64_t R = a.z.shape[0], C = a.z.shape[1], K = a.z.shape[2];
    require(a.y, "y", DType::i64, 1, "int64 labels [R]");
    require(a.w, "w", DType::f32, 2, "float32 row weights [R, K]");
    require(a.loss, "loss", DType::f64, 1, "float64 losses [K]");
    require(a.gbias, "gbias", DType::f32, 1, "float32 bias gradient [C * K]");
    if (a.y.shape[0] != R || a.w.shape[0] != R || a.w.shape[1] != K || a.loss.shape[0] != K ||
        a.gbias.shape[0] != C * K)
      throw InputError("softmax_ce: shapes of y, w, loss, gbias do not match z [" +
                       std::to_string(R) + ", " + std::to_string(C) + ", " +
                       std::to_string(K) + "]");
    if (implied_last && C < 2) throw InputError("softmax_ce: implied_last needs C >= 2");
    if (!res.is_none()) {
      a.res = to_tensor(res, "res", true);
      require(a.res, "res", DType::f32, 3, "float32 residuals [R, C, K]");
      if (a.res.shape[0] != R || a.res.shape[1] != C || a.res.shape[2] != K)
        throw InputError("softmax_ce: res must have the shape of z");
      if (a.res.data == a.z.data) a.res = Tensor();  // the same array: in place
      same_device({{"z", &a.z}, {"res", &a.res}});
    }
    if (!bias.is_none()) {
      a.bias = to_tensor(bias, "bias");
      require(a.bias, "bias", DType::f32, 1, "float32 bias [C * K]");
      if (a.bias.shape[0] != C * K)
        throw InputError("softmax_ce: bias must have C * K = " + std::to_string(C * K) +
                         " entries, got " + std::to_string(a.bias.shape[0]));
      same_device({{"z", &a.z}, {"bias", &a.bias}});
    }
    if (out.is_none() != out_heads.is_none())
      throw InputError("softmax_ce: out and out_heads go together");
    if (!out.is_none()) {
      a.out = to_tensor(out, "out", true);
      a.out_heads = to_tensor(out_heads, "out_heads");
      require(a.out, "out", DType::f32, 3, "float32 logits [M, N, C]");
      require(a.out_heads, "out_heads", DType::i64, 1, "int64 heads [K]");
      if (a.out.shape[2] != C || a.out_heads.shape[0] != K)
        throw InputError("softmax_ce: out must be [M, N, " + std::to_string(C) +
                         "] and out_heads [" + std::to_string(K) + "]");
      if (row0 < 0 || row0 + R > a.out.shape[1])
        throw InputError("softmax_ce: rows " + std::to_string(row0) + " to " +
                         std::to_string(row0 + R) + " are outside out's " +
                         std::to_string(a.out.shape[1]));
      a.row0 = row0;
      same_device({{"z", &a.z}, {"out", &a.out}, {"out_heads", &a.out_heads}});
      // Destinations are checked where they live; a device array is checked by its maker.
      if (a.out_heads.device == DeviceType::cpu) {
        const int64_t* dh = a.out_heads.ptr<int64_t>();
        for (int64_t k = 0; k < K; ++k)
          if (dh[k] >= a.out.shape[0])
            throw InputError("softmax_ce: out_heads[" + std::to_string(k) + "] = " +
                             std::to_string(dh[k]) + " is not a head of out");
      }
    }
    same_device({{"z", &a.z}, {"y", &a.y}, {"w", &a.w}, {"loss", &a.loss},
                 {"gbias", &a.gbias}});
    py::gil_scoped_release nogil;
    return MIAKIT_DISPATCH(softmax_ce, a, stream, a.z);
  }, py::arg("z"), py::arg("y"), py::arg("w"), py::arg("loss"), py::arg("gbias"),
     py::arg("stream"), py::arg("res") = py::none(), py::arg("implied_last") = false,
     py::arg("out") = py::none(), py::arg("out_heads") = py::none(), py::arg("row0") = 0,
     py::arg("bias") = py::none());
}

}  // namespace miakit
