"""The audit report in words: the parts of its summary and the summary itself.

:func:`summary_sections` turns a report (``report.json``) into lines and a table of
cells as text, which :func:`summarize` prints (what ``miakit audit`` shows) and
:func:`miakit.audit.page.to_html` lays out as a page; the number formats and the run's
title are shared by both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from miakit.audit.attacks import ATTACKS

__all__ = ["summary_sections", "summarize"]


def _model_name(config: dict) -> str:
    if config.get("head") == "mlp":
        return f"MLP head, {config.get('hidden')} hidden units"
    if config.get("head") == "linear":
        return "linear head"
    if config.get("trainer") == "import":  # logits or signals brought from elsewhere
        return "imported"
    return str(config.get("model_factory", "torch model")).rsplit(".", 1)[-1]


def _title(report: Mapping[str, Any]) -> str:
    r = report["run"]
    name = r["metadata"].get("dataset", "run")
    return (f"{name}: {r['n_models']} shadow models ({_model_name(r['config'])}), "
            f"{r['n_examples']} examples")


def _pct3(x: float) -> str:
    """A percentage with three significant digits (bounds compared side by side)."""
    return f"{100 * x:.3g}%"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x >= 0.001 else f"{100 * x:.2f}%"


def _check_report(report: Any, name: str = "report") -> Mapping[str, Any]:
    """``report`` if it is an audit report (a mapping with ``run`` and ``models``: the
    parts every summary reads), else ``TypeError`` / ``ValueError`` naming the argument.

    Examples
    --------
    >>> from miakit.audit.text import _check_report
    >>> _check_report(None)
    Traceback (most recent call last):
    ...
    TypeError: report: expected an audit report (a mapping with 'run', 'models', ...), got NoneType
    """
    want = "an audit report (a mapping with 'run', 'models', ...)"
    if not isinstance(report, Mapping):
        raise TypeError(f"{name}: expected {want}, got {type(report).__name__}")
    missing = [k for k in ("run", "models") if k not in report]
    if missing:
        raise ValueError(f"{name}: expected {want}, got a mapping without {missing}")
    return report


def summary_sections(report: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an audit report's summary, for :func:`summarize` and other renderers
    (:func:`miakit.audit.to_html`).

    Returns
    -------
    dict
        ``run`` (lines describing the run and its models), ``pairs`` (the line counting
        the attacked pairs, or None), ``table`` (``(header, rows)`` of the attack table,
        cells as text, or None), ``notes`` (how to read the table, the references, the
        strongest attack, the baselines), ``verdict``, ``privacy``, ``risk`` (the
        per-example correlations) and ``files``: lists of lines.

    Examples
    --------
    >>> from miakit.audit import summary_sections
    >>> rep = {"run": {"n_models": 4, "n_examples": 10, "n_augmentations": 1,
    ...                "n_classes": 2, "config": {"head": "linear"}, "metadata": {}},
    ...        "models": {"train_accuracy": 1.0, "test_accuracy": 0.9},
    ...        "evaluation": {"confidence_level": 0.95}, "attacks": {}}
    >>> summary_sections(rep)["run"][0]
    'miakit audit: run, 4 shadow models (linear head), 10 examples x 1 query view, 2 classes'
    """
    _check_report(report)
    r, q = report["run"], report["models"]
    name = r["metadata"].get("dataset", "run")
    model = _model_name(r["config"])
    target = report.get("target")
    if target is not None:
        return _target_sections(report)
    out: dict[str, Any] = {
        "run": [f"miakit audit: {name}, {r['n_models']} shadow models ({model}), "
                f"{r['n_examples']} examples x {r['n_augmentations']} query "
                f"view{'s' if r['n_augmentations'] != 1 else ''}, "
                + (f"{r['n_classes']} classes" if not r["config"].get("signal") else
                   f"one {r['config']['signal']} value each"),
                (f"shadow models: train accuracy {_pct(q['train_accuracy'])}, test accuracy "
                 f"{_pct(q['test_accuracy'])} (mean over models; members vs non-members)"
                 if q.get("train_accuracy") is not None else
                 f"shadow models: imported {r['config'].get('signal')} values, no logits "
                 "(no accuracy)")],
        "pairs": None, "table": None, "notes": [], "verdict": [], "privacy": [], "risk": [],
        "files": []}
    _attack_sections(report, out, clustered=True)
    return out


