// Bindings of the per-example risk kernels: memorization, influence top-k, exact nearest
// neighbours, linear-softmax head gradient norms and Hessian traces, Rademacher probes.
#include "kernels_risk.h"
#include "pyconvert.h"

namespace miakit {

namespace {

py::dict risk_status(const RiskStatus& s) {
  py::dict d;
  d["nonfinite"] = s.nonfinite;
  d["empty"] = s.empty;
  d["bad_label"] = s.bad_label;
  d["kernel"] = std::string(s.kernel);
  return d;
}

}  // namespace

namespace {

// A [models, examples] matrix of 0/1 correctness or probabilities: float or uint8/bool.
void check_signal_matrix(const Tensor& t, const char* name) {
  if (t.ndim != 2)
    throw InputError(std::string(name) + ": expected a 2-D [models, examples] array, " + got(t));
  if (!is_float(t.dtype) && t.dtype != DType::u8 && t.dtype != DType::b8)
    throw InputError(std::string(name) + ": expected a floating-point, uint8 or bool array, "
                     "got " + dtype_name(t.dtype));
}

// keep [models, examples] of 0/1 bytes.
void check_keep(const Tensor& t, int64_t m, int64_t n) {
  check_shape(t, "keep", {m, n}, "models, examples");
  check_dtype(t, "keep", {DType::u8, DType::b8}, "uint8 or bool");
}

}  // namespace

void register_risk(py::module_& m) {
  m.def("memorization", [](py::handle signal, py::handle keep, py::handle out, py::handle n_in,
                           std::uintptr_t stream) {
    MemorizationArgs a;
    a.signal = to_tensor(signal, "correct");
    a.keep = to_tensor(keep, "keep");
    a.out = to_tensor(out, "out", true);
    a.n_in = to_tensor(n_in, "n_in", true);
    same_device({{"correct", &a.signal}, {"keep", &a.keep}, {"out", &a.out}, {"n_in", &a.n_in}});
    check_signal_matrix(a.signal, "correct");
    check_keep(a.keep, a.signal.shape[0], a.signal.shape[1]);
    check_out(a.out, "out", a.signal.shape[1]);
    check_vec(a.n_in, "n_in", DType::i64, a.signal.shape[1], false);
    RiskStatus st;
    {
      py::gil_scoped_release nogil;
      st = MIAKIT_DISPATCH(memorization, a, stream, a.signal);
    }
    return risk_status(st);
  });

  m.def("influence", [](py::handle keep, py::handle c, py::handle vals, py::handle idx,
                        std::uintptr_t stream) {
    InfluenceArgs a;
    a.keep = to_tensor(keep, "keep");
    a.c = to_tensor(c, "correct_test");
    a.vals = to_tensor(vals, "vals", true);
    a.idx = to_tensor(idx, "idx", true);
    same_device({{"keep", &a.keep}, {"correct_test", &a.c}, {"vals", &a.vals}, {"idx", &a.idx}});
    check_signal_matrix(a.c, "correct_test");
    const int64_t M = a.c.shape[0], T = a.c.shape[1];
    if (a.keep.ndim != 2 || a.keep.shape[0] != M)
      throw InputError("keep: expected [models, training examples] with " + std::to_string(M) +
                       " rows (as correct_test), " + got(a.keep));
    check_keep(a.keep, M, a.keep.shape[1]);
    if (a.vals.ndim != 2 || a.vals.shape[0] != T || a.vals.dtype != DType::f64 ||
        a.vals.shape[1] < 1 || a.vals.shape[1] > a.keep.shape[1])
      throw InputError("vals: expected float64 [test examples, k] with 1 <= k <= the training "
                       "examples, " + got(a.vals));
    check_rows(a.idx, "idx", T, a.vals.shape[1], DType::i64);
    RiskStatus st;
    {
      py::gil_scoped_release nogil;
      st = MIAKIT_DISPATCH(influence, a, stream, a.keep);
    }
    return risk_status(st);
  });

  m.def("knn", [](py::handle queries, py::handle reference, py::handle vals, py::handle idx,
                  bool exclude_self, std::uintptr_t stream) {
    KnnArgs a;
    a.queries = to_tensor(queries, "queries");
    a.reference = to_tensor(reference, "reference");
    a.vals = to_tensor(vals, "vals", true);
    a.idx = to_tensor(idx, "idx", true);
    a.exclude_self = exclude_self;
    same_device({{"queries", &a.queries}, {"reference", &a.reference}, {"vals", &a.vals},
                 {"idx", &a.idx}});
    check_float(a.queries, "queries", 2);
    check_float(a.reference, "reference", 2);
    if (a.reference.dtype != a.queries.dtype)
      throw InputError("reference: expected the dtype of queries");
    check_dim(a.reference, "reference", 1, a.queries.shape[1], "queries");
    const int64_t Q = a.queries.shape[0], R = a.reference.shape[0];
    if (a.vals.ndim != 2 || a.vals.dtype != DType::f64 || a.vals.shape[0] != Q)
      throw InputError("vals: expected a float64 array of shape (queries, k)");
    const int64_t k = a.vals.shape[1];
    if (a.idx.ndim != 2 || a.idx.dtype != DType::i64 || a.idx.shape[0] != Q ||
        a.idx.shape[1] != k)
      throw InputError("idx: expected an int64 array of the shape of vals");
    if (k < 1 || k > R - (exclude_self ? 1 : 0))
      throw InputError("k: expected 1 <= k <= the reference rows (less one with exclude_self)");
    if (exclude_self && Q != R)
      throw InputError("exclude_self: expected as many queries as reference rows");
    RiskStatus st;
    {
      py::gil_scoped_release nogil;
      st = MIAKIT_DISPATCH(knn, a, stream, a.queries);
    }
    return risk_status(st);
  });

  // Linear-softmax head: per-example gradient norms (labels used) or input-Hessian traces.
  m.def("head", [](py::handle x, py::handle labels, py::handle w, py::handle b, py::handle out,
                   HeadQuantity which, std::uintptr_t stream) {
    const bool norms = which == HeadQuantity::grad_norm;
    HeadArgs a;
    a.x = to_tensor(x, "features");
    a.w = to_tensor(w, "weight");
    a.out = to_tensor(out, "out", true);
    a.has_bias = !b.is_none();
    if (a.has_bias) a.b = to_tensor(b, "bias");
    if (norms) a.labels = to_tensor(labels, "labels");
    same_device({{"features", &a.x}, {"weight", &a.w}, {"out", &a.out},
                 {"bias", a.has_bias ? &a.b : &a.x}, {"labels", norms ? &a.labels : &a.x}});
    check_float(a.x, "features", 2);
    check_float(a.w, "weight", 2);
    check_dim(a.w, "weight", 1, a.x.shape[1], "features");
    check_int_count(a.w.shape[0], "weight", "classes");
    if (a.has_bias) {
      check_float(a.b, "bias", 1);
      check_dim(a.b, "bias", 0, a.w.shape[0], "weight");
    }
    if (norms) check_vec(a.labels, "labels", DType::i64, a.x.shape[0], false);
    check_out(a.out, "out", a.x.shape[0]);
    RiskStatus st;
    {
      py::gil_scoped_release nogil;
      st = norms ? MIAKIT_DISPATCH(head_norms, a, stream, a.x)
                 : MIAKIT_DISPATCH(head_trace, a, stream, a.x);
    }
    return risk_status(st);
  }, py::arg("features"), py::arg("labels"), py::arg("weight"), py::arg("bias"), py::arg("out"),
     py::arg("which"), py::arg("stream"));

  // Linear-layer per-example squared norms (ghost / direct form, include/miakit/ghost.h).
  m.def("ghost_norms", [](py::handle act, py::handle grad, py::handle out, bool want_w,
                          bool want_b, std::uintptr_t stream) {
    GhostArgs a;
    a.a = to_tensor(act, "activations");
    a.g = to_tensor(grad, "grads");
    a.out = to_tensor(out, "out", true);
    a.want_w = want_w;
    a.want_b = want_b;
    check_float(a.a, "activations", 3);
    check_float(a.g, "grads", 3);
    check_dim(a.g, "grads", 0, a.a.shape[0], "activations");
    check_dim(a.g, "grads", 1, a.a.shape[1], "activations");
    check_out(a.out, "out", a.a.shape[0]);
    same_device({{"activations", &a.a}, {"grads", &a.g}, {"out", &a.out}});
    RiskStatus st;
    {
      py::gil_scoped_release nogil;
      st = MIAKIT_DISPATCH(ghost_norms, a, stream, a.a);
    }
    return risk_status(st);
  });

  // Curvature probe reductions: quadratic = mean/stderr of x.y over probes (Hutchinson),
  // difference = mean over probes of ||x - y||_2 (squared when `squared`; finite
  // differences).
  m.def("probe_reduce", [](py::handle x, py::handle y, py::handle mean, py::handle se,
                           ProbeReduction which, bool squared, std::uintptr_t stream) {
    ProbeArgs a;
    const bool quad = which == ProbeReduction::quadratic;
    const char* xn = quad ? "probes" : "grads";
    const char* yn = quad ? "hvp" : "grad0";
    a.x = to_tensor(x, xn);
    a.y = to_tensor(y, yn);
    a.mean = to_tensor(mean, "mean", true);
    a.squared = squared;
    check_float(a.x, xn, 3);
    check_float(a.y, yn, quad ? 3 : 2);
    check_dim(a.y, yn, 0, a.x.shape[0], xn);
    if (quad) {
      check_dim(a.y, yn, 1, a.x.shape[1], xn);
      check_dim(a.y, yn, 2, a.x.shape[2], xn);
      a.se = to_tensor(se, "stderr", true);
      check_out(a.se, "stderr", a.x.shape[0]);
    } else {
      check_dim(a.y, yn, 1, a.x.shape[2], xn);
    }
    check_out(a.mean, "mean", a.x.shape[0]);
    if (a.x.shape[1] == 0) throw InputError(std::string(xn) + ": needs at least one probe");
    same_device({{xn, &a.x}, {yn, &a.y}, {"mean", &a.mean}, {"stderr", quad ? &a.se : &a.x}});
    RiskStatus st;
    {
      py::gil_scoped_release nogil;
      st = quad ? MIAKIT_DISPATCH(probe_quad, a, stream, a.x)
                : MIAKIT_DISPATCH(probe_diff, a, stream, a.x);
    }
    return risk_status(st);
  }, py::arg("x"), py::arg("y"), py::arg("mean"), py::arg("stderr"), py::arg("which"),
     py::arg("squared"), py::arg("stream"));

  m.def("rademacher", [](py::handle examples, py::handle out, uint64_t seed, int64_t probe0,
                         std::uintptr_t stream) {
    RademacherArgs a;
    a.examples = to_tensor(examples, "examples");
    a.out = to_tensor(out, "out", true);
    a.seed = seed;
    a.probe0 = probe0;
    same_device({{"examples", &a.examples}, {"out", &a.out}});
    check_vec(a.examples, "examples", DType::i64, a.examples.ndim == 1 ? a.examples.shape[0] : -1,
              false);
    if (a.out.ndim != 3 || a.out.shape[0] != a.examples.shape[0] || !is_float(a.out.dtype))
      throw InputError("out: expected a floating-point array [examples, probes, elements], " +
                       got(a.out));
    check_contiguous(a.out, "out", a.out.dtype, 3, "a contiguous [examples, probes, elements]");
    py::gil_scoped_release nogil;
#if defined(MIAKIT_WITH_CUDA)
    if (on_cuda(a.out)) {
      cuda::rademacher(a, stream);
      return;
    }
#else
    on_cuda(a.out);
#endif
    cpu::rademacher(a);
  });
}

}  // namespace miakit
