"""The generative-model study behind ``miakit generative`` (docs/methods/generative.md).

:func:`run` splits the embedded digits (1,797 8x8 images, pixels in [0, 1])
at random into a training half and a hold-out half, fits generative models of growing
capacity on the training half (scikit-learn Gaussian mixtures from one component to as
many components as training records, which essentially stores the records, and a small
torch VAE), draws as many synthetic records as training records from each, and audits
each model with :func:`audit_synthetic`:

- the distance of every training and hold-out record to its closest synthetic record
  (DCR, exact), and the optimal membership advantage of that query (K-S statistic, best
  threshold, DKW interval);
- three attacks with AUC and TPR at 1% and 0.1% FPR (Clopper-Pearson intervals): the
  DCR threshold attack (score ``-DCR``), the individual-risk attack (cross-fitted KDE
  posterior ``P(member | DCR)``), and DOMIAS (KDE density ratio of synthetic over
  reference data after a PCA, the hold-out half as reference, cross-fitted);
- the training records most at risk (highest cross-fitted ``P(member | DCR)``).

:func:`run` given synthetic, training and hold-out records runs the same audit on a
user's data (``miakit generative --synthetic S.npy --train T.npy
--holdout H.npy``). Both write ``generative.json`` and, with ``plot``,
``generative.png`` (advantage and TPR against capacity) and ``generative_records.png``
(the records most at risk next to their closest synthetic record).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miakit._params import option, validate
from miakit._validation import (
    check_int,
    check_probabilities,
    check_probability,
    check_records,
    check_seed,
)
from miakit.neighbors import renamed_error
from miakit.studies._config import maybe_empty, resolve
from miakit.studies._generative_plots import plot_generative, plot_records
from miakit.studies._result import StudyResult
from miakit.studies.generators import (
    DEFAULT_GMMS,
    DEFAULT_VAE_EPOCHS,
    fit_gmm,
    fit_vae,
    parse_gmm,
)

__all__ = ["GenerativeConfig", "GenerativeResult", "run", "audit_synthetic", "parse_gmm",
           "fit_gmm", "fit_vae", "DEFAULT_GMMS", "DEFAULT_FPRS", "DEFAULT_VAE_EPOCHS"]

DEFAULT_FPRS = (0.01, 0.001)
_OPEN: dict[str, Any] = dict(low=0.0, high=1.0, open_low=True, open_high=True)


@dataclasses.dataclass(frozen=True)
class GenerativeConfig:
    """The options of the generative-model study (``miakit generative``). ``gmms``,
    ``vae_epochs`` and ``n_examples`` choose the embedded study's models and data; the
    others apply to user data too.

    Examples
    --------
    >>> from miakit.studies.generative import GenerativeConfig
    >>> GenerativeConfig(gmms=["1", "n:diag"], vae_epochs=0).gmms
    ('1', 'n:diag')
    >>> GenerativeConfig(gmms=[], vae_epochs=0)
    Traceback (most recent call last):
    ...
    ValueError: gmms: expected at least one model (a Gaussian mixture, or the VAE ...
    """

    gmms: tuple[str, ...] = maybe_empty(
        DEFAULT_GMMS, "Gaussian mixtures to fit, 'K' or 'K:COV': components K (an int, or "
        "'n' for as many as training records) and covariance full, diag, spherical or tied "
        "(default full)", flag="--gmm")
    vae_epochs: int = option(DEFAULT_VAE_EPOCHS, "training epochs of the VAE, 0 for none",
                             low=0)
    n_examples: int | None = option(None, "a random subset of N of the 1,797 digits "
                                    "(default: all); half train the generators", kind=int,
                                    low=4, high=1797)
    fprs: tuple[float, ...] = option(DEFAULT_FPRS, "FPRs of the attacks' TPR", flag="--fpr",
                                     **_OPEN)
    level: float = option(0.95, "confidence level of the intervals", **_OPEN)
    prior: float = option(0.5, "member prior of the individual risks P(member | DCR)",
                          **_OPEN)
    pca: int | None = option(10, "principal components before DOMIAS's kernel density "
                             "estimates (0 or None: none; capped at the records' width)",
                             kind=int, low=0, optional=True)
    top: int = option(8, "training records listed (and drawn) as most at risk per model",
                      low=0)
    seed: int = option(0, "seed of the split, the models, their samples and the attacks",
                       seed=True)
    name: str = option("synthetic data", "name of user data in the report", cli=False)
    plot: bool = option(True, "write the figures", flag="--no-plot")

    def __post_init__(self) -> None:
        validate(self)
        if not self.gmms and not self.vae_epochs:
            raise ValueError("gmms: expected at least one model (a Gaussian mixture, or the "
                             "VAE with vae_epochs > 0), got none")


def _domias_crossfit(train: np.ndarray, holdout: np.ndarray, synthetic: np.ndarray,
                     n_components: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """DOMIAS scores with the hold-out records as the reference data, cross-fitted: the
    hold-out half is split in two, each part scored against the other as reference, and
    each training record against one of the two parts (at random), so that members and
    non-members are scored alike and no record is its own reference."""
    from miakit.generative import domias_scores

    rng = np.random.default_rng([seed, 41])
    part_h = rng.permutation(np.arange(holdout.shape[0]) % 2)
    part_t = rng.permutation(np.arange(train.shape[0]) % 2)
    s_t, s_h = np.empty(train.shape[0]), np.empty(holdout.shape[0])
    for p in (0, 1):
        ref = holdout[part_h != p]
        s_h[part_h == p] = domias_scores(holdout[part_h == p], synthetic, ref,
                                         n_components=n_components, seed=seed)
        s_t[part_t == p] = domias_scores(train[part_t == p], synthetic, ref,
                                         n_components=n_components, seed=seed)
    return s_t, s_h


def audit_synthetic(synthetic: Any, train: Any, holdout: Any, *,
                    fprs: Sequence[float] = DEFAULT_FPRS, level: float = 0.95,
                    prior: float = 0.5, pca: int | None = 10, top: int = 8,
                    seed: int = 0) -> dict[str, Any]:
    """Audit synthetic records against the training and hold-out records (one model).

    Parameters
    ----------
    synthetic : array [S, D]
        The generated records.
    train, holdout : array [N, D], [M, D]
        The generative model's training records (members) and records of the same
        population it did not see (non-members; also DOMIAS's reference data).
    fprs : sequence of float
        FPR budgets of the attacks' TPR.
    level : float
        Confidence level of every interval.
    prior : float
        Member prior of the individual risks.
    pca : int or None
        Principal components before DOMIAS's density estimates (None: none; capped at D).
    top : int
        Training records listed as most at risk.
    seed : int

    Returns
    -------
    dict
        ``advantage`` (of the DCR query), ``attacks`` (``dcr``, ``risk``, ``domias``:
        AUC and TPR at each FPR), ``dcr`` (medians), ``at_risk`` (the ``top`` training
        records by risk, with their DCR and closest synthetic record).

    Examples
    --------
    >>> import numpy as np
    >>> from miakit.studies.generative import audit_synthetic
    >>> rng = np.random.default_rng(0)
    >>> train, holdout = rng.normal(size=(200, 3)), rng.normal(size=(200, 3))
    >>> copies = train + 0.01 * rng.normal(size=train.shape)  # a model that memorised
    >>> r = audit_synthetic(copies, train, holdout, pca=None)
    >>> r["advantage"]["advantage"] > 0.9, r["attacks"]["dcr"]["auc"] > 0.95
    (True, True)
    """
    from miakit import generative as gen

    f_list = check_probabilities(fprs, "fprs")
    level = check_probability(level, "level")
    prior = check_probability(prior, "prior")
    top = check_int(top, "top", 0)
    pca = None if pca is None else check_int(pca, "pca", 1)
    seed = check_seed(seed)
    tr = check_records(train, "train")
    ho = check_records(holdout, "holdout", tr.shape[1], "train")
    syn = check_records(synthetic, "synthetic", tr.shape[1], "train")

    def nearest(x: np.ndarray, name: str) -> tuple[Any, Any]:
        try:
            return gen.closest_distances(x, syn, 1)
        except ValueError as exc:  # name this function's arguments
            raise renamed_error(exc, name, "synthetic") from None

    dcr_tr, idx_tr = nearest(tr, "train")
    dcr_ho, _ = nearest(ho, "holdout")
    dcr_tr, dcr_ho, idx_tr = dcr_tr[:, 0], dcr_ho[:, 0], idx_tr[:, 0]
    adv = gen.membership_advantage(dcr_tr, dcr_ho, level)
    risk = gen.risk_attack(dcr_tr, dcr_ho, prior, fprs=f_list, level=level, seed=seed)
    n_comp = None if pca is None or pca >= tr.shape[1] else int(pca)
    dom_t, dom_h = _domias_crossfit(tr, ho, syn, n_comp, seed)
    attacks = {
        "dcr": gen.attack_power(-dcr_tr, -dcr_ho, f_list, level).to_dict(),
        "risk": risk.power.to_dict(),
        "domias": gen.attack_power(dom_t, dom_h, f_list, level).to_dict(),
    }
    order = np.lexsort((dcr_tr, -risk.risk_train))[:top]
    at_risk = [{"train_index": int(i), "risk": float(risk.risk_train[i]),
                "dcr": float(dcr_tr[i]), "closest_synthetic": int(idx_tr[i])}
               for i in order]
    return {"n_synthetic": int(syn.shape[0]), "advantage": adv.to_dict(),
            "attacks": attacks,
            "dcr": {"median_train": float(np.median(dcr_tr)),
                    "median_holdout": float(np.median(dcr_ho)),
                    "exact_copies_train": int((dcr_tr == 0).sum()),
                    "exact_copies_holdout": int((dcr_ho == 0).sum())},
            "domias_pca": n_comp, "at_risk": at_risk}


def _trend(models: list[dict]) -> dict[str, Any] | None:
    """Does the advantage grow with capacity? Spearman's rank correlation over the
    models, and whether the largest model's interval lies above the smallest's."""
    from scipy import stats

    if len(models) < 2:
        return None
    caps = np.array([m["n_parameters"] for m in models], dtype=np.float64)
    advs = np.array([m["advantage"]["advantage"] for m in models])
    lo_m, hi_m = models[int(np.argmin(caps))], models[int(np.argmax(caps))]
    rho = float(stats.spearmanr(caps, advs).statistic) if len(models) > 2 else float(
        np.sign(advs[np.argmax(caps)] - advs[np.argmin(caps)]))
    separated = bool(hi_m["advantage"]["ci"][0] > lo_m["advantage"]["ci"][1])
    return {"spearman_capacity_advantage": rho, "smallest": lo_m["name"],
            "largest": hi_m["name"], "largest_above_smallest": separated,
            "more_capacity_leaks_more": bool(rho > 0 and separated)}


def run(synthetic: Any = None, train: Any = None, holdout: Any = None,
        config: GenerativeConfig | None = None, *, out_dir: str | Path | None = None,
        progress: Callable[[str], Any] | None = None,
        **overrides: Any) -> GenerativeResult:
    """Fit generative models of growing capacity on half the digits and audit each; or,
    given ``synthetic``, ``train`` and ``holdout``, audit that synthetic data.

    Parameters
    ----------
    synthetic, train, holdout : array [S, D], [N, D], [M, D], optional
        A user's synthetic records, the generator's training records and records of the
        same population it did not see (all three, or none for the embedded study; with
        them, ``gmms``, ``vae_epochs`` and ``n_examples`` do not apply). Records whose
        width is a square number (64 = 8 x 8) are drawn as images.
    config : GenerativeConfig, optional
        The options (default: ``GenerativeConfig()``); ``overrides`` replace its fields.
    out_dir : path, optional
        Where to write ``generative.json`` (and, with ``config.plot``, the figures).
    progress : callable, optional
        Called with a line of text after each model.

    Returns
    -------
    GenerativeResult
        The report: ``models`` (one entry per model: capacity, advantage, attacks, the
        records most at risk), ``capacity_trend``, ``split``, ``timing_s``.

    Examples
    --------
    >>> from miakit.studies import generative
    >>> r = generative.run(gmms=["1", "n:diag"], vae_epochs=0, n_examples=300)
    >>> [m["name"] for m in r["models"]]
    ['GMM 1 (full)', 'GMM 150 (diag)']
    >>> r["models"][1]["advantage"]["advantage"] > r["models"][0]["advantage"]["advantage"]
    True
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> t, h, s = (rng.normal(size=(120, 4)) for _ in range(3))
    >>> mine = generative.run(s, t, h, name="mine")
    >>> mine["models"][0]["name"], mine["models"][0]["advantage"]["ci"][0] < 0.2
    ('mine', True)
    """
    cfg = resolve(GenerativeConfig, config, overrides)
    given = [x is not None for x in (synthetic, train, holdout)]
    if any(given):
        if not all(given):
            missing = [n for n, g in zip(("synthetic", "train", "holdout"), given) if not g]
            raise ValueError(f"{', '.join(missing)}: needed with the other records (give "
                             "synthetic, training and hold-out records together)")
        result = _audit_data(synthetic, train, holdout, cfg)
    else:
        result = _study(cfg, progress)
    if out_dir is not None:
        result.write(out_dir, plot=cfg.plot)
    return result


def _study(cfg: GenerativeConfig, progress: Callable[[str], Any] | None) -> GenerativeResult:
    from miakit import datasets

    fprs, level, prior, pca, top, seed = (cfg.fprs, cfg.level, cfg.prior, cfg.pca or None,
                                          cfg.top, cfg.seed)
    t0 = time.perf_counter()
    d = datasets.digits(n_examples=cfg.n_examples, views=1)
    x = d.features[:, 0, :].astype(np.float64)
    perm = np.random.default_rng([seed, 1]).permutation(len(x))
    n_train = len(x) // 2
    tr_idx, ho_idx = np.sort(perm[:n_train]), np.sort(perm[n_train:])
    train, holdout = x[tr_idx], x[ho_idx]
    specs = [parse_gmm(s, n_train) for s in cfg.gmms]  # all checked before any fit
    models, samples = [], {}
    jobs: list[tuple[str, Any]] = [("gmm", s) for s in specs]
    if cfg.vae_epochs:
        jobs.append(("vae", cfg.vae_epochs))
    for kind, spec in jobs:
        t1 = time.perf_counter()
        if kind == "gmm":
            k, cov = spec
            syn, n_par = fit_gmm(train, k, cov, n_train, seed)
            entry: dict[str, Any] = {"name": f"GMM {k} ({cov})", "kind": "gmm",
                                     "components": k, "covariance": cov}
        else:
            syn, n_par = fit_vae(train, n_train, seed, epochs=spec)
            entry = {"name": "VAE", "kind": "vae", "epochs": spec, "latent": 8,
                     "hidden": 128}
        t_fit = time.perf_counter() - t1
        entry.update(n_parameters=n_par, fit_s=round(t_fit, 3))
        entry.update(audit_synthetic(syn, train, holdout, fprs=fprs, level=level,
                                     prior=prior, pca=pca, top=top, seed=seed))
        for rec in entry["at_risk"]:
            rec["dataset_index"] = int(tr_idx[rec["train_index"]])
        entry["audit_s"] = round(time.perf_counter() - t1 - t_fit, 3)
        samples[entry["name"]] = syn
        models.append(entry)
        if progress is not None:
            progress(f"{entry['name']}: fitted in {entry['fit_s']:.1f} s, audited in "
                     f"{entry['audit_s']:.1f} s, advantage "
                     f"{entry['advantage']['advantage']:.3f}")
    report = {"dataset": d.description, "query": "Euclidean distance to the closest "
              "synthetic record (DCR)", "level": level, "prior": prior,
              "fprs": list(fprs),
              "split": {"train": int(n_train), "holdout": int(len(x) - n_train),
                        "seed": seed, "synthetic_per_model": int(n_train)},
              "models": models,
              "capacity_trend": _trend([m for m in models if m["kind"] == "gmm"]),
              "timing_s": {"total": round(time.perf_counter() - t0, 3)}}
    return GenerativeResult(report, train, samples, side=8)


def _audit_data(synthetic: Any, train: Any, holdout: Any,
                cfg: GenerativeConfig) -> GenerativeResult:
    """:func:`audit_synthetic` of a user's data, as the study's report."""
    t0 = time.perf_counter()
    tr = check_records(train, "train")
    syn = check_records(synthetic, "synthetic", tr.shape[1], "train")
    entry: dict[str, Any] = {"name": cfg.name, "kind": "user", "n_parameters": None}
    entry.update(audit_synthetic(syn, tr, holdout, fprs=cfg.fprs, level=cfg.level,
                                 prior=cfg.prior, pca=cfg.pca or None, top=cfg.top,
                                 seed=cfg.seed))
    report = {"dataset": cfg.name, "query": "Euclidean distance to the closest synthetic "
              "record (DCR)", "level": cfg.level, "prior": cfg.prior,
              "fprs": list(cfg.fprs),
              "split": {"train": int(tr.shape[0]), "holdout": int(len(holdout)),
                        "seed": cfg.seed, "synthetic_per_model": int(syn.shape[0])},
              "models": [entry], "capacity_trend": None,
              "timing_s": {"total": round(time.perf_counter() - t0, 3)}}
    side = int(round(math.sqrt(tr.shape[1])))
    return GenerativeResult(report, tr, {cfg.name: syn},
                            side if side * side == tr.shape[1] else None)


def _model_line(m: dict) -> str:
    a = m["advantage"]
    parts = [f"{m['name']:<16} advantage {a['advantage']:.3f} "
             f"[{a['ci'][0]:.3f}, {a['ci'][1]:.3f}]"]
    for key, label in (("dcr", "DCR"), ("risk", "risk"), ("domias", "DOMIAS")):
        t = m["attacks"][key]["tpr_at_fpr"]
        parts.append(label + " " + " ".join(
            f"{100 * v['tpr']:.1f}%{'' if v['resolvable'] else '*'}" for v in t.values()))
    return ", ".join(parts)


class GenerativeResult(StudyResult):
    """The generative-model report (``generative.json``). A result made by :func:`run`
    also holds the training records and each model's samples, so that :meth:`write`
    draws ``generative_records.png`` (the records most at risk beside their closest
    synthetic record) next to ``generative.png``.

    Examples
    --------
    >>> from miakit.studies.generative import GenerativeResult
    >>> tpr = {"tpr_at_fpr": {"0.01": {"tpr": 0.05, "resolvable": True}}}
    >>> m = {"name": "GMM 1 (full)", "advantage": {"advantage": 0.1, "ci": [0.0, 0.2]},
    ...      "attacks": {"dcr": tpr, "risk": tpr, "domias": tpr}}
    >>> r = GenerativeResult({"models": [m], "fprs": [0.01], "level": 0.95,
    ...                       "capacity_trend": None})
    >>> print(r.summary().splitlines()[-1])
    GMM 1 (full)     advantage 0.100 [0.000, 0.200], DCR 5.0%, risk 5.0%, DOMIAS 5.0%
    """

    name = "generative"

    def __init__(self, report: dict[str, Any], train: np.ndarray | None = None,
                 samples: dict[str, np.ndarray] | None = None, side: int | None = None
                 ) -> None:
        super().__init__(report)
        self._train, self._samples, self._side = train, samples, side

    def summary(self) -> str:
        """What ``miakit generative`` prints: one line per model, and the trend."""
        report = self._report
        fprs = ", ".join(f"{100 * f:g}%" for f in report["fprs"])
        lines = [f"membership advantage of the DCR query ({100 * report['level']:g}% DKW "
                 f"interval); TPR at FPR {fprs} of the DCR, risk and DOMIAS attacks "
                 "(* : fewer than 1/FPR hold-out records, not resolvable)"]
        lines += [_model_line(m) for m in report["models"]]
        t = report.get("capacity_trend")
        if t:
            lines.append(
                f"capacity trend: Spearman {t['spearman_capacity_advantage']:+.2f}; "
                f"{t['largest']} {'above' if t['largest_above_smallest'] else 'NOT above'}"
                f" {t['smallest']} (intervals): more capacity "
                f"{'leaks more' if t['more_capacity_leaks_more'] else 'does NOT leak more'}")
        return "\n".join(lines + self._files_line())

    def _draw(self, path: Path) -> None:
        """``generative.png``, and beside it ``generative_records.png`` when the records
        are held and square images; the report's ``figures`` names them."""
        plot_generative(self._report, path)
        figures = {"capacity": str(path)}
        if self._side is not None and self._train is not None and self._samples:
            rec_path = path.with_name(path.stem + "_records.png")
            plot_records(self._report, self._train, self._samples, self._side, rec_path)
            figures["records"] = str(rec_path)
        self._report["figures"] = figures
