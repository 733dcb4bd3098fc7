"""The generative-model study behind ``miakit generative`` (docs/methods/generative.md).

:func:`generative_study` splits the embedded digits (1,797 8x8 images, pixels in [0, 1])
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

:func:`audit_synthetic_data` runs the same audit on a user's synthetic data with their
training and hold-out records (``miakit generative --synthetic S.npy --train T.npy
--holdout H.npy``). Both write ``generative.json`` and, with ``plot``,
``generative.png`` (advantage and TPR against capacity) and ``generative_records.png``
(the records most at risk next to their closest synthetic record).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miakit._plotting import subplots
from miakit._validation import (
    check_int,
    check_probabilities,
    check_probability,
    check_records,
)
from miakit.io import save_figure, write_report

__all__ = ["generative_study", "audit_synthetic", "audit_synthetic_data", "parse_gmm",
           "summarize", "DEFAULT_GMMS", "DEFAULT_FPRS", "DEFAULT_VAE_EPOCHS"]

DEFAULT_GMMS = ("1:diag", "5:diag", "20:diag", "80:diag", "300:diag", "n:diag")
DEFAULT_FPRS = (0.01, 0.001)
DEFAULT_VAE_EPOCHS = 60
COVARIANCES = ("full", "diag", "spherical", "tied")


def parse_gmm(spec: str, n_train: int) -> tuple[int, str]:
    """A Gaussian-mixture spec ``"K"`` or ``"K:covariance"`` as (components, covariance).

    ``K`` may be ``n``: as many components as training records (the model then stores
    the records, one tiny Gaussian on each). The covariance defaults to ``full``.

    Examples
    --------
    >>> from miakit.generative_study import parse_gmm
    >>> parse_gmm("20", 900), parse_gmm("n:diag", 900)
    ((20, 'full'), (900, 'diag'))
    """
    k_str, _, cov = str(spec).partition(":")
    cov = cov or "full"
    if cov not in COVARIANCES:
        raise ValueError(f"gmms: expected a covariance in {list(COVARIANCES)} after ':', got "
                         f"{spec!r}")
    try:
        k = n_train if k_str == "n" else int(k_str)
    except ValueError as exc:
        raise ValueError(f"gmms: expected 'K' or 'K:covariance' with K an int or 'n', got "
                         f"{spec!r}") from exc
    if not 1 <= k <= n_train:
        raise ValueError(f"gmms: expected 1 <= K <= {n_train} (the training records), got "
                         f"{spec!r}")
    return k, cov


def _gmm_parameters(k: int, d: int, cov: str) -> int:
    per = {"full": k * d * (d + 1) // 2, "diag": k * d, "spherical": k,
           "tied": d * (d + 1) // 2}[cov]
    return k * d + per + k - 1


def fit_gmm(train: np.ndarray, k: int, cov: str, n_samples: int, seed: int
            ) -> tuple[np.ndarray, int]:
    """Fit a Gaussian mixture (k-means initialisation, scikit-learn defaults otherwise)
    and draw ``n_samples`` records in random order; returns (samples, parameters)."""
    from sklearn.mixture import GaussianMixture

    g = GaussianMixture(n_components=k, covariance_type=cov, random_state=seed,
                        max_iter=100).fit(train)
    x, _ = g.sample(n_samples)  # grouped by component: shuffle
    x = x[np.random.default_rng([seed, 3]).permutation(n_samples)]
    return x, _gmm_parameters(k, train.shape[1], cov)


def fit_vae(train: np.ndarray, n_samples: int, seed: int, epochs: int = DEFAULT_VAE_EPOCHS,
            latent: int = 8, hidden: int = 128) -> tuple[np.ndarray, int]:
    """A small VAE (D-hidden-hidden-latent, mirrored decoder with sigmoid outputs,
    Bernoulli likelihood on pixels in [0, 1]) trained with Adam (lr 1e-3, minibatches of
    64) on the CPU, in one thread (faster for so small a network than several); samples
    are decoder means at ``z ~ N(0, I)``. Returns (samples, parameters)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_vae(train, n_samples, seed, epochs, latent, hidden)
    finally:
        torch.set_num_threads(threads)


