// Bindings of the signal and LiRA kernels.
#include <limits>
#include <vector>

#include "pyconvert.h"

namespace miakit {

namespace {

// logits [R..., C] of a floating dtype; labels int64 and every out float32/float64 of the
// leading shape [R...] (the caller broadcasts the labels, strides may be 0).
void check_signal(const SignalArgs& a) {
  const Tensor& lg = a.logits;
  if (lg.ndim < 1) throw InputError("logits: expected at least one dimension (the classes)");
  if (!is_float(lg.dtype))
    throw InputError(std::string("logits: expected a floating-point array, got ") +
                     dtype_name(lg.dtype));
  check_int_count(lg.shape[lg.ndim - 1], "logits", "classes");
  check_dtype(a.labels, "labels", {DType::i64}, "int64");
  auto leading = [&](const Tensor& t, const std::string& name) {
    bool ok = t.ndim == lg.ndim - 1;
    for (int d = 0; ok && d < lg.ndim - 1; ++d) ok = t.shape[d] == lg.shape[d];
    if (!ok)
      throw InputError(name + ": expected the leading shape of logits " + dims(lg) + ", got " +
                       dims(t));
  };
  leading(a.labels, "labels");
  for (int s = 0; s < a.n_out; ++s) {
    const std::string name = a.n_out == 1 ? "out" : "outs[" + std::to_string(s) + "]";
    check_dtype(a.outs[s], name.c_str(), {DType::f32, DType::f64}, "float32 or float64");
    leading(a.outs[s], name);
  }
}

// The signal kernels' counts, keyed as the LiRA kernels' (status_dict) and the others'.
py::dict signal_status_dict(const SignalStatus& st) {
  py::dict d;
  d["nonfinite"] = st.nonfinite;
  d["bad_label"] = st.bad_label;
  return d;
}

SignalStatus run_signal(SignalArgs& a, std::uintptr_t stream) {
  std::vector<std::pair<const char*, const Tensor*>> ts = {{"logits", &a.logits},
                                                           {"labels", &a.labels}};
  for (int s = 0; s < a.n_out; ++s) ts.push_back({"outs", &a.outs[s]});
  same_device(ts);
  check_signal(a);
  py::gil_scoped_release nogil;
  return MIAKIT_DISPATCH(signal, a, stream, a.logits);
}

// Shadow data: scores [M, N, A], or logits [M, N, A, C] with labels int64 [N]; keep
// uint8/bool [M, N]. Sets M, N, A.
void check_source(const LiraSource& src, const Tensor& keep, int64_t* M, int64_t* N,
                  int64_t* A) {
  const Tensor& d = source_tensor(src);
  const char* name = src.from_logits ? "logits" : "scores";
  if (d.ndim != (src.from_logits ? 4 : 3))
    throw InputError(std::string(name) + ": expected " +
                     (src.from_logits ? "[M, N, A, C]" : "[M, N, A]") + ", got " + dims(d));
  if (!is_float(d.dtype))
    throw InputError(std::string(name) + ": expected a floating-point array, got " +
                     dtype_name(d.dtype));
  *M = d.shape[0];
  *N = d.shape[1];
  *A = d.shape[2];
  check_int_count(*M, name, "shadow models");
  if (src.from_logits) {
    check_int_count(d.shape[3], "logits", "classes");
    check_dtype(src.labels, "labels", {DType::i64}, "int64");
    check_shape(src.labels, "labels", {*N}, "one per example of the logits");
  }
  check_dtype(keep, "keep", {DType::u8, DType::b8}, "uint8 or bool");
  check_shape(keep, "keep", {*M, *N}, "models x examples of the shadow data");
}

// The fitted Gaussians' arrays: float64 [N, A].
void check_fit_stats(std::initializer_list<std::pair<const char*, const Tensor*>> ts,
                     int64_t N, int64_t A) {
  for (const auto& [name, t] : ts) {
    check_dtype(*t, name, {DType::f64}, "float64");
    check_shape(*t, name, {N, A}, "examples x augmentations");
  }
}

}  // namespace

void register_lira(py::module_& m) {
  // Observations of larger magnitude are rescaled before the LiRA kernels see them
  // (include/miakit/lira_math.h).
  m.attr("lira_max_abs_observation") = kLiraMaxAbsObservation;
  m.def("signal", [](py::handle logits, py::handle labels, py::handle out, Signal kind,
                     std::uintptr_t stream) {
    SignalArgs a;
    a.logits = to_tensor(logits, "logits");
    a.labels = to_tensor(labels, "labels");
    a.n_out = 1;
    a.kinds[0] = kind;
    a.outs[0] = to_tensor(out, "out", true);
    const SignalStatus st = run_signal(a, stream);
    return signal_status_dict(st);
  }, py::arg("logits"), py::arg("labels"), py::arg("out"), py::arg("kind"), py::arg("stream"));

  // Several signals of the same rows in one pass: kinds[s] into outs[s].
  m.def("signals", [](py::handle logits, py::handle labels, const std::vector<Signal>& kinds,
                      const std::vector<py::handle>& outs, std::uintptr_t stream) {
    if (kinds.size() != outs.size())
      throw InputError("outs: expected one output per kind (" + std::to_string(kinds.size()) +
                       "), got " + std::to_string(outs.size()));
    if (kinds.empty() || kinds.size() > static_cast<size_t>(kMaxSignalOuts))
      throw InputError("kinds: expected 1 to " + std::to_string(kMaxSignalOuts) +
                       " signals, got " + std::to_string(kinds.size()));
    SignalArgs a;
    a.logits = to_tensor(logits, "logits");
    a.labels = to_tensor(labels, "labels");
    a.n_out = static_cast<int>(kinds.size());
    for (int s = 0; s < a.n_out; ++s) {
      a.kinds[s] = kinds[s];
      a.outs[s] = to_tensor(outs[s], "outs", true);
    }
    const SignalStatus st = run_signal(a, stream);
    return signal_status_dict(st);
  }, py::arg("logits"), py::arg("labels"), py::arg("kinds"), py::arg("outs"),
     py::arg("stream"));

  // The model balanced leave-one-out leaves out beside each target on each example:
  // out[t, n] = balanced_partner(targets[t], M, keep[:, n]) (include/miakit/lira_math.h),
  // the one rule the CPU and CUDA kernels apply. Host arrays only; keep 0/1 [M, N].
  m.def("balanced_partners", [](const py::array_t<uint8_t, py::array::c_style |
                                                            py::array::forcecast>& keep,
                                const py::array_t<int64_t, py::array::c_style |
                                                            py::array::forcecast>& targets) {
    if (keep.ndim() != 2)
      throw InputError("keep: expected [models, examples], got " +
                       std::to_string(keep.ndim()) + " dimensions");
    if (targets.ndim() != 1)
      throw InputError("targets: expected [K], got " + std::to_string(targets.ndim()) +
                       " dimensions");
    const int64_t M = keep.shape(0), N = keep.shape(1), K = targets.shape(0);
    if (M > std::numeric_limits<int>::max())
      throw InputError("keep: too many models (" + std::to_string(M) + ")");
    auto member = keep.unchecked<2>();
    auto target = targets.unchecked<1>();
    for (int64_t t = 0; t < K; ++t)
      if (target(t) < 0 || target(t) >= M)
        throw InputError("targets: expected model indices in [0, " + std::to_string(M) +
                         "), got " + std::to_string(target(t)));
    py::array_t<int64_t> out({K, N});
    auto partner = out.mutable_unchecked<2>();
    {
      py::gil_scoped_release nogil;
      std::vector<uint8_t> column(static_cast<size_t>(M));
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t m = 0; m < M; ++m) column[m] = member(m, n);
        for (int64_t t = 0; t < K; ++t)
          partner(t, n) = balanced_partner(static_cast<int>(target(t)), static_cast<int>(M),
                                           column.data());
      }
    }
    return out;
  }, py::arg("keep"), py::arg("targets"));

  m.def("lira_fit", [](py::handle data, py::handle labels, py::handle keep, py::handle mu_in,
                       py::handle mu_out, py::handle sd_in, py::handle sd_out, py::handle n_in,
                       py::handle n_out, Center center, Signal signal, std::uintptr_t stream) {
    LiraFitArgs a;
    a.source = make_source(data, labels);
    a.keep = to_tensor(keep, "keep");
    a.mu_in = to_tensor(mu_in, "mu_in", true);
    a.mu_out = to_tensor(mu_out, "mu_out", true);
    a.sd_in = to_tensor(sd_in, "sd_in", true);
    a.sd_out = to_tensor(sd_out, "sd_out", true);
    a.n_in = to_tensor(n_in, "n_in", true);
    a.n_out = to_tensor(n_out, "n_out", true);
    a.opt.center = center;
    a.opt.signal = signal;
    const Tensor& src = source_tensor(a.source);
    same_device({{"shadow data", &src}, {"labels", a.source.from_logits ? &a.source.labels : &src},
                 {"keep", &a.keep}, {"mu_in", &a.mu_in}, {"mu_out", &a.mu_out},
                 {"sd_in", &a.sd_in}, {"sd_out", &a.sd_out}, {"n_in", &a.n_in},
                 {"n_out", &a.n_out}});
    int64_t M, N, A;
    check_source(a.source, a.keep, &M, &N, &A);
    check_fit_stats({{"mu_in", &a.mu_in}, {"mu_out", &a.mu_out}, {"sd_in", &a.sd_in},
                     {"sd_out", &a.sd_out}}, N, A);
    for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"n_in", &a.n_in},
                                  {"n_out", &a.n_out}}) {
      check_dtype(*t, name, {DType::i64}, "int64");
      check_shape(*t, name, {N}, "one count per example");
    }
    LiraStatus st;
    {
      py::gil_scoped_release nogil;
      st = MIAKIT_DISPATCH(lira_fit, a, stream, src);
    }
    return status_dict(st);
  }, py::arg("data"), py::arg("labels"), py::arg("keep"), py::arg("mu_in"), py::arg("mu_out"),
     py::arg("sd_in"), py::arg("sd_out"), py::arg("n_in"), py::arg("n_out"), py::arg("center"),
     py::arg("signal"), py::arg("stream"));

  m.def("lira_score", [](py::handle target, py::handle mu_in, py::handle mu_out,
                         py::handle sd_in, py::handle sd_out, py::handle out, Mode mode,
                         Offline offline, std::uintptr_t stream) {
    LiraScoreArgs a;
    a.target = to_tensor(target, "target_scores");
    a.mu_in = to_tensor(mu_in, "mu_in");
    a.mu_out = to_tensor(mu_out, "mu_out");
    a.sd_in = to_tensor(sd_in, "sd_in");
    a.sd_out = to_tensor(sd_out, "sd_out");
    a.out = to_tensor(out, "out", true);
    a.opt.mode = mode;
    a.opt.offline = offline;
    same_device({{"target_scores", &a.target}, {"mu_in", &a.mu_in}, {"mu_out", &a.mu_out},
                 {"sd_in", &a.sd_in}, {"sd_out", &a.sd_out}, {"out", &a.out}});
    if (a.target.ndim != 2)
      throw InputError("target_scores: expected [N, A], got " + dims(a.target));
    const int64_t N = a.target.shape[0], A = a.target.shape[1];
    check_fit_stats({{"mu_in", &a.mu_in}, {"mu_out", &a.mu_out}, {"sd_in", &a.sd_in},
                     {"sd_out", &a.sd_out}}, N, A);
    check_dtype(a.out, "out", {DType::f64}, "float64");
    check_shape(a.out, "out", {N}, "one score per example");
    LiraStatus st;
    {
      py::gil_scoped_release nogil;
      st = MIAKIT_DISPATCH(lira_score, a, stream, a.target);
    }
    return status_dict(st);
  }, py::arg("target"), py::arg("mu_in"), py::arg("mu_out"), py::arg("sd_in"), py::arg("sd_out"),
     py::arg("out"), py::arg("mode"), py::arg("offline"), py::arg("stream"));

  m.def("lira_loo", [](py::handle data, py::handle labels, py::handle keep, py::handle targets,
                       py::handle out, Center center, Variance variance, Mode mode,
                       Offline offline, References references, double min_std, Signal signal,
                       std::uintptr_t stream) {
    LiraLooArgs a;
    a.source = make_source(data, labels);
    a.keep = to_tensor(keep, "keep");
    a.targets = to_tensor(targets, "targets");
    a.out = to_tensor(out, "out", true);
    a.opt.center = center;
    a.opt.variance = variance;
    a.opt.mode = mode;
    a.opt.offline = offline;
    a.opt.references = references;
    a.opt.min_std = min_std;
    a.opt.signal = signal;
    const Tensor& src = source_tensor(a.source);
    same_device({{"shadow data", &src}, {"labels", a.source.from_logits ? &a.source.labels : &src},
                 {"keep", &a.keep}, {"targets", &a.targets}, {"out", &a.out}});
    int64_t M, N, A;
    check_source(a.source, a.keep, &M, &N, &A);
    check_dtype(a.targets, "targets", {DType::i64}, "int64");
    if (a.targets.ndim != 1) throw InputError("targets: expected [K], got " + dims(a.targets));
    check_dtype(a.out, "out", {DType::f64}, "float64");
    check_shape(a.out, "out", {a.targets.shape[0], N}, "targets x examples");
    LiraStatus st;
    {
      py::gil_scoped_release nogil;
      st = MIAKIT_DISPATCH(lira_loo, a, stream, src);
    }
    return status_dict(st);
  }, py::arg("data"), py::arg("labels"), py::arg("keep"), py::arg("targets"), py::arg("out"),
     py::arg("center"), py::arg("variance"), py::arg("mode"), py::arg("offline"),
     py::arg("references"), py::arg("min_std"), py::arg("signal"), py::arg("stream"));
}

}  // namespace miakit
