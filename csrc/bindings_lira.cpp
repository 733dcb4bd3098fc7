// Bindings of the signal and LiRA kernels.
#include "pyconvert.h"

namespace miakit {

void register_lira(py::module_& m) {
  m.def("signal", [](py::handle logits, py::handle labels, py::handle out, int kind,
                     std::uintptr_t stream) {
    SignalArgs a;
    a.logits = to_tensor(logits, "logits");
    a.labels = to_tensor(labels, "labels");
    a.out = to_tensor(out, "out", true);
    a.kind = static_cast<Signal>(kind);
    same_device({{"logits", &a.logits}, {"labels", &a.labels}, {"out", &a.out}});
    SignalStatus st;
    {
      py::gil_scoped_release nogil;
      st = MIAKIT_DISPATCH(signal, a, stream, a.logits);
    }
    return py::make_tuple(st.nonfinite, st.bad_label);
  });

  m.def("lira_fit", [](py::handle data, py::handle labels, py::handle keep, py::handle mu_in,
                       py::handle mu_out, py::handle sd_in, py::handle sd_out, py::handle n_in,
                       py::handle n_out, int center, int signal, std::uintptr_t stream) {
    LiraFitArgs a;
    a.source = make_source(data, labels);
    a.keep = to_tensor(keep, "keep");
    a.mu_in = to_tensor(mu_in, "mu_in", true);
    a.mu_out = to_tensor(mu_out, "mu_out", true);
    a.sd_in = to_tensor(sd_in, "sd_in", true);
    a.sd_out = to_tensor(sd_out, "sd_out", true);
    a.n_in = to_tensor(n_in, "n_in", true);
    a.n_out = to_tensor(n_out, "n_out", true);
    a.opt.center = static_cast<Center>(center);
    a.opt.signal = static_cast<Signal>(signal);
    const Tensor& src = source_tensor(a.source);
    same_device({{"shadow data", &src}, {"labels", a.source.from_logits ? &a.source.labels : &src},
                 {"keep", &a.keep}, {"mu_in", &a.mu_in}, {"n_in", &a.n_in}});
    LiraStatus st;
    {
      py::gil_scoped_release nogil;
      st = MIAKIT_DISPATCH(lira_fit, a, stream, src);
    }
    return status_dict(st);
  });

  m.def("lira_score", [](py::handle target, py::handle mu_in, py::handle mu_out,
                         py::handle sd_in, py::handle sd_out, py::handle out, int mode,
                         int offline, std::uintptr_t stream) {
    LiraScoreArgs a;
    a.target = to_tensor(target, "target_scores");
    a.mu_in = to_tensor(mu_in, "mu_in");
    a.mu_out = to_tensor(mu_out, "mu_out");
    a.sd_in = to_tensor(sd_in, "sd_in");
    a.sd_out = to_tensor(sd_out, "sd_out");
    a.out = to_tensor(out, "out", true);
    a.opt.mode = static_cast<Mode>(mode);
    a.opt.offline = static_cast<Offline>(offline);
    same_device({{"target_scores", &a.target}, {"fit", &a.mu_in}, {"out", &a.out}});
    LiraStatus st;
    {
      py::gil_scoped_release nogil;
      st = MIAKIT_DISPATCH(lira_score, a, stream, a.target);
    }
    return status_dict(st);
  });

  m.def("lira_loo", [](py::handle data, py::handle labels, py::handle keep, py::handle targets,
                       py::handle out, int center, int variance, int mode, int offline,
                       int references, double min_std, int signal, std::uintptr_t stream) {
    LiraLooArgs a;
    a.source = make_source(data, labels);
    a.keep = to_tensor(keep, "keep");
    a.targets = to_tensor(targets, "targets");
    a.out = to_tensor(out, "out", true);
    a.opt.center = static_cast<Center>(center);
    a.opt.variance = static_cast<Variance>(variance);
    a.opt.mode = static_cast<Mode>(mode);
    a.opt.offline = static_cast<Offline>(offline);
    a.opt.references = static_cast<References>(references);
    a.opt.min_std = min_std;
    a.opt.signal = static_cast<Signal>(signal);
    const Tensor& src = source_tensor(a.source);
    same_device({{"shadow data", &src}, {"labels", a.source.from_logits ? &a.source.labels : &src},
                 {"keep", &a.keep}, {"targets", &a.targets}, {"out", &a.out}});
    LiraStatus st;
    {
      py::gil_scoped_release nogil;
      st = MIAKIT_DISPATCH(lira_loo, a, stream, src);
    }
    return status_dict(st);
  });
}

}  // namespace miakit
