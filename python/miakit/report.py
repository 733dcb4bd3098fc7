"""Which examples are at risk, and why: one table per example, and how its columns relate.

:func:`vulnerability_table` joins, per example, whatever of these is available:

================================  ==========================================================
column                            meaning
================================  ==========================================================
``lira_score``                    the attack's score (larger = more likely a member); with
                                  leave-one-out scores ``[K, N]`` and ``membership``, its
                                  mean over the targets that trained on the example
``tpr_at_fpr``                    per-example TPR proxy: the fraction of the targets that
                                  trained on the example whose score reaches the attack's
                                  global threshold at ``fpr`` (docs/methods/metrics.md)
``memorization``                  Feldman–Zhang memorization (docs/methods/memorization.md)
``grad_norm``                     per-example gradient norm (docs/methods/gradients.md)
``curvature``                     input-loss curvature (docs/methods/curvature.md)
``hellinger``                     Hellinger distance of the IN/OUT Gaussians, mean over
                                  augmentations (docs/methods/vulnerability.md)
``privacy_score``                 ``|mu_in - mu_out| / (sigma_in + sigma_out)``, mean over
                                  augmentations
``shadow_models_needed``          shadow models needed at ``error``, the smallest over
                                  augmentations (the most telling augmentation decides)
================================  ==========================================================

with the Spearman rank correlations between every pair of columns
(``scipy.stats.spearmanr`` on the examples where both are finite), and plotting helpers
(matplotlib, Agg canvas: no display needed, no global pyplot state) that draw the
vulnerability against memorization, the gradient norm and the curvature.

The page that lays a whole audit report out (``report.html`` beside ``report.json``) is
:func:`miakit.audit.to_html`.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from miakit import _arrays as ar
from miakit.io import save_figure

__all__ = ["VulnerabilityTable", "vulnerability_table", "plot_vulnerability", "save_plots",
           "plot_roc"]

COLUMNS = ("lira_score", "tpr_at_fpr", "memorization", "grad_norm", "curvature", "hellinger",
           "privacy_score", "shadow_models_needed")


@dataclass
class VulnerabilityTable:
    """Per-example risk columns and their rank correlations.

    Attributes
    ----------
    columns : dict of str to numpy.ndarray [N] float64
        The columns, in the order of :data:`COLUMNS`, then the extras.
    spearman : dict of str to dict of str to float
        ``spearman[a][b]``: Spearman's rho between columns a and b (NaN when fewer than
        three examples have both, or a column is constant there).
    pvalues : dict of str to dict of str to float
        The two-sided p-values of ``spearman``.
    counts : dict of str to dict of str to int
        Examples behind each correlation.
    meta : dict
        How the columns were derived (``fpr``, the attack's ``threshold`` and achieved
        FPR, ``error`` and the ``shadow_models_formula``, ...).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> t = mk.report.vulnerability_table(memorization=np.array([0.1, 0.9, 0.5]),
    ...                                   grad_norms=np.array([1.0, 3.0, 2.0]))
    >>> t.n, t.vulnerability_column(), [r["index"] for r in t.top(2)]
    (3, 'memorization', [1, 2])
    >>> t.to_dict(per_example=False)["spearman"]["memorization"]["grad_norm"]
    1.0
    """

    columns: dict[str, np.ndarray]
    spearman: dict[str, dict[str, float]] = field(default_factory=dict)
    pvalues: dict[str, dict[str, float]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of examples."""
        return len(next(iter(self.columns.values())))

    def vulnerability_column(self) -> str:
        """The column that measures vulnerability: ``tpr_at_fpr`` when present, else
        ``lira_score``, else ``memorization``."""
        for name in ("tpr_at_fpr", "lira_score", "memorization"):
            if name in self.columns:
                return name
        raise ValueError("table: no vulnerability column (tpr_at_fpr, lira_score or "
                         f"memorization); it has {list(self.columns)}")

    def top(self, k: int = 10, by: str | None = None) -> list[dict[str, float]]:
        """The k examples with the largest ``by`` (default: the vulnerability column),
        NaN last, as rows ``{"index": i, column: value, ...}``."""
        by = by or self.vulnerability_column()
        if by not in self.columns:
            raise ValueError(f"by: expected one of {list(self.columns)}, got {by!r}")
        v = self.columns[by]
        order = np.lexsort((np.arange(v.size), -np.nan_to_num(v, nan=-np.inf)))[:k]
        return [{"index": int(i), **{c: _num(a[i]) for c, a in self.columns.items()}}
                for i in order]

    def to_dict(self, per_example: bool = True, top_k: int = 20) -> dict[str, Any]:
        """JSON-ready summary: correlations, counts, meta, the ``top_k`` most vulnerable
        examples and (``per_example=True``) every column. NaN becomes None."""
        out: dict[str, Any] = {
            "n_examples": self.n,
            "columns": list(self.columns),
            "spearman": _nested(self.spearman),
            "spearman_pvalues": _nested(self.pvalues),
            "spearman_counts": self.counts,
            "meta": _jsonable(self.meta),
            "top": self.top(top_k) if self.columns else [],
        }
        if per_example:
            out["per_example"] = {c: [_num(v) for v in a] for c, a in self.columns.items()}
        return out

    def to_json(self, path: str | Path, **kwargs: Any) -> Path:
        """Write :meth:`to_dict` as JSON; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(**kwargs), indent=2) + "\n")
        return path

    def to_csv(self, path: str | Path) -> Path:
        """Write the columns as CSV (one row per example, with its index)."""
        path = Path(path)
        names = list(self.columns)
        data = np.column_stack([np.arange(self.n)] + [self.columns[c] for c in names])
        np.savetxt(path, data, delimiter=",", header=",".join(["index", *names]), comments="",
                   fmt=["%d"] + ["%.10g"] * len(names))
        return path


def _num(v: Any) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def _nested(d: dict[str, dict[str, float]]) -> dict[str, dict[str, float | None]]:
    return {a: {b: _num(v) for b, v in row.items()} for a, row in d.items()}


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return _num(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def _column(x: Any, name: str, n: int | None) -> np.ndarray:
    if x is None:
        raise ValueError(f"{name}: missing")
    if hasattr(x, "norms") and not isinstance(x, np.ndarray):  # GradNorms
        x = x.norms
    if isinstance(x, tuple) and len(x) == 2:  # (trace, stderr) from hutchinson_trace
        x = x[0]
    a = ar.to_numpy(ar.as_array(x, name))
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected a real-valued array, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array [N] (one value per example), got "
                         f"shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name}: expected {n} values (one per example, as the other "
                         f"columns), got {a.shape[0]}")
    return a


def _lira_columns(scores: Any, membership: Any, fpr: float, meta: dict,
                  point: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    from miakit import metrics

    s = ar.to_numpy(ar.as_array(scores, "lira_scores")).astype(np.float64)
    if s.ndim not in (1, 2):
        raise ValueError(f"lira_scores: expected [N] or leave-one-out [K, N] scores, got shape "
                         f"{s.shape}")
    if membership is None:
        if s.ndim == 2:
            raise ValueError("membership: needed with leave-one-out scores [K, N] (pass "
                             "keep[targets])")
        return {"lira_score": s}
    mem = ar.to_numpy(ar.as_array(membership, "membership"))
    if mem.shape != s.shape:
        raise ValueError(f"membership: expected the shape of lira_scores {s.shape}, got "
                         f"{mem.shape}")
    if mem.dtype.kind != "b":
        if mem.dtype.kind not in "iuf" or not np.isin(mem, (0, 1)).all():
            raise ValueError("membership: expected booleans (or 0/1 values)")
        mem = mem.astype(bool)
    s2, m2 = np.atleast_2d(s), np.atleast_2d(mem)
    finite = np.isfinite(s2)
    if point is None:
        r = metrics.tpr_at_fpr(s2[finite], m2[finite], fpr=fpr)
        point = {"threshold": r.threshold, "fpr": r.fpr, "tpr": r.tpr, "n_members": r.n_pos,
                 "n_nonmembers": r.n_neg, "resolvable": r.resolvable}
    threshold = point["threshold"]
    threshold = math.inf if threshold is None else float(threshold)
    meta.update({"fpr": fpr, "threshold": threshold, "achieved_fpr": point["fpr"],
                 "attack_tpr": point["tpr"], "attack_n_pos": point["n_members"],
                 "attack_n_neg": point["n_nonmembers"], "resolvable": point["resolvable"]})
    hits = (s2 >= threshold) & m2 & finite
    n_in = (m2 & finite).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.where(n_in > 0, hits.sum(0) / n_in, np.nan)
        score = np.where(n_in > 0, np.where(m2 & finite, s2, 0.0).sum(0) / n_in, np.nan)
    return {"lira_score": s if s.ndim == 1 else score, "tpr_at_fpr": tpr}


def vulnerability_table(
    *,
    lira_scores: Any = None,
    membership: Any = None,
    memorization: Any = None,
    grad_norms: Any = None,
    curvature: Any = None,
    fit: Any = None,
    error: float = 0.05,
    fpr: float = 1e-3,
    extra: Mapping[str, Any] | None = None,
    attack_point: Mapping[str, Any] | None = None,
) -> VulnerabilityTable:
    """Join per-example risk measures and rank-correlate them.

    Every argument is optional; give at least one. Arrays may be numpy or torch (any
    device); the table holds numpy float64.

    Parameters
    ----------
    lira_scores : array [N] or [K, N]
        Attack scores of one target, or leave-one-out scores of K targets
        (:func:`miakit.lira.leave_one_out`).
    membership : array [N] or [K, N] bool
        Whether the target(s) trained on each example (``keep[targets]``); gives the
        per-example TPR proxy ``tpr_at_fpr``. Required with ``[K, N]`` scores.
    memorization : array [N]
        E.g. :func:`miakit.memorization.feldman_zhang`.
    grad_norms : array [N] or miakit.gradients.GradNorms
        E.g. :func:`miakit.gradients.per_example_norms` or
        :func:`miakit.gradients.head_norms`.
    curvature : array [N] or (trace, stderr)
        E.g. :func:`miakit.curvature.hutchinson_trace`.
    fit : miakit.lira.LiraFit
        Gives ``hellinger``, ``privacy_score`` and ``shadow_models_needed`` (at ``error``).
    error : float
        Error rate for ``shadow_models_needed``.
    fpr : float
        FPR budget of the attack's global threshold for ``tpr_at_fpr``.
    extra : mapping of str to array [N], optional
        More columns (e.g. a loss, an outlier score).
    attack_point : mapping, optional
        The attack's operating point at ``fpr`` when the caller has already ranked
        ``lira_scores`` (keys threshold, tpr, fpr, n_members, n_nonmembers, resolvable,
        as in the audit's TPR table); otherwise the scores are ranked here.

    Returns
    -------
    VulnerabilityTable

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> mem = rng.random(200)
    >>> t = mk.report.vulnerability_table(memorization=mem, grad_norms=mem + rng.random(200))
    >>> list(t.columns), round(t.spearman["memorization"]["grad_norm"], 2)
    (['memorization', 'grad_norm'], 0.7)
    """
    meta: dict[str, Any] = {}
    cols: dict[str, np.ndarray] = {}
    if lira_scores is not None:
        cols.update(_lira_columns(lira_scores, membership, fpr, meta, attack_point))
    elif membership is not None:
        raise ValueError("membership: given without lira_scores")
    n = len(next(iter(cols.values()))) if cols else None
    for name, val in (("memorization", memorization), ("grad_norm", grad_norms),
                      ("curvature", curvature)):
        if val is not None:
            cols[name] = _column(val, name, n)
            n = len(cols[name])
    if fit is not None:
        from miakit import _lira_risk as lr

        h = ar.to_numpy(lr.hellinger(fit))
        need = lr.shadow_models_needed(fit, error=error)
        if n is not None and h.shape[0] != n:
            raise ValueError(f"fit: expected a fit of {n} examples (as the other columns), got "
                             f"{h.shape[0]}")
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no fit
            cols["hellinger"] = np.nanmean(h, axis=1)
            cols["privacy_score"] = np.nanmean(ar.to_numpy(lr.privacy_score(fit)), axis=1)
            cols["shadow_models_needed"] = np.nanmin(ar.to_numpy(need.n), axis=1)
        meta.update({"error": need.error, "shadow_models_formula": need.formula})
        n = h.shape[0]
    for name, val in (extra or {}).items():
        if name in cols:
            raise ValueError(f"extra: column {name!r} already exists")
        cols[str(name)] = _column(val, f"extra[{name!r}]", n)
        n = len(cols[str(name)])
    if not cols:
        raise ValueError("vulnerability_table: expected at least one of lira_scores, "
                         "memorization, grad_norms, curvature, fit or extra")
    rho, pv, cnt = _spearman(cols)
    return VulnerabilityTable(cols, rho, pv, cnt, meta)


def _spearman(cols: dict[str, np.ndarray]):
    names = list(cols)
    rho = {a: {} for a in names}
    pv = {a: {} for a in names}
    cnt = {a: {} for a in names}
    for i, a in enumerate(names):
        for b in names[i:]:
            x, y = cols[a], cols[b]
            ok = np.isfinite(x) & np.isfinite(y)
            k = int(ok.sum())
            r = p = float("nan")
            if k >= 3 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
                res = stats.spearmanr(x[ok], y[ok])
                r, p = float(res.statistic), float(res.pvalue)
            rho[a][b] = rho[b][a] = r
            pv[a][b] = pv[b][a] = p
            cnt[a][b] = cnt[b][a] = k
    return rho, pv, cnt


def plot_vulnerability(table: VulnerabilityTable, against: str = "memorization",
                       vulnerability: str | None = None, path: str | Path | None = None,
                       log_x: bool | None = None) -> Any:
    """Scatter the vulnerability column against another column.

    Parameters
    ----------
    table : VulnerabilityTable
        From :func:`vulnerability_table`.
    against : str
        The x-axis column (e.g. ``"memorization"``, ``"grad_norm"``).
    vulnerability : str, optional
        The y-axis column (default: :meth:`VulnerabilityTable.vulnerability_column`).
    path : str or Path, optional
        Where to save the figure (PNG, PDF, ... by extension).
    log_x : bool, optional
        Logarithmic x-axis (default: for ``grad_norm``, ``curvature`` and
        ``shadow_models_needed`` when all values are positive).

    Returns
    -------
    matplotlib.figure.Figure
        Drawn on an Agg canvas; nothing is shown and pyplot's state is untouched.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> t = mk.report.vulnerability_table(memorization=rng.random(50), extra={"x": rng.random(50)})
    >>> fig = mk.report.plot_vulnerability(t, against="x")
    >>> fig.axes[0].get_xlabel()
    'x'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not isinstance(table, VulnerabilityTable):
        raise TypeError(f"table: expected a VulnerabilityTable, got {type(table).__name__}")
    vuln = vulnerability or table.vulnerability_column()
    for name, col in (("against", against), ("vulnerability", vuln)):
        if col not in table.columns:
            raise ValueError(f"{name}: expected one of {list(table.columns)}, got {col!r}")
    x, y = table.columns[against], table.columns[vuln]
    ok = np.isfinite(x) & np.isfinite(y)
    fig = Figure(figsize=(5.0, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(x[ok], y[ok], s=6, alpha=0.5, linewidths=0)
    if log_x is None:
        log_x = against in ("grad_norm", "curvature", "shadow_models_needed") and bool(
            ok.any() and (x[ok] > 0).all())
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(against)
    ax.set_ylabel(vuln)
    rho = table.spearman.get(against, {}).get(vuln, float("nan"))
    ax.set_title(f"{vuln} vs {against}: Spearman rho = {rho:.3f} (n = {int(ok.sum())})",
                 fontsize=9)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def save_plots(table: VulnerabilityTable, outdir: str | Path,
               against: tuple[str, ...] = ("memorization", "grad_norm", "curvature"),
               fmt: str = "png") -> list[Path]:
    """Save ``vulnerability_vs_<column>.<fmt>`` for each available column of ``against``.

    The audit calls this for the plots of its report: vulnerability against
    memorization, against the gradient norm and (when the run stores its models'
    parameters) against the input curvature. Columns that are missing, or that are the
    vulnerability column itself, are skipped.

    Returns
    -------
    list of Path
        The files written.

    Examples
    --------
    >>> import numpy as np, tempfile, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> t = mk.report.vulnerability_table(lira_scores=rng.random(40),
    ...                                   grad_norms=rng.random(40), memorization=rng.random(40))
    >>> [p.name for p in mk.report.save_plots(t, tempfile.mkdtemp())]
    ['vulnerability_vs_memorization.png', 'vulnerability_vs_grad_norm.png']
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    vuln = table.vulnerability_column()
    written = []
    for col in against:
        if col not in table.columns or col == vuln:
            continue
        path = outdir / f"vulnerability_vs_{col}.{fmt}"
        plot_vulnerability(table, against=col, path=path)
        written.append(path)
    return written


def plot_roc(results: dict[str, dict], path: str | Path, title: str = "",
             dp: tuple[float, float] | None = None) -> None:
    """A log-log ROC plot of every attack of an audit, down to FPR = 1 / (number of
    non-members), with the TPR a DP guarantee allows when ``dp = (epsilon, delta)``.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from miakit.report import plot_roc
    >>> fpr = np.array([0.0, 0.01, 0.1, 1.0]); tpr = np.array([0.0, 0.05, 0.3, 1.0])
    >>> res = {"a": {"label": "A", "auc": 0.7, "n_nonmembers": 100, "_curve": (fpr, tpr)}}
    >>> plot_roc(res, tempfile.mkdtemp() + "/roc.png")
    """
    from miakit._plotting import colormap, subplots

    fig, ax = subplots(figsize=(5.5, 5.0), dpi=120)  # its own canvas: no pyplot state
    n_neg = max(r["n_nonmembers"] for r in results.values())
    lo = 1.0 / n_neg
    colors = colormap("tab10").colors
    for i, r in enumerate(results.values()):
        fpr, tpr = r["_curve"]
        low = next((p for p in r.get("tpr_at_fpr", []) if p["target_fpr"] == 1e-3), None)
        # a point that cannot measure a TPR at 0.1% gets no number (metrics.TprAtFpr)
        extra = ("" if not low else f", TPR {100 * low['tpr']:.1f}% @ 0.1%"
                 if low.get("resolvable", True) else ", not resolvable @ 0.1%")
        # attacks with reference models solid, threshold attacks dashed
        uses_refs = r.get("settings", {}).get("targets") == "leave-one-out"
        ax.step(np.maximum(fpr, lo), np.maximum(tpr, lo), where="post",
                color=colors[i % len(colors)], ls="-" if uses_refs else "--",
                lw=1.4 if uses_refs else 1.1,
                label=f"{r['label']} (AUC {r['auc']:.3f}{extra})")
    ax.plot([lo, 1], [lo, 1], ls=":", color="black", lw=1, label="chance")
    if dp is not None:
        from miakit.bounds import dp_tpr_bound

        grid = np.geomspace(lo, 1.0, 200)
        ax.plot(grid, np.maximum(dp_tpr_bound(grid, dp[0], dp[1]), lo), color="crimson",
                lw=1.6, ls="-.", label=f"({dp[0]:g}, {dp[1]:g})-DP limit")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, 1)
    ax.set_ylim(lo, 1)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=7 if len(results) > 4 else 8)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


# ---------------------------------------------------------- the report as a page (moved)
