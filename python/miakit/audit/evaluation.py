"""The audit's numbers: the metrics of each attack, the verdict and the privacy summary.

For each attack, from one ranking of its ``[M, N]`` leave-one-out scores: the AUC (with a
standard error clustered by example) and the TPR at FPR 1e-1, 1e-2 and 1e-3 with the
achieved FPR, the counts behind both rates and Clopper-Pearson intervals made
cluster-robust (``mk.metrics.tpr_at_fpr``), the leakage tests, the empirical epsilon and
both tails of the ROC with pointwise intervals (:func:`evaluate`). Over the attacks: the
verdict that tests them all (:func:`verdict`, :data:`VERDICT_METHOD`), the strongest
attack (:func:`strongest`) and the largest empirical epsilon against a DP claim
(:func:`privacy_summary`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from miakit import metrics
from miakit._validation import check_probabilities, check_probability, check_real
from miakit.audit.attacks import ATTACKS, _check_both_sides
from miakit.audit.report import AttackResult, Verdict

__all__ = ["DEFAULT_FPRS", "DP_DELTA", "VERDICT_METHOD", "evaluate", "privacy_summary",
           "strongest", "verdict"]

DEFAULT_FPRS = (1e-1, 1e-2, 1e-3)
"""The FPR budgets of the TPR table and the leakage tests when none are given."""
DP_DELTA = 1e-5
"""The delta of the empirical epsilon the audit reports when no DP guarantee is given."""
_ROC_POINTS = 60
_PLOT_POINTS = 4000  # vertices of each attack's curve in roc.png


def _evaluate(scores: np.ndarray, members: np.ndarray, fprs: tuple[float, ...],
              level: float, *, alpha: float = 0.05, n_tests: int | None = None,
              dp_delta: float = DP_DELTA, max_accuracy: bool = False,
              workspace: Any = None, clustered: bool = True) -> dict[str, Any]:
    """Metrics of one attack's scores ``[M, N]``, every interval clustered by example,
    all from one ranking of the scores (``metrics.RankedScores``). ``clustered=False``:
    one target model's scores ``[N]``, each example once, so the intervals are plain
    binomial ones and the leakage test Fisher's."""
    if clustered:
        # NaN scores left out; a workspace's buffers are reused from attack to attack
        ranked = metrics.RankedScores.by_columns(scores, members, workspace)
    else:
        ok = np.isfinite(scores)
        ranked = metrics.RankedScores(scores[ok], members[ok], clusters=None)
        ranked.excluded = int(ok.size - np.count_nonzero(ok))
    n_neg = ranked.n_neg
    points = []
    for f in fprs:
        r = ranked.tpr_at_fpr(f, level)
        points.append({"target_fpr": f, "tpr": r.tpr, "fpr": r.fpr, "tp": r.tp, "fp": r.fp,
                       "n_members": r.n_pos, "n_nonmembers": r.n_neg, "tpr_ci": list(r.ci),
                       "fpr_ci": list(r.fpr_ci), "design_effect": list(r.design_effect),
                       "threshold": r.threshold if math.isfinite(r.threshold) else None,
                       "resolvable": r.resolvable,
                       "unresolvable_reason": r.unresolvable_reason})
    tests = ranked.leakage_test(fprs, alpha, n_tests or len(fprs))
    leakage = [{"target_fpr": t.target_fpr, "tpr": t.tpr, "fpr": t.fpr,
                "tpr_lower": t.tpr_lower, "fpr_upper": t.fpr_upper, "leak": t.leak,
                "min_detectable_tpr": None if math.isnan(t.min_detectable_tpr)
                else t.min_detectable_tpr, "alpha_each": t.alpha_each,
                "resolvable": t.resolvable, "p_value": t.p_value, "test": t.test,
                "threshold": t.threshold if math.isfinite(t.threshold) else None}
               for t in tests]
    a = ranked.auc_ci(level)
    return {"auc": a.auc, "auc_se": a.se, "auc_ci": list(a.ci), "n_members": ranked.n_pos,
            "n_nonmembers": n_neg, "excluded": ranked.excluded, "tpr_at_fpr": points,
            "leakage_test": leakage,
            "empirical_epsilon": _empirical_epsilon(ranked, dp_delta, level, clustered),
            "roc": _roc_summary(ranked, level, clustered), "curve": _roc_vertices(ranked),
            "max_accuracy": _max_accuracy(ranked) if max_accuracy else None}