def _fit_vae(train: np.ndarray, n_samples: int, seed: int, epochs: int, latent: int,
             hidden: int) -> tuple[np.ndarray, int]:
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    d = train.shape[1]
    enc = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                        nn.ReLU(), nn.Linear(hidden, 2 * latent))
    dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                        nn.ReLU(), nn.Linear(hidden, d))
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    x = torch.as_tensor(np.clip(train, 0.0, 1.0), dtype=torch.float32)
    n = x.shape[0]
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(64):
            xb = x[idx]
            mu, logvar = enc(xb).chunk(2, dim=1)
            z = mu + torch.randn(mu.shape, generator=g) * (0.5 * logvar).exp()
            rec = nn.functional.binary_cross_entropy_with_logits(dec(z), xb,
                                                                 reduction="sum")
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = (rec + kl) / xb.shape[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        samples = torch.sigmoid(dec(torch.randn((n_samples, latent), generator=g)))
    return samples.double().numpy(), int(sum(p.numel() for p in params))


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
    >>> from miakit.generative_study import audit_synthetic
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
    seed = check_int(seed, "seed", 0)
    tr = check_records(train, "train")
    ho = check_records(holdout, "holdout", tr.shape[1], "train")
    syn = check_records(synthetic, "synthetic", tr.shape[1], "train")
    dcr_tr, idx_tr = gen.closest_distances(tr, syn, 1)
    dcr_ho, _ = gen.closest_distances(ho, syn, 1)
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


def generative_study(out_dir: str | Path | None = None, *,
                     gmms: Sequence[str] = DEFAULT_GMMS,
                     vae_epochs: int = DEFAULT_VAE_EPOCHS, n_examples: int | None = None,
                     fprs: Sequence[float] = DEFAULT_FPRS, level: float = 0.95,
                     prior: float = 0.5, pca: int | None = 10, top: int = 8, seed: int = 0,
                     plot: bool = True, progress: Any = None) -> dict[str, Any]:
    """Fit generative models of growing capacity on half the digits and audit each.

    Parameters
    ----------
    out_dir : path, optional
        Where to write ``generative.json`` (and the figures).
    gmms : sequence of str
        Gaussian mixtures, ``"K"`` or ``"K:covariance"`` (:func:`parse_gmm`).
    vae_epochs : int
        Training epochs of the VAE (0: no VAE).
    n_examples : int, optional
        Use a random subset of the digits (default all 1,797).
    fprs, level, prior, pca, top
        As :func:`audit_synthetic`.
    seed : int
        Seeds the split, the models, their samples and the attacks.
    plot : bool
    progress : callable, optional
        Called with a line of text after each model.

    Returns
    -------
    dict
        The report: ``models`` (one entry per model: capacity, advantage, attacks, the
        records most at risk), ``capacity_trend``, ``split``, ``timing_s``.

    Examples
    --------
    >>> from miakit.generative_study import generative_study
    >>> r = generative_study(gmms=["1", "n:diag"], vae_epochs=0, n_examples=300, plot=False)
    >>> [m["name"] for m in r["models"]]
    ['GMM 1 (full)', 'GMM 150 (diag)']
    >>> r["models"][1]["advantage"]["advantage"] > r["models"][0]["advantage"]["advantage"]
    True
    """
    from miakit import datasets

    t0 = time.perf_counter()
    check_probabilities(fprs, "fprs")
    check_probability(level, "level")
    check_probability(prior, "prior")
    check_int(vae_epochs, "vae_epochs", 0)
    d = datasets.digits(n_examples=n_examples, views=1)
    x = d.features[:, 0, :].astype(np.float64)
    perm = np.random.default_rng([seed, 1]).permutation(len(x))
    n_train = len(x) // 2
    tr_idx, ho_idx = np.sort(perm[:n_train]), np.sort(perm[n_train:])
    train, holdout = x[tr_idx], x[ho_idx]
    specs = [parse_gmm(s, n_train) for s in gmms]  # all checked before any fit
    if not specs and not vae_epochs:
        raise ValueError("gmms: expected at least one model (a Gaussian mixture, or the VAE "
                         "with vae_epochs > 0), got none")
    models, samples = [], {}
    jobs: list[tuple[str, Any]] = [("gmm", s) for s in specs]
    if vae_epochs:
        jobs.append(("vae", vae_epochs))
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
              "fprs": list(check_probabilities(fprs, "fprs")),
              "split": {"train": int(n_train), "holdout": int(len(x) - n_train),
                        "seed": seed, "synthetic_per_model": int(n_train)},
              "models": models,
              "capacity_trend": _trend([m for m in models if m["kind"] == "gmm"]),
              "timing_s": {"total": round(time.perf_counter() - t0, 3)}}
    if out_dir is not None:
        write_report(out_dir, "generative", report,
                     _plotter(train, samples, side=8) if plot else None)
    return report