def _attack_sections(report: Mapping[str, Any], out: dict[str, Any], clustered: bool) -> None:
    """The attack table, its notes, the verdict, the privacy lines, the per-example risk
    and the files of ``report`` into ``out``."""
    r = report["run"]
    # the attacks in the audit's order (report.json stores its keys sorted)
    known = list(ATTACKS)
    attacks = {k: report["attacks"][k] for k in sorted(
        report["attacks"], key=lambda k: (known.index(k) if k in known else len(known), k))}
    if attacks:
        first = next(iter(attacks.values()))
        out["pairs"] = (f"each model attacked with the other {r['n_models'] - 1}: "
                        f"{first['n_members']:,} member and {first['n_nonmembers']:,} "
                        "non-member pairs per attack" if clustered else
                        f"the target attacked with the run's {r['n_models']} models as "
                        f"references: {first['n_members']:,} members and "
                        f"{first['n_nonmembers']:,} non-members, each judged once")
        fprs = [p["target_fpr"] for p in first["tpr_at_fpr"]]
        head = ["attack", "AUC"] + [f"TPR @ FPR {100 * f:g}%" for f in fprs]
        rows = []
        for a in attacks.values():
            cells = [a["label"], f"{a['auc']:.3f}"]
            for p in a["tpr_at_fpr"]:
                lo, hi = p["tpr_ci"]
                if p["resolvable"]:
                    cells.append(f"{_pct(p['tpr'])} [{_pct(lo)}, {_pct(hi)}]")
                else:  # not a measurement: no number (the reason is in the notes)
                    cells.append("not resolvable*")
            rows.append(cells)
        out["table"] = (head, rows)
        level = report["evaluation"]["confidence_level"]
        notes = out["notes"]
        notes.append(f"TPR: share of members caught at the lowest threshold whose FPR is at "
                     f"most the target; [{100 * level:.0f}% interval, " + (
                         "cluster-robust over examples (Korn-Graubard), as wide as the "
                         "examples that carry the rate allow]." if clustered else
                         "Clopper-Pearson: one model, each example once]."))
        why: dict[str, list[str]] = {}
        for a in attacks.values():
            for p in a["tpr_at_fpr"]:
                if not p["resolvable"]:
                    reason = p.get("unresolvable_reason") or (
                        "fewer non-members than 1/FPR: not one false positive fits the budget")
                    why.setdefault(reason, []).append(
                        f"{a['label']} at FPR {100 * p['target_fpr']:g}%")
        for reason, where in why.items():
            notes.append(f"*: not resolvable ({', '.join(where)}): {reason}.")
        refs = report["evaluation"].get("references")
        if refs and clustered:
            notes.append(f"leave-one-out references: {refs['rule']}"
                         + (f" (left out beside the target: {refs['partner']})"
                            if refs.get("partner") else " (target only; biased)"))
        best = report.get("strongest_attack")
        v = report.get("verdict")
        if best and best.get("p_value") is not None:
            # The attack the verdict rests on; its numbers are the table's (the verdict's
            # own test calls a share of all scores, and its line says so).
            table_tpr = best.get("table_tpr")
            at = (f"TPR {_pct(table_tpr)} at FPR {100 * best['target_fpr']:g}%, "
                  if table_tpr is not None else "")
            notes.append(f"strongest attack: {best['label']}, the one the verdict rests on "
                         f"({at}AUC {best['auc']:.3f}; the verdict's p = "
                         f"{best['p_value']:.2g})")
        elif best and best.get("tpr") is not None:
            notes.append(f"strongest attack: {best['label']} (TPR {_pct(best['tpr'])} at FPR "
                         f"{100 * best['target_fpr']:g}%, AUC {best['auc']:.3f})")
        elif v and not v.get("leakage"):
            notes.append("strongest attack: none; no attack was significant")
        base = report.get("baselines") or {}
        parts = [f"{what} {_pct(base[key]['accuracy'])}" for key, what in (
            ("bayes", "correct means member"), ("max_accuracy_threshold", "best loss threshold"))
            if key in base]
        if parts:
            notes.append("baselines (balanced accuracy): " + ", ".join(parts))
        out["verdict"] = _verdict_lines(report.get("verdict"), level, clustered)
        out["privacy"] = _privacy_lines(report.get("privacy"), attacks, level,
                                        figure="roc" in (report.get("files") or {}))
    vul = report.get("vulnerability")
    if vul and vul.get("spearman"):
        col = "tpr_at_fpr" if "tpr_at_fpr" in vul["spearman"] else vul["columns"][0]
        rho = vul["spearman"][col]
        parts = [f"{c} {rho[c]:+.2f}" for c in ("memorization", "grad_norm", "curvature",
                                                 "hellinger") if rho.get(c) is not None]
        if parts:
            out["risk"].append(f"per-example risk: Spearman correlation of LiRA's per-example "
                               f"{col} with " + ", ".join(parts))
            others = [f"{c} {rho[c]:+.2f}" for c in ("grad_norm_out", "curvature_out")
                      if rho.get(c) is not None]
            meta = vul.get("meta", {})
            if meta.get("grad_norm_kind"):
                how = (f"grad_norm: {meta['grad_norm_kind']}, curvature: "
                       f"{meta.get('curvature_kind')}")
                if meta.get("head"):
                    how += f" ({'MLP' if meta['head'] == 'mlp' else 'linear'} head, exact)"
                out["risk"].append(f"  {how}; first query view, mean over the models that "
                                   "trained on the example" + (
                                       f"; over the others: {', '.join(others)}"
                                       if others else ""))
    files = report.get("files")
    if files:
        out["files"].append("wrote " + ", ".join(str(v) for v in files.values()))