def _roc_summary(ranked: Any, level: float, clustered: bool) -> dict[str, list[float]]:
    """Both tails of the ROC at log grids, with pointwise intervals (``report.json``'s
    ``roc``).

    The high-score tail: the TPR at FPR <= g for g on a log grid from 1/n_neg to 1, the
    last ROC point whose false-positive count fits (compared in exact integer counts, as
    ``tpr_at_fpr`` does). The low-score tail, where the empirical epsilon's ``"fnr"``
    side lives: the TNR (non-members below the threshold) at FNR <= g (members below it)
    for g from 1/n_pos to 1, the first point whose false-negative count fits. Each rate
    has the interval the TPR table gives its points (cluster-robust over examples, or
    Clopper-Pearson for one target model) at every grid point: a pointwise band, not a
    simultaneous one.
    """
    n_pos, n_neg = ranked.n_pos, ranked.n_neg
    tp, fp = ranked.tp, ranked.fp
    grid_f = np.geomspace(1.0 / n_neg, 1.0, _ROC_POINTS)
    grid_n = np.geomspace(1.0 / n_pos, 1.0, _ROC_POINTS)
    # (integer queries: a float query would make numpy convert the whole count array)
    hi_side = np.searchsorted(fp, np.floor(grid_f * n_neg + 1e-6).astype(np.int64),
                              side="right") - 1
    fn_budget = np.floor(grid_n * n_pos + 1e-6).astype(np.int64)
    lo_side = np.searchsorted(tp, n_pos - fn_budget, side="left")  # fewest fp: best TNR
    t_lo, t_hi, f_lo, f_hi = _pointwise_bounds(ranked, hi_side, lo_side, level, clustered)
    return {"fpr": grid_f.tolist(), "tpr": (tp[hi_side] / n_pos).tolist(),
            "tpr_lower": t_lo.tolist(), "tpr_upper": t_hi.tolist(),
            "fnr": grid_n.tolist(), "tnr": (1.0 - fp[lo_side] / n_neg).tolist(),
            "tnr_lower": (1.0 - f_hi).tolist(), "tnr_upper": (1.0 - f_lo).tolist()}


