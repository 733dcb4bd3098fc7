// Bindings of the per-example risk kernels: memorization, influence top-k, linear-softmax
// head gradient norms and Hessian traces, Rademacher probes.
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

void register_risk(py::module_& m) {
  m.def("memorization", [](py::handle signal, py::handle keep, py::handle out, py::handle n_in,
                           std::uintptr_t stream) {
    MemorizationArgs a;
    a.signal = to_tensor(signal, "correct");
    a.keep = to_tensor(keep, "keep");
    a.out = to_tensor(out, "out", true);
    a.n_in = to_tensor(n_in, "n_in", true);
    same_device({{"correct", &a.signal}, {"keep", &a.keep}, {"out", &a.out}, {"n_in", &a.n_in}});
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
    RiskStatus st;
    {
      py::gil_scoped_release nogil;
      st = MIAKIT_DISPATCH(influence, a, stream, a.keep);
    }
    return risk_status(st);
  });

  // Linear-softmax head: which = 0 gradient norms (labels used), 1 Hessian traces.
  m.def("head", [](py::handle x, py::handle labels, py::handle w, py::handle b, py::handle out,
                   int which, std::uintptr_t stream) {
    HeadArgs a;
    a.x = to_tensor(x, "features");
    a.w = to_tensor(w, "weight");
    a.out = to_tensor(out, "out", true);
    a.has_bias = !b.is_none();
    if (a.has_bias) a.b = to_tensor(b, "bias");
    if (which == 0) a.labels = to_tensor(labels, "labels");
    same_device({{"features", &a.x}, {"weight", &a.w}, {"out", &a.out},
                 {"bias", a.has_bias ? &a.b : &a.x}, {"labels", which == 0 ? &a.labels : &a.x}});
    RiskStatus st;
    {
      py::gil_scoped_release nogil;
      st = which == 0 ? MIAKIT_DISPATCH(head_norms, a, stream, a.x)
                      : MIAKIT_DISPATCH(head_trace, a, stream, a.x);
    }
    return risk_status(st);
  });

  m.def("rademacher", [](py::handle examples, py::handle out, uint64_t seed, int64_t probe0,
                         std::uintptr_t stream) {
    RademacherArgs a;
    a.examples = to_tensor(examples, "examples");
    a.out = to_tensor(out, "out", true);
    a.seed = seed;
    a.probe0 = probe0;
    same_device({{"examples", &a.examples}, {"out", &a.out}});
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