def _target_sections(report: Mapping[str, Any]) -> dict[str, Any]:
    """The sections of a target model's audit (:func:`miakit.audit.audit_target`)."""
    r, q, t = report["run"], report["models"], report["target"]
    name = r["metadata"].get("dataset", "run")
    out: dict[str, Any] = {
        "run": [f"miakit audit: one target model, {t['n_examples']} examples "
                f"({t['n_members']} members); references: {name}, {r['n_models']} models "
                f"({_model_name(r['config'])}), {r['n_augmentations']} query "
                f"view{'s' if r['n_augmentations'] != 1 else ''}",
                f"target model: train accuracy {_pct(q['train_accuracy'])}, test accuracy "
                f"{_pct(q['test_accuracy'])} (its members vs non-members)"],
        "pairs": None, "table": None, "notes": [], "verdict": [], "privacy": [], "risk": [],
        "files": []}
    for a, why in (t.get("attacks_skipped") or {}).items():
        out["notes"].append(f"{ATTACKS.get(a, a)} not run: {why}")
    _attack_sections(report, out, clustered=False)
    e = report.get("exposed")
    if e:
        top = ", ".join(f"{x['example']} (q {x['q_value']:.2g})" for x in e["top"][:5])
        out["risk"].append(
            f"exposed records: {e['n_exposed']} of the target's {e['n_tested']} training "
            f"records at a false discovery rate of {100 * e['fdr']:g}% (membership p-values "
            "against each record's OUT references, Benjamini-Hochberg)"
            + (f"; most significant: {top}" if top else "") + "; all in exposed.csv")
    return out


def summarize(report: Mapping[str, Any], files: bool = True) -> str:
    """A human-readable summary of an audit report (what ``miakit audit`` prints).

    ``files=False`` leaves out the closing "wrote ..." line (``miakit report`` prints the
    summary of an audit it did not run); the text still points at the figures the report
    lists.

    Examples
    --------
    >>> from miakit.audit import summarize
    >>> rep = {"run": {"n_models": 4, "n_examples": 10, "n_augmentations": 1,
    ...                "n_classes": 2, "config": {"head": "linear"}, "metadata": {}},
    ...        "models": {"train_accuracy": 1.0, "test_accuracy": 0.9},
    ...        "evaluation": {"confidence_level": 0.95}, "attacks": {}}
    >>> "shadow models" in summarize(rep)
    True
    """
    sec = summary_sections(report)
    lines = list(sec["run"])
    if sec["table"] is not None:
        lines.append(sec["pairs"])
        head, rows = sec["table"]
        widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
        lines.append("")
        for row in [head, *rows]:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        lines.append("")
        lines += sec["notes"] + sec["verdict"] + sec["privacy"]
    lines += sec["risk"] + (sec["files"] if files else [])
    return "\n".join(lines)


def _verdict_lines(v: dict | None, level: float, clustered: bool = True) -> list[str]:
    if not v:
        return []
    family = (f"family-wise {100 * (1 - v['alpha']):.0f}% over {v['n_tests']} tests "
              "(attacks x FPRs), members against non-members "
              + ("within each example" if clustered else "of the one target model"))
    if v["leakage"]:
        e = v["strongest"]
        p = e.get("p_value")
        test = e.get("test", "test")
        named = "'s " in test  # "Fisher's exact test", but "the paired sign test"
        why = (f"p = {p:.2g} by {'' if named else 'the '}{test}" if p is not None else
               f"TPR lower bound {_pct3(e['tpr_lower'])} > FPR upper bound "
               f"{_pct3(e['fpr_upper'])}")
        return [f"verdict: membership leakage detected. {e['label']} calls "
                f"{_pct(e['tpr'])} of members and {_pct(e['fpr'])} of non-members at the "
                f"threshold that calls {100 * e['target_fpr']:g}% of all scores ({why}; "
                f"{family}; "
                f"{len(v['evidence'])} of {v['n_tests']} points declare it)."]
    limits = ", ".join(f"+{100 * d['min_excess']:.2f} points at FPR {100 * d['target_fpr']:g}%"
                       for d in v["detectable"] if d["min_excess"] is not None)
    return [f"verdict: no membership leakage detected ({family}).",
            "  smallest TPR excess over the FPR these counts could have detected: "
            + (limits or "none (too few members and non-members)") + "."]