def _pointwise_bounds(ranked: Any, tpr_points: np.ndarray, fpr_points: np.ndarray,
                      level: float, clustered: bool
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two-sided intervals of the TPR at ``tpr_points`` and of the FPR at ``fpr_points``
    (ROC point indices): the intervals of the TPR table (``RankedScores.tpr_at_fpr``), so
    a band drawn through them agrees with the table where they meet."""
    from miakit._binomial import one_sided

    tail = (1.0 - level) / 2
    k_t = ranked.tp[tpr_points].astype(np.float64)
    k_f = ranked.fp[fpr_points].astype(np.float64)
    if not clustered:  # one target model: every example once, plain Clopper-Pearson
        return (one_sided(k_t, ranked.n_pos, tail, upper=False),
                one_sided(k_t, ranked.n_pos, tail, upper=True),
                one_sided(k_f, ranked.n_neg, tail, upper=False),
                one_sided(k_f, ranked.n_neg, tail, upper=True))
    both = np.r_[tpr_points, fpr_points]
    var_t, var_f, (c_t, c_f), (df_t, df_f) = ranked.cluster_moments(both)
    n = tpr_points.size
    out = []
    for k, total, var, n_cl, dof in ((k_t, ranked.n_pos, var_t[:n], c_t, df_t[:n]),
                                     (k_f, ranked.n_neg, var_f[n:], c_f, df_f[n:])):
        lo, hi = metrics.korn_graubard(k, total, var, n_cl, tail, dof=dof)[:2]
        # the bound towards 1/2 widened by the share of examples the sample can miss
        # (metrics.unseen_share_floor, elementwise)
        p = k / total
        u = float(-np.expm1(np.log(tail) / n_cl)) if n_cl >= 1 else 0.0
        out += [np.where(p > 0.5, np.minimum(lo, np.maximum(0.0, p - u)), lo),
                np.where(p <= 0.5, np.maximum(hi, np.minimum(1.0, p + u)), hi)]
    return out[0], out[1], out[2], out[3]


def _roc_vertices(ranked: Any) -> tuple[np.ndarray, np.ndarray]:
    """The curve the figure draws, (FPR, TPR) at a few thousand of its points: dense at
    log-spaced false-positive counts (the high-score tail) and at log-spaced
    false-negative counts (the low-score tail), instead of one point per distinct
    score."""
    n_pos, n_neg = ranked.n_pos, ranked.n_neg
    fp_counts = np.unique(np.floor(np.geomspace(1.0, n_neg, _PLOT_POINTS))).astype(np.int64)
    fn_counts = np.unique(np.floor(np.geomspace(1.0, n_pos, _PLOT_POINTS))).astype(np.int64)
    vert = np.unique(np.r_[0, ranked.tp.size - 1,
                           np.searchsorted(ranked.fp, fp_counts, side="right") - 1,
                           np.searchsorted(ranked.tp, n_pos - np.r_[0, fn_counts],
                                           side="left")])
    vert = vert[(vert >= 0) & (vert < ranked.tp.size)]
    return ranked.fp[vert] / n_neg, ranked.tp[vert] / n_pos


def _max_accuracy(ranked: Any) -> Any:
    """:func:`miakit.thresholds.max_accuracy_threshold` of the losses whose negatives (the
    loss attack's scores) ``ranked`` holds, from that ranking: the best balanced accuracy
    ``1/2 + (TPR - FPR) / 2`` over its points, first best point, threshold in loss units."""
    from miakit import thresholds

    i = ranked.youden_point  # the first point of the largest TPR - FPR, from the walk
    gain = ranked.tp[i] / ranked.n_pos - ranked.fp[i] / ranked.n_neg
    return thresholds.ThresholdAccuracy(float(0.5 + gain / 2),
                                        -math.inf if i == 0 else float(-ranked.thresholds[i]))


def evaluate(attacks: Mapping[str, Mapping[str, Any]], keep: np.ndarray, *,
             fprs: tuple[float, ...] = DEFAULT_FPRS, level: float = 0.95,
             alpha: float = 0.05, dp_delta: float = DP_DELTA) -> dict[str, AttackResult]:
    """Metrics and leakage tests of every attack's leave-one-out scores.

    Parameters
    ----------
    attacks : mapping
        ``{name: {"scores": [M, N], ...}}`` as :func:`run_attacks` returns (``label``,
        ``settings`` and ``clamped`` are carried over when present).
    keep : array [M, N] bool
        Membership truth of the scored models.
    fprs : tuple of float
        FPR budgets of the TPR table and the leakage tests.
    level : float
        Confidence level of the intervals.
    alpha : float
        Family-wise error rate of the tests (Bonferroni over attacks x FPRs).
    dp_delta : float
        The delta of each attack's empirical epsilon lower bound
        (:func:`miakit.bounds.empirical_epsilon`, clustered by example).

    Returns
    -------
    dict of str to AttackResult
        Per attack: AUC with its clustered standard error and interval, the TPR table,
        the leakage test points, the empirical epsilon and the ROC's two tails at 60
        points each with pointwise intervals (``roc``: TPR at FPR <= g, TNR at
        FNR <= g); pass it to :func:`verdict`.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> from miakit.audit import evaluate, verdict
    >>> rng = np.random.default_rng(0)
    >>> keep = mk.shadow.balanced_keep(8, 2000, seed=0)
    >>> res = evaluate({"noise": {"scores": rng.normal(size=keep.shape)}}, keep)
    >>> verdict(res)["leakage"]
    False
    """
    keep, fprs = _check_keep_matrix(keep), tuple(check_probabilities(fprs, "fprs"))
    _check_both_sides(keep)
    level, alpha = _check_level(level), check_probability(alpha, "alpha")
    dp_delta = _check_delta(dp_delta)
    _check_mapping(attacks, "attacks", "a mapping of attack names to {'scores': [M, N]}")
    for name, a in attacks.items():
        if not isinstance(a, Mapping) or "scores" not in a:
            raise TypeError(f"attacks: expected a mapping with 'scores' for {name!r}, "
                            f"got {type(a).__name__}")
        shape = np.shape(a["scores"])
        if shape != keep.shape:
            raise ValueError(f"keep: expected the shape of the scores of {name!r}, "
                             f"{shape}, got {keep.shape}")
    n_tests = len(attacks) * len(fprs)
    ws = metrics.RankWorkspace()
    return {name: _evaluate_attack(name, a, keep, tuple(fprs), level, alpha, n_tests,
                                   dp_delta, ws) for name, a in attacks.items()}


def _check_mapping(value: Any, name: str, what: str) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name}: expected {what}, got {type(value).__name__}")


def _check_results(results: Any) -> None:
    """Attack results (``{name: metrics}``, as :func:`evaluate` returns), each a mapping."""
    _check_mapping(results, "results", "a mapping of attack names to their metrics")
    for name, r in results.items():
        if not isinstance(r, Mapping):
            raise TypeError(f"results: expected the metrics of {name!r} as a mapping, got "
                            f"{type(r).__name__}")


def _check_keep_matrix(keep: Any) -> np.ndarray:
    """A boolean (or 0/1) ``keep`` ``[M, N]`` as a numpy bool array."""
    from miakit._validation import check_bool_array

    keep = check_bool_array(keep, "keep")
    if keep.ndim != 2:
        raise ValueError(f"keep: expected an [M, N] array, got shape {keep.shape}")
    return keep


def _check_level(level: Any) -> float:
    """A confidence level in [0.5, 1): below 1/2 an interval would not hold its own
    point estimate, and the intervals' quantiles lose their precision near 0."""
    return check_real(level, "level", 0.5, 1.0, open_hi=True,
                      what="a confidence level in [0.5, 1)")


def _check_delta(delta: Any) -> float:
    return check_real(delta, "dp_delta", 0.0, 1.0, open_hi=True, what="a value in [0, 1)")


def _evaluate_attack(name: str, a: Mapping[str, Any], keep: np.ndarray,
                     fprs: tuple[float, ...], level: float, alpha: float, n_tests: int,
                     dp_delta: float, workspace: Any = None, clustered: bool = True
                     ) -> AttackResult:
    res = _evaluate(np.asarray(a["scores"], dtype=np.float64), keep, fprs, level,
                    alpha=alpha, n_tests=n_tests, dp_delta=dp_delta,
                    max_accuracy=name == "loss", workspace=workspace, clustered=clustered)
    return AttackResult(label=a.get("label", ATTACKS.get(name, name)),
                        settings=a.get("settings", {}), clamped_std=a.get("clamped", 0),
                        **res)


def _empirical_epsilon(ranked: Any, delta: float, level: float,
                       clustered: bool = True) -> dict[str, Any]:
    from miakit import bounds

    e = bounds.empirical_epsilon_ranked(ranked, delta, level, clustered=clustered)
    return {"epsilon": e.epsilon, "delta": e.delta, "level": e.level,
            "threshold": e.threshold if math.isfinite(e.threshold) else None,
            "tp": e.tp, "fp": e.fp, "tpr_lower": e.tpr_lower, "fpr_upper": e.fpr_upper,
            "side": e.side, "n_thresholds": e.n_thresholds,
            "method": ("Clopper-Pearson bounds made cluster-robust over examples "
                       "(Korn-Graubard)" if clustered else "Clopper-Pearson bounds") +
                      " at a grid of operating points fixed by their counts, Bonferroni "
                      "over the grid"}


VERDICT_METHOD = (
    "for every attack and FPR budget f, the threshold that calls a share f of all scores "
    "members (chosen without looking at membership); were membership without effect, "
    "which of the called scores are members' would be chance alone: of a complementary "
    "model pair with one called score of an example, the member's with probability 1/2 "
    "(paired sign test, exact), otherwise hypergeometric within each example "
    "(Mantel-Haenszel); leakage is declared when the p-value of the members called is at "
    "most alpha / number of tests (Bonferroni over attacks x FPRs, so the family-wise "
    "error is at most alpha). Conditioning on each example's called scores removes its "
    "difficulty from the test, so a leak carried by a few examples is found")
"""How :func:`verdict` decides, in words (its ``method``, in the report)."""


def privacy_summary(results: Mapping[str, Mapping[str, Any]], dp_epsilon: float | None,
                    dp_delta: float) -> dict[str, Any]:
    """Every attack's empirical epsilon, the largest, and how it compares with a claim.

    Examples
    --------
    >>> from miakit.audit import privacy_summary
    >>> r = {"a": {"label": "A", "empirical_epsilon": {"epsilon": 0.7}},
    ...      "b": {"label": "B", "empirical_epsilon": {"epsilon": 1.9}}}
    >>> p = privacy_summary(r, 1.0, 1e-5)
    >>> p["max_empirical_epsilon"], p["attack"], p["consistent"]
    (1.9, 'b', False)
    """
    _check_results(results)
    if dp_epsilon is not None:
        dp_epsilon = check_real(dp_epsilon, "dp_epsilon", 0.0, open_lo=True, allow_inf=True)
    dp_delta = _check_delta(dp_delta)
    eps = {k: r["empirical_epsilon"]["epsilon"] for k, r in results.items()
           if r.get("empirical_epsilon")}
    best = max(eps, key=lambda k: eps[k]) if eps else None
    out: dict[str, Any] = {"empirical_epsilon": eps, "delta": dp_delta,
                           "max_empirical_epsilon": eps[best] if best else None,
                           "attack": best, "claimed_epsilon": dp_epsilon}
    if dp_epsilon is not None and best is not None:
        out["consistent"] = bool(eps[best] <= dp_epsilon)
        out["memorization_bound"] = float(-math.expm1(-dp_epsilon))
    return out


def strongest(results: Mapping[str, Mapping[str, Any]],
              verdict: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The attack to name as the strongest.

    With the audit's ``verdict``: the attack and operating point the verdict rests on
    (its first evidence: the lowest FPR budget that declares leakage, the smallest
    p-value there), or None when no attack was significant, so the report never names
    an attack its own test does not support. Without it: the highest TPR at the lowest
    FPR budget where the point is resolvable (AUC breaks ties; AUC alone where no point
    is).

    Examples
    --------
    >>> from miakit.audit import strongest
    >>> pt = lambda tpr: [{"target_fpr": 0.01, "tpr": tpr, "resolvable": True}]
    >>> r = {"a": {"label": "A", "auc": 0.6, "tpr_at_fpr": pt(0.1)},
    ...      "b": {"label": "B", "auc": 0.7, "tpr_at_fpr": pt(0.05)}}
    >>> strongest(r)["attack"]
    'a'
    >>> strongest(r, {"leakage": False, "strongest": None}) is None
    True
    """
    _check_results(results)
    if verdict is not None:
        _check_mapping(verdict, "verdict", "a verdict (a mapping with 'leakage')")
    if not results:
        return None
    if verdict is not None:
        e = verdict.get("strongest")
        if not verdict.get("leakage") or not e:
            return None
        # The verdict's test calls a share of *all* scores; the attack table's TPR is at a
        # share of the non-members. Both are kept so the summary can quote the table's.
        table = [p for p in results[e["attack"]].get("tpr_at_fpr", [])
                 if p.get("target_fpr") == e["target_fpr"] and p.get("resolvable", True)]
        return {"attack": e["attack"], "label": e["label"],
                "auc": results[e["attack"]]["auc"], "target_fpr": e["target_fpr"],
                "tpr": e["tpr"], "p_value": e.get("p_value"),
                "table_tpr": table[0]["tpr"] if table else None,
                "rule": "the attack and operating point the verdict rests on: the lowest FPR "
                        "budget that declares leakage, the smallest p-value there"}

    def low(r: Mapping[str, Any]) -> Mapping[str, Any] | None:
        points = [p for p in r["tpr_at_fpr"] if p.get("resolvable", True)]
        return min(points, key=lambda p: p["target_fpr"]) if points else None

    def key(item: tuple[str, Mapping[str, Any]]) -> tuple[float, float, float]:
        p = low(item[1])
        return ((-p["target_fpr"], p["tpr"]) if p else (-math.inf, 0.0)) + (item[1]["auc"],)

    name, r = max(results.items(), key=key)
    p = low(r)
    return {"attack": name, "label": r["label"], "auc": r["auc"],
            "target_fpr": p["target_fpr"] if p else None, "tpr": p["tpr"] if p else None,
            "rule": "highest TPR at the lowest FPR budget where it is resolvable, then "
                    "highest AUC"}


def verdict(results: Mapping[str, Mapping[str, Any]], alpha: float = 0.05) -> Verdict:
    """Is there membership leakage? A test over every attack and FPR of an audit.

    Parameters
    ----------
    results : mapping of attack name to its metrics
        Each with ``"label"`` and ``"leakage_test"`` (the points of
        :func:`miakit.metrics.leakage_test`, as :func:`audit` stores them, computed with
        ``n_tests`` = attacks x FPRs).
    alpha : float
        The family-wise error rate the tests were run at.

    Returns
    -------
    dict
        ``leakage`` (bool); ``evidence``: every point that declares leakage, the lowest
        FPR first and, at one FPR, the smallest p-value first (then the largest TPR lower
        bound); ``strongest``: the
        first of them or None; ``detectable``: per FPR budget, the smallest TPR excess
        over the budget that some attack's counts could have declared;
        ``n_tests``, ``alpha`` and ``method``.

    Examples
    --------
    >>> from miakit.audit import verdict
    >>> pt = {"target_fpr": 0.01, "tpr": 0.05, "fpr": 0.01, "tpr_lower": 0.04,
    ...       "fpr_upper": 0.012, "leak": True, "min_detectable_tpr": 0.02,
    ...       "alpha_each": 0.05, "resolvable": True}
    >>> v = verdict({"loss": {"label": "Loss threshold", "leakage_test": [pt]}})
    >>> v["leakage"], v["strongest"]["attack"], v["detectable"][0]["min_excess"]
    (True, 'loss', 0.01)
    """
    _check_results(results)
    alpha = check_probability(alpha, "alpha")
    evidence, n_tests = [], 0
    budgets: dict[float, list[float]] = {}
    for name, r in results.items():
        for p in r["leakage_test"]:
            n_tests += 1
            if p["leak"]:
                evidence.append({"attack": name, "label": r["label"], **p})
            if p["resolvable"] and p["min_detectable_tpr"] is not None:
                budgets.setdefault(p["target_fpr"], []).append(
                    p["min_detectable_tpr"] - p["target_fpr"])
            else:
                budgets.setdefault(p["target_fpr"], [])
    # the lowest budget first, there the most significant (smallest p-value; then the
    # largest TPR lower bound)
    evidence.sort(key=lambda e: (e["target_fpr"], e.get("p_value", 1.0), -e["tpr_lower"]))
    detectable = [{"target_fpr": f, "min_excess": round(min(v), 12) if v else None}
                  for f, v in sorted(budgets.items(), reverse=True)]
    return {"leakage": bool(evidence), "strongest": evidence[0] if evidence else None,
            "evidence": evidence, "detectable": detectable, "n_tests": n_tests,
            "alpha": alpha, "method": VERDICT_METHOD}