def audit_synthetic_data(synthetic: Any, train: Any, holdout: Any,
                         out_dir: str | Path | None = None, *,
                         fprs: Sequence[float] = DEFAULT_FPRS, level: float = 0.95,
                         prior: float = 0.5, pca: int | None = 10, top: int = 8,
                         seed: int = 0, name: str = "synthetic data",
                         plot: bool = True) -> dict[str, Any]:
    """:func:`audit_synthetic` of a user's data, written as the study's report.

    Records whose width is a square number (64 = 8 x 8) are drawn as images in
    ``generative_records.png``.

    Examples
    --------
    >>> import numpy as np
    >>> from miakit.generative_study import audit_synthetic_data
    >>> rng = np.random.default_rng(1)
    >>> t, h, s = (rng.normal(size=(120, 4)) for _ in range(3))
    >>> r = audit_synthetic_data(s, t, h, plot=False)
    >>> r["models"][0]["name"], r["models"][0]["advantage"]["ci"][0] < 0.2
    ('synthetic data', True)
    """
    t0 = time.perf_counter()
    tr = check_records(train, "train")
    syn = check_records(synthetic, "synthetic", tr.shape[1], "train")
    entry: dict[str, Any] = {"name": name, "kind": "user", "n_parameters": None}
    entry.update(audit_synthetic(syn, tr, holdout, fprs=fprs, level=level, prior=prior,
                                 pca=pca, top=top, seed=seed))
    report = {"dataset": name, "query": "Euclidean distance to the closest synthetic "
              "record (DCR)", "level": level, "prior": prior,
              "fprs": list(check_probabilities(fprs, "fprs")),
              "split": {"train": int(tr.shape[0]), "holdout": int(len(holdout)),
                        "seed": seed, "synthetic_per_model": int(syn.shape[0])},
              "models": [entry], "capacity_trend": None,
              "timing_s": {"total": round(time.perf_counter() - t0, 3)}}
    if out_dir is not None:
        side = int(round(math.sqrt(tr.shape[1])))
        write_report(out_dir, "generative", report,
                     _plotter(tr, {name: syn}, side if side * side == tr.shape[1] else None)
                     if plot else None)
    return report


def _model_line(m: dict) -> str:
    a = m["advantage"]
    parts = [f"{m['name']:<16} advantage {a['advantage']:.3f} "
             f"[{a['ci'][0]:.3f}, {a['ci'][1]:.3f}]"]
    for key, label in (("dcr", "DCR"), ("risk", "risk"), ("domias", "DOMIAS")):
        t = m["attacks"][key]["tpr_at_fpr"]
        parts.append(label + " " + " ".join(
            f"{100 * v['tpr']:.1f}%{'' if v['resolvable'] else '*'}" for v in t.values()))
    return ", ".join(parts)


def summarize(report: dict) -> str:
    """What ``miakit generative`` prints: one line per model, and the trend.

    Examples
    --------
    >>> from miakit.generative_study import summarize
    >>> tpr = {"tpr_at_fpr": {"0.01": {"tpr": 0.05, "resolvable": True}}}
    >>> m = {"name": "GMM 1 (full)", "advantage": {"advantage": 0.1, "ci": [0.0, 0.2]},
    ...      "attacks": {"dcr": tpr, "risk": tpr, "domias": tpr}}
    >>> print(summarize({"models": [m], "fprs": [0.01], "level": 0.95,
    ...                  "capacity_trend": None}).splitlines()[-1])
    GMM 1 (full)     advantage 0.100 [0.000, 0.200], DCR 5.0%, risk 5.0%, DOMIAS 5.0%
    """
    fprs = ", ".join(f"{100 * f:g}%" for f in report["fprs"])
    lines = [f"membership advantage of the DCR query ({100 * report['level']:g}% DKW "
             f"interval); TPR at FPR {fprs} of the DCR, risk and DOMIAS attacks "
             "(* : fewer than 1/FPR hold-out records, not resolvable)"]
    lines += [_model_line(m) for m in report["models"]]
    t = report.get("capacity_trend")
    if t:
        lines.append(f"capacity trend: Spearman {t['spearman_capacity_advantage']:+.2f}; "
                     f"{t['largest']} {'above' if t['largest_above_smallest'] else 'NOT above'}"
                     f" {t['smallest']} (intervals): more capacity "
                     f"{'leaks more' if t['more_capacity_leaks_more'] else 'does NOT leak more'}")
    if report.get("files"):
        written = dict(report["files"], **report.get("figures", {}))
        lines.append("wrote " + ", ".join(dict.fromkeys(written.values())))
    return "\n".join(lines)


def _plotter(train: np.ndarray, samples: dict[str, np.ndarray], side: int | None):
    def plot(report: dict, path: Path) -> None:
        plot_generative(report, path)
        if side is not None:
            rec_path = Path(path).with_name(Path(path).stem + "_records.png")
            plot_records(report, train, samples, side, rec_path)
            report["figures"] = {"capacity": str(path), "records": str(rec_path)}
        else:
            report["figures"] = {"capacity": str(path)}
    return plot