def _privacy_lines(p: dict | None, attacks: dict, level: float,
                   figure: bool = False) -> list[str]:
    if not p or p.get("max_empirical_epsilon") is None:
        return []
    head = (f"empirical epsilon (lower bounds at delta {p['delta']:g}, {100 * level:.0f}% "
            "confidence): ")
    top = p["attack"]
    if p["max_empirical_epsilon"] <= 0:
        lines = [head + "0 for every attack: at no threshold do members and non-members "
                        "differ by more than chance allows, so no privacy loss is proven"]
    else:
        parts = ", ".join(f"{attacks[k]['label']} {v:.2f}" for k, v in
                          sorted(p["empirical_epsilon"].items(), key=lambda kv: -kv[1])[:4])
        lines = [head + parts]
        if top in attacks:
            lines += _epsilon_source(attacks[top], p["delta"], level, figure)
    claim = p.get("claimed_epsilon")
    if claim is not None:
        if p["consistent"]:
            lines.append(f"  consistent with the claimed ({claim:g}, {p['delta']:g})-DP: no "
                         f"attack proves more than epsilon {p['max_empirical_epsilon']:.2f}; "
                         f"under the claim, memorization is at most "
                         f"{p['memorization_bound']:.3f}")
        else:
            lines.append(f"  INCONSISTENT with the claimed ({claim:g}, {p['delta']:g})-DP: "
                         f"{attacks[top]['label']} proves epsilon > "
                         f"{p['max_empirical_epsilon']:.2f} with {100 * level:.0f}% "
                         "confidence" + (" (the point marked in red on roc.png)"
                                         if figure else ""))
    return lines


def _few(k: int, n: int, who: str) -> str:
    """'only 0.3% of members do (3 of 960)', or 'no member does (0 of 130)'."""
    if k == 0:
        return f"no {who[:-1]} does (0 of {n:,})"
    return f"only {_pct(k / n)} of {who} do ({k:,} of {n:,})"


def _epsilon_source(a: Mapping[str, Any], delta: float, level: float,
                    figure: bool) -> list[str]:
    """Where an attack's empirical epsilon comes from, in words: which side of the ROC,
    at which operating point with its counts, and the arithmetic from the confidence
    bounds to the epsilon (miakit.bounds.empirical_epsilon)."""
    e = a["empirical_epsilon"]
    n_pos, n_neg = a["n_members"], a["n_nonmembers"]
    if e["side"] == "fnr":  # ln((1 - FPR_high - delta) / (1 - TPR_low))
        mem, non = n_pos - e["tp"], n_neg - e["fp"]  # below the threshold
        where = (f"the low-score side: at a threshold that {_pct(non / n_neg)} of "
                 f"non-members fall below ({non:,} of {n_neg:,}), "
                 f"{_few(mem, n_pos, 'members')}")
        rule = ("the share of non-members below any threshold to be at most e^epsilon "
                "times the share of members below it, plus delta")
        big, small = 1.0 - e["fpr_upper"], 1.0 - e["tpr_lower"]
        bounds = (f"at least {_pct3(big)} of non-members and at most {_pct3(small)} of "
                  "members fall below this one")
    else:  # ln((TPR_low - delta) / FPR_high)
        mem, non = e["tp"], e["fp"]  # at or above the threshold
        where = (f"the high-score side: at a threshold that {_pct(mem / n_pos)} of members "
                 f"reach ({mem:,} of {n_pos:,}), {_few(non, n_neg, 'non-members')}")
        rule = ("the share of members at or above any threshold to be at most e^epsilon "
                "times the share of non-members there, plus delta")
        big, small = e["tpr_lower"], e["fpr_upper"]
        bounds = (f"at least {_pct3(big)} of members and at most {_pct3(small)} of "
                  "non-members reach this one")
    panel = "right" if e["side"] == "fnr" else "left"
    return [f"  the largest, {a['label']}'s {e['epsilon']:.2f}, comes from {where}"
            + (f" (the star on roc.png's {panel} panel)" if figure else ""),
            f"  why: (epsilon, delta)-DP allows {rule}; with "
            f"{100 * level:.0f}% confidence (over the {e['n_thresholds']} thresholds "
            f"searched), {bounds}, so epsilon >= ln(({_pct3(big)} - delta) / "
            f"{_pct3(small)}) = {e['epsilon']:.2f}"]
