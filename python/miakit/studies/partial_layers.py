"""Membership inference on a truncated network (Sablayrolles et al. 2018, "Déjà Vu", §5;
docs/methods/partial-layers.md).

:func:`run` splits the embedded digits into disjoint private, public, evaluation and
population parts, trains a small CNN on the private part under each augmentation (none,
horizontal flip, flip and +-1 pixel crops), and for each truncation after one of its
blocks retrains a head on the public part on top of the frozen lower layers
(:func:`miakit.partial_layers.partial_layers`). The candidates are the private examples
(members) and as many evaluation examples (non-members). Per row (augmentation x
truncation, plus the untruncated softmax): the Bayes attack and the maximum-accuracy loss
threshold with Clopper-Pearson intervals, and, with ``shadows > 0``, offline LiRA and RMIA
TPR at low FPR, their references built the attacker's way (CNNs trained on halves of the
public part, truncated at the same block, heads retrained on the public part).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from miakit._params import option, validate
from miakit._plotting import subplots
from miakit._validation import SEED_LIMIT
from miakit.io import save_figure
from miakit.studies._config import resolve
from miakit.studies._result import StudyResult

__all__ = ["PartialLayersConfig", "PartialLayersResult", "run", "AUGMENTATIONS",
           "TRUNCATIONS"]

AUGMENTATIONS = ("none", "flip", "flip+crop")
TRUNCATIONS = ("block1", "block2", "block3", "softmax")
"""Where the network is cut: after its first, second or third block (the head is then
retrained), or not at all (the softmax, the comparison row)."""


@dataclasses.dataclass(frozen=True)
class PartialLayersConfig:
    """The options of the truncated-network membership study (``miakit partial-layers``).

    Examples
    --------
    >>> from miakit.studies.partial_layers import PartialLayersConfig
    >>> PartialLayersConfig(augmentations=["none"]).augmentations
    ('none',)
    >>> PartialLayersConfig(n_private=1000, n_public=600)
    Traceback (most recent call last):
    ...
    ValueError: n_private + n_public + n_evaluation + n_population: expected <= 1797, got 2200
    """

    augmentations: tuple[str, ...] = option(
        AUGMENTATIONS, "augmentations the target CNN is trained with (flip: horizontal, "
        "probability 1/2; crop: a random shift of up to 1 pixel)", choices=AUGMENTATIONS,
        flag="--augmentation")
    n_private: int = option(400, "digits the target CNN trains on (the members)", low=10)
    n_public: int = option(600, "digits the attacker owns (disjoint from the private ones): "
                           "the retrained heads and the reference CNNs train on them", low=10)
    n_evaluation: int = option(400, "held-out digits: the non-member candidates (as many as "
                               "the members are used)", low=10)
    n_population: int = option(200, "held-out digits RMIA compares against (no model trains "
                               "on them)", low=10)
    width: int = option(16, "channels of the CNN's first convolution (the second has twice "
                        "as many)", low=1)
    epochs: int = option(60, "epochs of every CNN (Adam, batch 32, no weight decay: it "
                         "overfits, as the paper's models do)", low=1)
    lr: float = option(2e-3, "Adam learning rate of the CNNs", low=0.0, open_low=True)
    head: str = option("linear", "the retrained top", choices=("linear", "mlp"))
    head_epochs: int = option(100, "epochs of every retrained head (Adam, lr 0.01, batch "
                              "128)", low=1)
    shadows: int = option(4, "reference CNNs for offline LiRA and RMIA (each on a random half "
                          "of the public digits); 0 reports Bayes and MAT only", low=0)
    fprs: tuple[float, ...] = option((0.01, 0.1), "FPR budgets of the LiRA and RMIA TPRs",
                                     low=0.0, high=1.0, open_low=True, open_high=True,
                                     flag="--fpr")
    level: float = option(0.95, "confidence level of the intervals", low=0.0, high=1.0,
                          open_low=True, open_high=True)
    seed: int = option(0, "seed of the splits, the CNNs and the heads", seed=True)
    device: str = option("cpu", "torch device of the training (e.g. cuda)")
    plot: bool = option(True, "write partial_layers.png", flag="--no-plot")

    def __post_init__(self) -> None:
        validate(self)
        total = self.n_private + self.n_public + self.n_evaluation + self.n_population
        if total > 1797:
            raise ValueError("n_private + n_public + n_evaluation + n_population: expected "
                             f"<= 1797, got {total}")


def _cnn(width: int) -> Any:
    """Three blocks and a classifier: conv-pool (8x8 -> 4x4), conv-pool (-> 2x2), a dense
    layer; the truncations cut after each block."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Flatten(), nn.Linear(8 * width, 8 * width), nn.ReLU()),
        nn.Linear(8 * width, 10))


