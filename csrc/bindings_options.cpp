// The named options that cross the binding, bound once as Python enum.Enum classes of
// miakit._C. A function that takes one declares the enum as its argument type, so
// pybind11 accepts only a member of that class (an int, a string or another enum's member
// is a TypeError naming the argument) and no out-of-range code can reach a kernel.
// python/miakit/_options.py maps the user-facing strings onto these members.
#include <pybind11/native_enum.h>

#include "kernels_attack.h"
#include "pyconvert.h"

namespace miakit {

void register_options(py::module_& m) {
  // The kernels' own enums (include/miakit/signals.h, lira_math.h; kernels_attack.h).
  py::native_enum<Signal>(m, "Signal", "enum.Enum",
                          "Membership signal computed from a logit row (signals.h).")
      .value("scaled_confidence", Signal::scaled_confidence)
      .value("hinge", Signal::hinge)
      .value("loss", Signal::loss)
      .value("confidence", Signal::confidence)
      .value("max_confidence", Signal::max_confidence)
      .value("correct", Signal::correct)
      .value("grad_norm", Signal::grad_norm)
      .finalize();
  py::native_enum<Center>(m, "Center", "enum.Enum", "LiRA: centre of each side's Gaussian.")
      .value("median", Center::median)
      .value("mean", Center::mean)
      .finalize();
  // "global" is a Python keyword: the member is global_ (miakit.lira's "global").
  py::native_enum<Variance>(m, "Variance", "enum.Enum",
                            "LiRA: spread per example, or one pooled spread per side.")
      .value("per_example", Variance::per_example)
      .value("global_", Variance::global)
      .finalize();
  py::native_enum<Mode>(m, "Mode", "enum.Enum", "LiRA: online (IN and OUT) or offline (OUT).")
      .value("online", Mode::online)
      .value("offline", Mode::offline)
      .finalize();
  py::native_enum<Offline>(m, "Offline", "enum.Enum", "LiRA: the offline test.")
      .value("one_sided", Offline::one_sided)
      .value("two_sided", Offline::two_sided)
      .finalize();
  py::native_enum<References>(m, "References", "enum.Enum",
                              "Leave-one-out: the reference models of each target.")
      .value("balanced", References::balanced)
      .value("all", References::all)
      .finalize();
  py::native_enum<KsSides>(m, "KsSides", "enum.Enum",
                           "ks_unsorted: which extremes of F_a - F_b must be exact.")
      .value("both", KsSides::both)
      .value("max", KsSides::max)
      .value("min", KsSides::min)
      .value("larger", KsSides::larger)
      .finalize();

  // Switches between the kernels of one binding (pyconvert.h).
  py::native_enum<HeadQuantity>(m, "HeadQuantity", "enum.Enum",
                                "head: per-example gradient norms or input-Hessian traces.")
      .value("grad_norm", HeadQuantity::grad_norm)
      .value("input_trace", HeadQuantity::input_trace)
      .finalize();
  py::native_enum<ProbeReduction>(m, "ProbeReduction", "enum.Enum",
                                  "probe_reduce: mean and stderr of x.y (Hutchinson), or the "
                                  "mean of ||x - y|| (finite differences).")
      .value("quadratic", ProbeReduction::quadratic)
      .value("difference", ProbeReduction::difference)
      .finalize();
  py::native_enum<KsPiece>(m, "KsPiece", "enum.Enum",
                           "ks_kstwo_piece: smirnov(n, x), or P(D_n <= x) by Durbin's matrix.")
      .value("smirnov", KsPiece::smirnov)
      .value("durbin", KsPiece::durbin)
      .finalize();
}

}  // namespace miakit