def plot_generative(report: dict, path: str | Path) -> None:
    """Advantage (with its interval) and TPR at the lowest FPRs against capacity (number
    of parameters); for a single model without capacity, its attacks' TPRs as bars."""
    models = report["models"]
    f_keys = [f"{f:g}" for f in report["fprs"]]
    fig, (ax, ax2) = subplots(1, 2, figsize=(11, 4.2), dpi=110)
    with_cap = [m for m in models if m.get("n_parameters")]
    attacks = (("dcr", "DCR threshold", "o"), ("risk", "risk (KDE posterior)", "s"),
               ("domias", "DOMIAS", "^"))
    if with_cap:
        for kind, color in (("gmm", "tab:blue"), ("vae", "tab:red")):
            ms = sorted([m for m in with_cap if m["kind"] == kind],
                        key=lambda m: m["n_parameters"])
            if not ms:
                continue
            xs = [m["n_parameters"] for m in ms]
            a = np.array([m["advantage"]["advantage"] for m in ms])
            lo = a - np.array([m["advantage"]["ci"][0] for m in ms])
            hi = np.array([m["advantage"]["ci"][1] for m in ms]) - a
            ax.errorbar(xs, a, yerr=[lo, hi], fmt="o-" if kind == "gmm" else "D",
                        color=color, capsize=3,
                        label="Gaussian mixtures" if kind == "gmm" else "VAE")
            for m, xv, yv in zip(ms, xs, a):
                ax.annotate(m["name"].replace("GMM ", ""), (xv, yv), fontsize=7,
                            xytext=(4, -10), textcoords="offset points")
            for key, label, marker in attacks:
                ax2.plot(xs, [m["attacks"][key]["tpr_at_fpr"][f_keys[0]]["tpr"] for m in ms],
                         marker=marker, ls="-" if kind == "gmm" else "none", color=color,
                         alpha=0.8, label=f"{label} ({kind.upper()})")
        ax.set_xscale("log")
        ax2.set_xscale("log")
        ax.set_xlabel("model parameters")
        ax2.set_xlabel("model parameters")
        ax2.axhline(report["fprs"][0], ls=":", color="grey", label="chance (TPR = FPR)")
    else:
        m = models[0]
        names = [label for _, label, _ in attacks]
        for j, fk in enumerate(f_keys):
            ax2.bar(np.arange(3) + 0.35 * j, [m["attacks"][k]["tpr_at_fpr"][fk]["tpr"]
                                              for k, _, _ in attacks], 0.35,
                    label=f"FPR {fk}")
        ax2.set_xticks(np.arange(3) + 0.175, names, fontsize=8)
        a = m["advantage"]
        ax.bar([0], [a["advantage"]], yerr=[[a["advantage"] - a["ci"][0]],
                                            [a["ci"][1] - a["advantage"]]], capsize=4)
        ax.set_xticks([0], [m["name"]])
    ax.set_ylabel(f"membership advantage of DCR ({100 * report['level']:g}% DKW)")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax2.set_ylabel(f"TPR at FPR {f_keys[0]}" if with_cap else "TPR")
    ax2.set_ylim(0, 1)
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=7)
    if with_cap:
        ax.legend(fontsize=8)
    fig.suptitle(f"{report['dataset']}: membership leakage of synthetic data", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def plot_records(report: dict, train: np.ndarray, samples: dict[str, np.ndarray],
                 side: int, path: str | Path) -> None:
    """Per model, the training records most at risk (top row of each pair) above their
    closest synthetic record, as side x side images, with risk and DCR."""
    models = report["models"]
    cols = max(1, max(len(m["at_risk"]) for m in models))
    fig, axes = subplots(2 * len(models), cols,
                         figsize=(1.1 * cols + 1.2, 2.3 * len(models)), dpi=100,
                         squeeze=False)
    for r, m in enumerate(models):
        syn = samples[m["name"]]
        for c in range(cols):
            top, bot = axes[2 * r, c], axes[2 * r + 1, c]
            for a in (top, bot):
                a.set_xticks([])
                a.set_yticks([])
            if c >= len(m["at_risk"]):
                top.axis("off")
                bot.axis("off")
                continue
            rec = m["at_risk"][c]
            top.imshow(train[rec["train_index"]].reshape(side, side), cmap="gray_r")
            bot.imshow(syn[rec["closest_synthetic"]].reshape(side, side), cmap="gray_r")
            top.set_title(f"risk {rec['risk']:.2f}\nDCR {rec['dcr']:.2f}", fontsize=6)
        axes[2 * r, 0].set_ylabel(m["name"], fontsize=7)
        axes[2 * r + 1, 0].set_ylabel("closest\nsynthetic", fontsize=6)
    fig.suptitle("training records most at risk (above) and their closest synthetic "
                 "record (below)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