def _augment(x: Any, augmentation: str, gen: Any) -> Any:
    import torch

    if augmentation == "none":
        return x
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(3), x)
    if augmentation == "flip+crop":
        # zero-pad by one pixel, then cut the 8x8 window at a random offset in {0, 1, 2}^2
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
        dx = torch.randint(0, 3, (n,), generator=gen).tolist()
        dy = torch.randint(0, 3, (n,), generator=gen).tolist()
        x = torch.stack([padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8] for i in range(n)])
    return x


def _train_cnn(x: Any, y: Any, augmentation: str, cfg: PartialLayersConfig, seed: int) -> Any:
    import torch

    seed %= SEED_LIMIT  # the derived seeds (seed + 1000 a + ...) may pass torch's range
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = _cnn(cfg.width).to(x.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(x), generator=gen).to(x.device)
        for i in range(0, len(x), 32):
            idx = order[i:i + 32]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(
                model(_augment(x[idx], augmentation, gen)), y[idx]).backward()
            opt.step()
    return model.eval()


def _rebuilt_logits(model: Any, cut: str, pub_x: Any, pub_y: np.ndarray, xs: list[Any],
                    cfg: PartialLayersConfig, seed: int) -> list[np.ndarray]:
    """Logits of ``model`` cut at ``cut`` with a head retrained on the public data, on each
    array of ``xs`` (the softmax row: the model itself)."""
    import torch

    from miakit import partial_layers as pl

    with torch.no_grad():
        if cut == "softmax":
            return [model(x).cpu().numpy() for x in xs]
        lower = model[:TRUNCATIONS.index(cut) + 1]
        top = pl.train_head(pl.frozen_features(lower, pub_x), pub_y, 10, head=cfg.head,
                            epochs=cfg.head_epochs, seed=seed)
        return [top(pl.frozen_features(lower, x)).cpu().numpy() for x in xs]


def _true_class_probability(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return np.exp(np.take_along_axis(logp, y[..., None], axis=-1)[..., 0])


def _reference_attacks(target: list[np.ndarray], refs: list[list[np.ndarray]],
                       cand_y: np.ndarray, pop_y: np.ndarray, members: np.ndarray,
                       cfg: PartialLayersConfig) -> dict[str, Any]:
    """Offline LiRA (one-sided, global variance: a few references) and offline RMIA
    (population: the held-out population digits) TPR at each FPR."""
    import miakit as mk

    cand_ref = np.stack([r[0] for r in refs])
    pop_ref = np.stack([r[1] for r in refs])
    out_keep = np.zeros((len(refs), len(cand_y)), dtype=bool)
    lira_fit = mk.lira.fit(cand_ref, out_keep, variance="global", labels=cand_y)
    lira = mk.lira.score(mk.signals.scaled_confidence(target[0], cand_y), lira_fit,
                         mode="offline")
    q = _true_class_probability
    rmia = mk.rmia.score(q(target[0], cand_y), q(cand_ref, np.broadcast_to(cand_y,
                                                                            out_keep.shape)),
                         out_keep, (q(target[1], pop_y),
                                    q(pop_ref, np.broadcast_to(pop_y, pop_ref.shape[:2]))),
                         offline=True)
    result: dict[str, Any] = {}
    for name, scores in (("lira", lira), ("rmia", rmia)):
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        result[name] = {
            "auc": float(mk.metrics.auc(s, members)),
            "tpr": [{"fpr": f, "tpr": r.tpr, "ci": list(r.ci)} for f in cfg.fprs
                    for r in [mk.metrics.tpr_at_fpr(s, members, f, cfg.level, clusters=None)]]}
    return result


def _device(name: str) -> Any:
    """The torch device of ``--device``, refused early (naming the option) when it is not a
    device torch knows or is not present."""
    import torch

    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device: expected a torch device (cpu, cuda, cuda:1), got "
                         f"{name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} asked for, but torch sees no CUDA device")
    return dev


