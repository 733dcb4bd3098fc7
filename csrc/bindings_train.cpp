// Bindings of the shadow-training kernels (kernels_train.h).
#include <string>

#include "kernels_train.h"
#include "pyconvert.h"

namespace miakit {

namespace {

// Rows of a matrix contiguous (the row stride may be larger): [R, D] float32.
void require_rows(const Tensor& t, const char* name) {
  if (t.ndim != 2 || t.dtype != DType::f32 || (t.shape[1] > 1 && t.strides[1] != 1) ||
      (t.shape[0] > 1 && t.strides[0] < t.shape[1]))
    throw InputError(std::string(name) + ": expected float32 rows [R, D] with contiguous rows");
}

// The row lists of the heads (ptr, idx, val) and the heads asked for: the kernels read
// them without bounds checks, so they are checked here.
void check_head_rows(const Tensor& ptr, const Tensor& idx, const Tensor& val,
                     const Tensor& heads, int64_t R, const std::string& fn) {
  check_contiguous(ptr, "ptr", DType::i64, 1, "int64 row offsets [M + 1]");
  check_contiguous(idx, "idx", DType::i32, 1, "int32 rows [nnz]");
  check_contiguous(val, "val", DType::f32, 1, "float32 row weights [nnz]");
  check_contiguous(heads, "heads", DType::i64, 1, "int64 heads [K]");
  const int64_t M = ptr.shape[0] - 1, nnz = idx.shape[0], K = heads.shape[0];
  const int64_t* p = ptr.ptr<int64_t>();
  if (M < 0 || val.shape[0] != nnz || p[0] != 0 || p[M] != nnz)
    throw InputError(fn + ": ptr must run from 0 to nnz = len(idx) = len(val)");
  const int32_t* ix = idx.ptr<int32_t>();
  for (int64_t m = 0; m < M; ++m) {
    if (p[m + 1] < p[m]) throw InputError(fn + ": ptr must not decrease");
    for (int64_t e = p[m]; e < p[m + 1]; ++e)
      if (ix[e] < 0 || ix[e] >= R || (e > p[m] && ix[e] <= ix[e - 1]))
        throw InputError(fn + ": the rows of head " + std::to_string(m) +
                         " must increase within [0, " + std::to_string(R) + ")");
  }
  const int64_t* hd = heads.ptr<int64_t>();
  for (int64_t k = 0; k < K; ++k)
    if (hd[k] < 0 || hd[k] >= M)
      throw InputError(fn + ": heads[" + std::to_string(k) + "] = " + std::to_string(hd[k]) +
                       " is not one of the " + std::to_string(M) + " heads of ptr");
}

MaskedHeadsArgs masked_args(py::handle x, py::handle wt, py::handle bias, py::handle ptr,
                            py::handle idx, py::handle val, py::handle heads, py::handle y,
                            py::handle loss, py::handle gw, py::handle gbias, py::handle out,
                            py::handle out_heads) {
  MaskedHeadsArgs a;
  a.x = to_tensor(x, "x");
  a.wt = to_tensor(wt, "wt");
  a.bias = to_tensor(bias, "bias");
  a.ptr = to_tensor(ptr, "ptr");
  a.idx = to_tensor(idx, "idx");
  a.val = to_tensor(val, "val");
  a.heads = to_tensor(heads, "heads");
  a.y = to_tensor(y, "y");
  a.loss = to_tensor(loss, "loss", true);
  a.gw = to_tensor(gw, "gw", true);
  a.gbias = to_tensor(gbias, "gbias", true);
  const std::vector<std::pair<const char*, const Tensor*>> all = {
      {"x", &a.x}, {"wt", &a.wt}, {"bias", &a.bias}, {"ptr", &a.ptr}, {"idx", &a.idx},
      {"val", &a.val}, {"heads", &a.heads}, {"y", &a.y}, {"loss", &a.loss}, {"gw", &a.gw},
      {"gbias", &a.gbias}};
  check_cpu(all, "masked_heads_ce");
  require_rows(a.x, "x");
  check_contiguous(a.wt, "wt", DType::f32, 3, "float32 weights [K, C - 1, Dp]");
  const int64_t R = a.x.shape[0], dx = a.x.shape[1];
  const int64_t K = a.wt.shape[0], cm = a.wt.shape[1], dp = a.wt.shape[2], C = cm + 1;
  if (cm < 1 || dp != (dx + 15) / 16 * 16)
    throw InputError("masked_heads_ce: wt must be [K, C - 1 >= 1, " +
                     std::to_string((dx + 15) / 16 * 16) + "] for " + std::to_string(dx) +
                     " features, got " + dims(a.wt));
  check_contiguous(a.bias, "bias", DType::f32, 2, "float32 bias [K, C - 1]");
  check_contiguous(a.y, "y", DType::i64, 1, "int64 labels [R]");
  check_contiguous(a.loss, "loss", DType::f64, 1, "float64 losses [K]");
  check_contiguous(a.gw, "gw", DType::f32, 3, "float32 gradient [K, C - 1, Dp]");
  check_contiguous(a.gbias, "gbias", DType::f32, 2, "float32 bias gradient [K, C]");
  if (a.bias.shape[0] != K || a.bias.shape[1] != cm || a.heads.shape[0] != K ||
      a.y.shape[0] != R || a.loss.shape[0] != K || a.gw.shape[0] != K ||
      a.gw.shape[1] != cm || a.gw.shape[2] != dp || a.gbias.shape[0] != K ||
      a.gbias.shape[1] != C)
    throw InputError("masked_heads_ce: bias " + dims(a.bias) + ", heads " + dims(a.heads) +
                     ", y " + dims(a.y) + ", loss " + dims(a.loss) + ", gw " + dims(a.gw) +
                     ", gbias " + dims(a.gbias) + " do not match x " + dims(a.x) +
                     " and wt " + dims(a.wt));
  check_head_rows(a.ptr, a.idx, a.val, a.heads, R, "masked_heads_ce");
  if (out.is_none() != out_heads.is_none())
    throw InputError("masked_heads_ce: out and out_heads go together");
  if (!out.is_none()) {
    a.out = to_tensor(out, "out", true);
    a.out_heads = to_tensor(out_heads, "out_heads");
    check_contiguous(a.out, "out", DType::f32, 3, "float32 logits [M, R, C]");
    check_contiguous(a.out_heads, "out_heads", DType::i64, 1, "int64 heads [K]");
    if (a.out.device != DeviceType::cpu || a.out_heads.device != DeviceType::cpu)
      throw InputError("masked_heads_ce: out and out_heads must be on the CPU");
    if (a.out.shape[1] != R || a.out.shape[2] != C || a.out_heads.shape[0] != K)
      throw InputError("masked_heads_ce: out must be [M, " + std::to_string(R) + ", " +
                       std::to_string(C) + "] and out_heads [" + std::to_string(K) +
                       "], got " + dims(a.out) + " and " + dims(a.out_heads));
    const int64_t* dh = a.out_heads.ptr<int64_t>();
    for (int64_t k = 0; k < K; ++k)
      if (dh[k] >= a.out.shape[0])
        throw InputError("masked_heads_ce: out_heads[" + std::to_string(k) + "] = " +
                         std::to_string(dh[k]) + " is not a head of out");
  }
  return a;
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
    check_contiguous(a.z, "z", DType::f32, 3, "float32 logits [R, C, K]");
    const int64_t R = a.z.shape[0], C = a.z.shape[1], K = a.z.shape[2];
    check_contiguous(a.y, "y", DType::i64, 1, "int64 labels [R]");
    check_contiguous(a.w, "w", DType::f32, 2, "float32 row weights [R, K]");
    check_contiguous(a.loss, "loss", DType::f64, 1, "float64 losses [K]");
    check_contiguous(a.gbias, "gbias", DType::f32, 1, "float32 bias gradient [C * K]");
    if (a.y.shape[0] != R || a.w.shape[0] != R || a.w.shape[1] != K || a.loss.shape[0] != K ||
        a.gbias.shape[0] != C * K)
      throw InputError("softmax_ce: shapes of y, w, loss, gbias do not match z [" +
                       std::to_string(R) + ", " + std::to_string(C) + ", " +
                       std::to_string(K) + "]");
    if (implied_last && C < 2) throw InputError("softmax_ce: implied_last needs C >= 2");
    if (!res.is_none()) {
      a.res = to_tensor(res, "res", true);
      check_contiguous(a.res, "res", DType::f32, 3, "float32 residuals [R, C, K]");
      if (a.res.shape[0] != R || a.res.shape[1] != C || a.res.shape[2] != K)
        throw InputError("softmax_ce: res must have the shape of z");
      if (a.res.data == a.z.data) a.res = Tensor();  // the same array: in place
      same_device({{"z", &a.z}, {"res", &a.res}});
    }
    if (!bias.is_none()) {
      a.bias = to_tensor(bias, "bias");
      check_contiguous(a.bias, "bias", DType::f32, 1, "float32 bias [C * K]");
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
      check_contiguous(a.out, "out", DType::f32, 3, "float32 logits [M, N, C]");
      check_contiguous(a.out_heads, "out_heads", DType::i64, 1, "int64 heads [K]");
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

  // Loss and gradients of K linear heads, each over its own rows only (CPU); returns the
  // number of those rows whose label is outside [0, C) (left out).
  m.def("masked_heads_ce", [](py::handle x, py::handle wt, py::handle bias, py::handle ptr,
                              py::handle idx, py::handle val, py::handle heads, py::handle y,
                              py::handle loss, py::handle gw, py::handle gbias,
                              py::handle out, py::handle out_heads) {
    const MaskedHeadsArgs a = masked_args(x, wt, bias, ptr, idx, val, heads, y, loss, gw,
                                          gbias, out, out_heads);
    py::gil_scoped_release nogil;
    return cpu::masked_heads_ce(a);
  }, py::arg("x"), py::arg("wt"), py::arg("bias"), py::arg("ptr"), py::arg("idx"),
     py::arg("val"), py::arg("heads"), py::arg("y"), py::arg("loss"), py::arg("gw"),
     py::arg("gbias"), py::arg("out") = py::none(), py::arg("out_heads") = py::none());
  // Gradients of K linear heads that share one residual per row, each over its own rows.
  m.def("masked_heads_grad", [](py::handle x, py::handle res, py::handle ptr, py::handle idx,
                                py::handle val, py::handle heads, py::handle gw) {
    MaskedHeadsGradArgs a;
    a.x = to_tensor(x, "x");
    a.res = to_tensor(res, "res");
    a.ptr = to_tensor(ptr, "ptr");
    a.idx = to_tensor(idx, "idx");
    a.val = to_tensor(val, "val");
    a.heads = to_tensor(heads, "heads");
    a.gw = to_tensor(gw, "gw", true);
    const std::vector<std::pair<const char*, const Tensor*>> all = {
        {"x", &a.x}, {"res", &a.res}, {"ptr", &a.ptr}, {"idx", &a.idx}, {"val", &a.val},
        {"heads", &a.heads}, {"gw", &a.gw}};
    check_cpu(all, "masked_heads_grad");
    require_rows(a.x, "x");
    check_contiguous(a.gw, "gw", DType::f32, 3, "float32 gradient [K, C - 1, Dp]");
    check_contiguous(a.res, "res", DType::f32, 2, "float32 residuals [R, C - 1]");
    const int64_t R = a.x.shape[0], dx = a.x.shape[1];
    if (a.gw.shape[2] != (dx + 15) / 16 * 16 || a.gw.shape[1] < 1 || a.res.shape[0] != R ||
        a.res.shape[1] != a.gw.shape[1] || a.heads.shape[0] != a.gw.shape[0])
      throw InputError("masked_heads_grad: res " + dims(a.res) + ", heads " + dims(a.heads) +
                       " and gw " + dims(a.gw) + " do not match x " + dims(a.x));
    check_head_rows(a.ptr, a.idx, a.val, a.heads, R, "masked_heads_grad");
    py::gil_scoped_release nogil;
    cpu::masked_heads_grad(a);
  }, py::arg("x"), py::arg("res"), py::arg("ptr"), py::arg("idx"), py::arg("val"),
     py::arg("heads"), py::arg("gw"));
  m.def("masked_heads_ce_kernel", []() { return std::string(cpu::masked_heads_ce_kernel()); },
        "The instruction set masked_heads_ce runs with here: 'avx512', 'avx2' or 'generic'.");
}

}  // namespace miakit