def _rows(cfg: PartialLayersConfig, priv_x: Any, priv_y: Any, pub_x: Any,
          pub_y: np.ndarray, cand_x: Any, cand_y: np.ndarray, pop_x: Any, pop_y: np.ndarray,
          members: np.ndarray, progress: Callable[[str], Any] | None) -> list[dict]:
    """Train the target and reference CNNs per augmentation and attack every truncation."""
    import torch

    from miakit import partial_layers as pl

    pub_yt = torch.as_tensor(pub_y).to(pub_x.device)
    rows = []
    for a, aug in enumerate(cfg.augmentations):
        t0 = time.perf_counter()
        target = _train_cnn(priv_x, priv_y, aug, cfg, cfg.seed + 1000 * a)
        shadow_models = []
        for s in range(cfg.shadows):
            half = np.random.default_rng([cfg.seed, a, s]).permutation(len(pub_y))
            half = half[:len(pub_y) // 2]
            shadow_models.append(_train_cnn(pub_x[half], pub_yt[half], aug, cfg,
                                            cfg.seed + 1000 * a + s + 1))
        for cut in TRUNCATIONS:
            z = _rebuilt_logits(target, cut, pub_x, pub_y, [cand_x, pop_x, pub_x], cfg,
                                cfg.seed)
            attack = pl.attack_logits(z[0], cand_y, members, level=cfg.level,
                                      public_accuracy=float((z[2].argmax(1) == pub_y).mean()))
            row: dict[str, Any] = {"augmentation": aug, "truncation": cut,
                                   **attack.to_dict()}
            if cfg.shadows:
                refs = [_rebuilt_logits(m, cut, pub_x, pub_y, [cand_x, pop_x], cfg,
                                        cfg.seed + s + 1)
                        for s, m in enumerate(shadow_models)]
                row.update(_reference_attacks(z, refs, cand_y, pop_y, members, cfg))
            row["seconds"] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            rows.append(row)
            if progress is not None:
                progress(_row_line(row))
    return rows




def run(config: PartialLayersConfig | None = None, *, out_dir: str | Path | None = None,
        progress: Callable[[str], Any] | None = None,
        **overrides: Any) -> PartialLayersResult:
    """Bayes, MAT, LiRA and RMIA on a CNN cut after each block, per augmentation.

    Parameters
    ----------
    config : PartialLayersConfig, optional
        The options (default: ``PartialLayersConfig()``); ``overrides`` replace its fields.
    out_dir : path, optional
        Where to write ``partial_layers.json`` (and ``partial_layers.png`` with
        ``config.plot``).
    progress : callable, optional
        Called with a line per row.

    Returns
    -------
    PartialLayersResult
        ``rows``: per augmentation and truncation, ``bayes`` and ``mat`` (accuracy and
        interval; Bayes with the train and test accuracy), ``public_accuracy`` (of the
        retrained head), and with shadows ``lira`` and ``rmia`` (AUC, TPR at each FPR
        with its interval).

    Examples
    --------
    >>> from miakit.studies import partial_layers
    >>> r = partial_layers.run(augmentations=["none"], n_private=60, n_public=80,
    ...                        n_evaluation=60, n_population=20, epochs=2, head_epochs=2,
    ...                        shadows=0)
    >>> [row["truncation"] for row in r["rows"]]
    ['block1', 'block2', 'block3', 'softmax']
    """
    cfg = resolve(PartialLayersConfig, config, overrides)
    import torch

    from miakit import datasets

    data = datasets.digits(views=1)
    pictures = data.images
    assert pictures is not None  # the digits always carry their 8x8 images
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(data.labels))
    bounds = np.cumsum([cfg.n_private, cfg.n_public, cfg.n_evaluation, cfg.n_population])
    private, public, evaluation, population = np.split(order[:bounds[-1]], bounds[:-1])
    n_cand = min(cfg.n_private, cfg.n_evaluation)
    candidates = np.r_[private[:n_cand], evaluation[:n_cand]]
    members = np.r_[np.ones(n_cand, bool), np.zeros(n_cand, bool)]
    dev = _device(cfg.device)

    def images(idx: np.ndarray) -> Any:
        return torch.as_tensor(pictures[idx]).to(dev)

    labels = np.asarray(data.labels, dtype=np.int64)
    priv_x, pub_x = images(private), images(public)
    cand_x, pop_x = images(candidates), images(population)
    priv_y = torch.as_tensor(labels[private]).to(dev)
    pub_y, cand_y, pop_y = labels[public], labels[candidates], labels[population]
    # the CNNs are tiny: on a CPU, threads cost more in synchronization than they save
    # (ten times slower with two threads on a busy two-core machine)
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(1)
    try:
        rows = _rows(cfg, priv_x, priv_y, pub_x, pub_y, cand_x, cand_y, pop_x, pop_y,
                     members, progress)
    finally:
        torch.set_num_threads(threads)
    report = {"dataset": data.description,
              "splits": {"private": len(private), "public": len(public),
                         "evaluation": len(evaluation), "population": len(population),
                         "candidates": {"members": n_cand, "non_members": n_cand}},
              "model": f"CNN: conv{cfg.width}-pool, conv{2 * cfg.width}-pool, "
                       f"dense{8 * cfg.width}, linear10; {cfg.epochs} epochs Adam lr "
                       f"{cfg.lr:g}",
              "head": cfg.head, "head_epochs": cfg.head_epochs, "shadows": cfg.shadows,
              "fprs": list(cfg.fprs), "level": cfg.level, "seed": cfg.seed,
              "augmentations": list(cfg.augmentations), "rows": rows}
    result = PartialLayersResult(report)
    if out_dir is not None:
        result.write(out_dir, plot=cfg.plot)
    return result


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def _row_line(row: dict) -> str:
    b, m = row["bayes"], row["mat"]
    line = (f"{row['augmentation']:>9} {row['truncation']:>7}: Bayes {_pct(b['accuracy'])}% "
            f"[{_pct(b['ci'][0])}, {_pct(b['ci'][1])}], MAT {_pct(m['accuracy'])}% "
            f"[{_pct(m['ci'][0])}, {_pct(m['ci'][1])}]; train/test accuracy "
            f"{_pct(b['train_accuracy'])}/{_pct(b['test_accuracy'])}%")
    for name, shown in (("lira", "LiRA"), ("rmia", "RMIA")):
        if name in row:
            line += f"; {shown} " + ", ".join(
                f"TPR@{t['fpr']:g} {_pct(t['tpr'])}%" for t in row[name]["tpr"])
    return line


class PartialLayersResult(StudyResult):
    """The truncated-network membership report (``partial_layers.json``).

    Examples
    --------
    >>> from miakit.studies.partial_layers import PartialLayersResult
    >>> row = {"augmentation": "none", "truncation": "softmax",
    ...        "bayes": {"accuracy": 0.6, "ci": [0.55, 0.65], "train_accuracy": 1.0,
    ...                  "test_accuracy": 0.8},
    ...        "mat": {"accuracy": 0.62, "ci": [0.57, 0.67], "threshold": 0.01}}
    >>> r = PartialLayersResult({"dataset": "d", "shadows": 0, "fprs": [], "rows": [row]})
    >>> print(r.summary().splitlines()[3])
    | none | softmax | 60.0 [55.0, 65.0] | 62.0 [57.0, 67.0] | 100.0 / 80.0 |
    """

    name = "partial_layers"

    def summary(self) -> str:
        """What ``miakit partial-layers`` prints: a Markdown table, a row per augmentation
        and truncation (accuracies in %)."""
        report = self._report
        fprs = report["fprs"] if report["shadows"] else []
        head = ["augmentation", "truncation", "Bayes", "MAT", "train / test acc."]
        head += [f"{n} TPR@{f:g}" for n in ("LiRA", "RMIA") for f in fprs]
        lines = [f"miakit partial-layers: {report['dataset']}",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in report["rows"]:
            b, m = row["bayes"], row["mat"]
            cells = [row["augmentation"], row["truncation"],
                     f"{_pct(b['accuracy'])} [{_pct(b['ci'][0])}, {_pct(b['ci'][1])}]",
                     f"{_pct(m['accuracy'])} [{_pct(m['ci'][0])}, {_pct(m['ci'][1])}]",
                     f"{_pct(b['train_accuracy'])} / {_pct(b['test_accuracy'])}"]
            cells += [_pct(t["tpr"]) for n in ("lira", "rmia") if n in row
                      for t in row[n]["tpr"]]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines + self._files_line())

    def _draw(self, path: Path) -> None:
        report = self._report
        rows = report["rows"]
        augs = list(dict.fromkeys(r["augmentation"] for r in rows))
        cuts = [c for c in TRUNCATIONS if any(r["truncation"] == c for r in rows)]
        panels = [("bayes", "Bayes attack accuracy"), ("mat", "MAT accuracy")]
        if report.get("shadows") and report.get("fprs"):
            panels.append(("lira", f"LiRA TPR at FPR {report['fprs'][0]:g}"))
        fig, axes = subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), dpi=110,
                             squeeze=False)
        width = 0.8 / len(augs)
        xs = np.arange(len(cuts))
        for ax, (key, title) in zip(axes[0], panels):
            for i, aug in enumerate(augs):
                by_cut = {r["truncation"]: r for r in rows if r["augmentation"] == aug}
                if key == "lira":
                    vals = [by_cut[c]["lira"]["tpr"][0]["tpr"] for c in cuts]
                    cis = [by_cut[c]["lira"]["tpr"][0]["ci"] for c in cuts]
                else:
                    vals = [by_cut[c][key]["accuracy"] for c in cuts]
                    cis = [by_cut[c][key]["ci"] for c in cuts]
                err = np.array([[v - lo for v, (lo, _) in zip(vals, cis)],
                                [hi - v for v, (_, hi) in zip(vals, cis)]])
                ax.bar(xs + (i - (len(augs) - 1) / 2) * width, vals, width, yerr=err,
                       capsize=2, label=aug)
            if key == "lira":
                ax.axhline(report["fprs"][0], color="k", lw=1, ls="--", label="chance")
                ax.set_ylim(0, None)
            else:
                ax.axhline(0.5, color="k", lw=1, ls="--", label="chance")
                ax.set_ylim(0.4, None)
            ax.set_xticks(xs)
            ax.set_xticklabels(["after " + c if c != "softmax" else "softmax (full)"
                                for c in cuts], fontsize=8)
            ax.set_title(title, fontsize=9)
            ax.set_ylabel(("TPR" if key == "lira" else "balanced accuracy")
                          + f" ({100 * report.get('level', 0.95):g}% interval)", fontsize=8)
            ax.grid(True, axis="y", alpha=0.3)
        axes[0][0].legend(fontsize=7, title="augmentation", title_fontsize=7)
        fig.suptitle("Membership attacks on a CNN truncated after each block, head retrained "
                     f"on public digits ({report['splits']['candidates']['members']} members "
                     "vs as many non-members)" if "splits" in report else
                     "Membership attacks on a truncated CNN", fontsize=8)
        fig.tight_layout()
        save_figure(fig, path)
