"""Explicit memorization capacity of small networks (Sablayrolles et al., "Déjà Vu" §3;
docs/methods/capacity.md).

:func:`run` trains in/out discriminators: an MLP of each width answers 1 on n positives
drawn from a pool of N examples and 0 on every other example of the pool, with the
negatives drawn afresh each epoch, for n over a grid and (on images) four augmentations.
Storing which n of N examples are positive takes ``C(n) = log2 binom(N, n)`` bits
(:func:`miakit.capacity.capacity_bits`); the held-out accuracy, on the positives and on
negatives never seen in training (a balanced set), drops from 1 towards 1/2 as n passes
the n where C(n) reaches the model's parameter count. Each finished row is saved in
``capacity.json`` at once, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from miakit._params import option, validate
from miakit._plotting import subplots
from miakit.capacity import capacity_bits, n_at_capacity
from miakit.io import digest_arrays, save_figure, write_json
from miakit.studies._config import resolve
from miakit.studies._result import StudyResult

__all__ = ["CapacityConfig", "CapacityResult", "run", "capacity", "AUGMENTATIONS",
           "DEFAULT_N"]

AUGMENTATIONS = ("none", "flip", "flip-crop1", "flip-crop2")
"""No augmentation, horizontal flips, flips and random shifts of up to 1 or 2 pixels."""
DEFAULT_N = (4, 8, 16, 32, 64, 128, 256, 512)
LEVEL = 0.75
"""The held-out accuracy, midway between memorizing all and chance, whose crossing the
summary reports."""


@dataclasses.dataclass(frozen=True)
class CapacityConfig:
    """The options of the explicit-capacity study (``miakit capacity``).

    Examples
    --------
    >>> from miakit.studies.capacity import CapacityConfig
    >>> CapacityConfig(n=[8, 4]).n
    (4, 8)
    >>> CapacityConfig(epochs=0)
    Traceback (most recent call last):
    ...
    ValueError: epochs: expected an int >= 1, got 0
    """

    n: tuple[int, ...] = option(DEFAULT_N, "numbers of positives (the set to memorize)",
                                low=1, flag="--n")
    widths: tuple[int, ...] = option((1, 3, 10), "hidden units of the MLP discriminators "
                                     "(one model per width)", low=1, flag="--width")
    augmentations: tuple[str, ...] = option(
        AUGMENTATIONS, "training augmentations (images only; feature vectors take 'none')",
        choices=AUGMENTATIONS, flag="--augmentation")
    epochs: int = option(400, "epochs; each is one Adam step on the positives and freshly "
                         "drawn negatives", low=1)
    negatives: int = option(256, "negatives drawn each epoch: as many as positives, at "
                            "least this many", low=1)
    lr: float = option(0.01, "Adam learning rate", low=0.0, open_low=True)
    heldout: float = option(0.2, "share of the examples kept out as held-out negatives",
                            low=0.0, high=1.0, open_low=True, open_high=True)
    seed: int = option(0, "seed of the split, the positives and the training", seed=True)
    device: str = option("cpu", "where the models train: 'cpu', 'cuda' or 'cuda:N'")
    plot: bool = option(True, "write capacity.png", flag="--no-plot")
    dataset: str = option("features", "name of your examples in the report (the embedded "
                          "digits are named by their description)", cli=False)

    def __post_init__(self) -> None:
        validate(self)
        object.__setattr__(self, "n", tuple(sorted(set(self.n))))
        object.__setattr__(self, "widths", tuple(sorted(set(self.widths))))
        object.__setattr__(self, "augmentations", tuple(dict.fromkeys(self.augmentations)))


def _data(features: Any) -> tuple[np.ndarray, bool, str]:
    """The examples as float32 (images [N, C, H, W] or vectors [N, D]), whether they are
    images, and their name."""
    if features is None:
        from miakit import datasets

        d = datasets.digits(views=1)
        assert d.images is not None  # the digits always come with their images
        return d.images.astype(np.float32), True, d.description
    x = np.asarray(features)
    if x.dtype.kind not in "fiu" or x.ndim not in (2, 3, 4) or len(x) < 4:
        raise ValueError(f"features: expected numbers [N, D] (vectors), [N, H, W] or "
                         f"[N, C, H, W] (images) with N >= 4, got shape {x.shape} dtype "
                         f"{x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features: expected finite values, got NaN or infinity")
    x = x.astype(np.float32)
    if x.ndim == 3:
        x = x[:, None]
    return x, x.ndim == 4, f"{len(x)} {'images' if x.ndim == 4 else 'vectors'} {x.shape[1:]}"


def _augment(xb: Any, kind: str, gen: Any) -> Any:
    """Random horizontal flips, then random shifts of up to k pixels (zero padded)."""
    import torch

    if kind == "none":
        return xb
    b, _, h, w = xb.shape
    flip = (torch.rand(b, generator=gen) < 0.5).to(xb.device)
    xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
    k = {"flip": 0, "flip-crop1": 1, "flip-crop2": 2}[kind]
    if k == 0:
        return xb
    padded = torch.nn.functional.pad(xb, (k, k, k, k))
    dy, dx = (torch.randint(0, 2 * k + 1, (2, b), generator=gen)).to(xb.device)
    rows = dy[:, None] + torch.arange(h, device=xb.device)
    cols = dx[:, None] + torch.arange(w, device=xb.device)
    idx = torch.arange(b, device=xb.device)
    return padded.permute(0, 2, 3, 1)[idx[:, None, None], rows[:, :, None],
                                      cols[:, None, :]].permute(0, 3, 1, 2)


def _params(dim: int, width: int) -> int:
    return dim * width + 2 * width + 1


class _Discriminators:
    """MLPs ``D -> width -> 1`` of several widths, trained side by side as one network.

    Their hidden units sit in one wide layer, and each model's output sums only its own
    units: no parameter is shared, so the sum of their losses gives each model the
    gradient it would get alone (and Adam's steps are per parameter), while one step
    trains them all on the same draws.
    """

    def __init__(self, dim: int, widths: list[int], device: Any, seed: int) -> None:
        import torch

        w1: list[Any] = []
        b1: list[Any] = []
        w2: list[Any] = []
        b2: list[Any] = []
        for w in widths:  # each model's start depends on its width only, not on the others
            torch.manual_seed(zlib.crc32(f"{seed}/{w}".encode()))
            first, last = torch.nn.Linear(dim, w), torch.nn.Linear(w, 1)  # torch's init
            w1.append(first.weight)
            b1.append(first.bias)
            w2.append(last.weight[0])
            b2.append(last.bias)
        group = torch.repeat_interleave(torch.arange(len(widths)), torch.tensor(widths))
        self.w1, self.b1, self.w2, self.b2 = (
            torch.cat(p).detach().to(device).requires_grad_() for p in (w1, b1, w2, b2))
        self.sum_by_model = torch.nn.functional.one_hot(group, len(widths)).float().to(device)

    def parameters(self) -> list[Any]:
        return [self.w1, self.b1, self.w2, self.b2]

    def __call__(self, xb: Any) -> Any:
        """The logits [B, models]."""
        import torch

        h = torch.relu(xb.flatten(1) @ self.w1.T + self.b1)
        return (h * self.w2) @ self.sum_by_model + self.b2


def _train(x: Any, pos: np.ndarray, neg_pool: np.ndarray, widths: list[int],
           augmentation: str, cfg: CapacityConfig, seed: int) -> _Discriminators:
    """MLPs trained to answer 1 on ``x[pos]`` and 0 on negatives drawn from
    ``x[neg_pool]`` afresh each epoch (each loss weighs both sides equally)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    model = _Discriminators(int(np.prod(x.shape[1:])), widths, x.device, cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    xp = x[torch.as_tensor(pos, device=x.device)]
    pool = torch.as_tensor(neg_pool, device=x.device)
    m = max(len(pos), cfg.negatives)
    target = torch.cat([torch.ones(len(pos)), torch.zeros(m)]).to(x.device)[:, None]
    side = torch.cat([torch.full((len(pos),), 1 / len(pos)),
                      torch.full((m,), 1 / m)]).to(x.device)[:, None]
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    for _ in range(cfg.epochs):
        draw = pool[torch.randint(0, len(pool), (m,), generator=gen).to(x.device)]
        batch = torch.cat([xp, x[draw]])
        if x.ndim == 4:
            batch = _augment(batch, augmentation, gen)
        z = model(batch)
        # the mean loss on the positives plus that on the negatives, summed over models
        loss = (bce(z, target.expand_as(z), reduction="none") * side).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def _accuracy(model: _Discriminators, x: Any, idx: np.ndarray, label: int) -> np.ndarray:
    """Each model's accuracy on ``x[idx]`` whose label is ``label``."""
    import torch

    with torch.no_grad():
        z = model(x[torch.as_tensor(idx, device=x.device)])
    return ((z > 0) == bool(label)).float().mean(0).cpu().numpy()


def run(features: Any = None, config: CapacityConfig | None = None, *,
        out_dir: str | Path | None = None, progress: Callable[[str], Any] | None = None,
        **overrides: Any) -> CapacityResult:
    """Accuracy of in/out discriminators against the number of positives n, per model
    size and augmentation (run or resume).

    The examples are split once: a share ``config.heldout`` are held-out negatives, the
    other N form the pool. The positives of each n are the first n of one random
    permutation of the pool (nested sets); every other pool example is a negative, drawn
    afresh each epoch. Each (width, augmentation, n) trains one MLP ``D -> width -> 1``
    with Adam.

    Parameters
    ----------
    features : array, optional
        Your examples: vectors [N, D] (augmentation 'none' only), or images [N, H, W] or
        [N, C, H, W]. Default: the embedded 8x8 digits (1,797 images).
    config : CapacityConfig, optional
        The options (default: ``CapacityConfig()``); ``overrides`` replace its fields.
    out_dir : path, optional
        Where to write ``capacity.json`` (after every row: rows found there from an
        earlier run of the same setup are not trained again) and ``capacity.png`` with
        ``config.plot``.
    progress : callable, optional
        Called with a line per trained row.

    Returns
    -------
    CapacityResult
        ``rows``: per model, augmentation and n, the parameters, ``train_accuracy`` (the
        mean of the accuracy on the positives and on the pool's negatives),
        ``heldout_accuracy`` (on the positives and the held-out negatives, a balanced
        set), ``capacity_bits`` C(n); ``models``: each model's parameters and the n where
        C(n) equals them.

    Examples
    --------
    >>> from miakit.studies import capacity
    >>> r = capacity.run(n=[2, 8], widths=[2], augmentations=["none", "flip"], epochs=20,
    ...                  plot=False)
    >>> [(row["augmentation"], row["n"]) for row in r["rows"]]
    [('none', 2), ('none', 8), ('flip', 2), ('flip', 8)]
    >>> r["models"][0]["params"], r["total"]
    (133, 1438)
    """
    import torch

    cfg = resolve(CapacityConfig, config, overrides)
    try:
        device = torch.device(cfg.device)
    except RuntimeError as exc:
        raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got "
                         f"{cfg.device!r}") from exc
    x_np, images, description = _data(features)
    augmentations = cfg.augmentations
    if not images:
        if augmentations == AUGMENTATIONS:
            augmentations = ("none",)  # the default grid, on data that cannot be flipped
        elif augmentations != ("none",):
            raise ValueError(f"augmentations: feature vectors take 'none' only, got "
                             f"{list(augmentations)}")
    if images:  # one scale for all pixels keeps a shifted image's padding at the mean
        x_np = (x_np - x_np.mean()) / (x_np.std() or 1.0)
    else:
        x_np = (x_np - x_np.mean(0)) / np.where(x_np.std(0) > 0, x_np.std(0), 1.0)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(x_np))
    n_held = max(1, round(cfg.heldout * len(x_np)))
    held, pool = np.sort(order[:n_held]), order[n_held:]
    total = len(pool)
    if max(cfg.n) >= total:
        raise ValueError(f"n: expected sizes below the pool of {total} examples (the "
                         f"others are held out), got {max(cfg.n)}")
    dim = int(np.prod(x_np.shape[1:]))
    setup = {"data": digest_arrays(x_np), "epochs": cfg.epochs, "negatives": cfg.negatives,
             "lr": cfg.lr, "heldout": cfg.heldout, "seed": cfg.seed}
    models: list[dict[str, Any]] = [
        {"model": f"mlp-{w}", "width": w, "params": _params(dim, w),
         "n_at_capacity": _finite(n_at_capacity(_params(dim, w), total))} for w in cfg.widths]
    done = _done_rows(out_dir, setup)
    x = torch.as_tensor(x_np, device=device)
    rows: list[dict] = []
    report = {"dataset": description if features is None else cfg.dataset,
              "images": images, "total": total, "heldout_negatives": n_held,
              "setup": setup, "models": models, "augmentations": list(augmentations),
              "n": list(cfg.n), "level": LEVEL, "rows": rows}
    threads = torch.get_num_threads()
    if x.device.type == "cpu":
        torch.set_num_threads(1)  # models this small: more threads only add waiting
    try:
        for aug in augmentations:
            for n in cfg.n:
                todo = [m for m in models if (m["model"], aug, n) not in done]
                if todo:
                    t0 = time.perf_counter()
                    pos, neg = np.sort(pool[:n]), np.sort(pool[n:])
                    seed = zlib.crc32(f"{cfg.seed}/{aug}/{n}".encode())
                    model = _train(x, pos, neg, [m["width"] for m in todo], aug, cfg, seed)
                    acc_pos = _accuracy(model, x, pos, 1)
                    acc_neg = _accuracy(model, x, neg, 0)
                    acc_held = _accuracy(model, x, held, 0)
                    seconds = round(time.perf_counter() - t0, 3)
                    for k, m in enumerate(todo):
                        done[(m["model"], aug, n)] = {
                            "model": m["model"], "params": m["params"], "augmentation": aug,
                            "n": n, "positive_accuracy": float(acc_pos[k]),
                            "train_accuracy": float(acc_pos[k] + acc_neg[k]) / 2,
                            "heldout_accuracy": float(acc_pos[k] + acc_held[k]) / 2,
                            "capacity_bits": capacity_bits(n, total), "seconds": seconds}
                    if out_dir is not None:
                        Path(out_dir).mkdir(parents=True, exist_ok=True)
                        write_json(Path(out_dir) / "capacity.json",
                                   dict(report, rows=list(done.values()), complete=False),
                                   "the capacity rows so far")
                    if progress is not None:
                        for m in todo:
                            progress(_row_line(done[(m["model"], aug, n)]))
    finally:
        torch.set_num_threads(threads)
    rows[:] = [done[(m["model"], aug, n)] for m in models for aug in augmentations
               for n in cfg.n]
    report["complete"] = True
    report["drops"] = _drops(rows, models, list(augmentations))
    result = CapacityResult(report)
    if out_dir is not None:
        result.write(out_dir, plot=cfg.plot)
    return result


def _finite(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def _done_rows(out_dir: str | Path | None, setup: dict) -> dict[tuple, dict]:
    """The rows an earlier run of the same setup left in ``out_dir/capacity.json``."""
    if out_dir is None or not (Path(out_dir) / "capacity.json").exists():
        return {}
    path = Path(out_dir) / "capacity.json"
    saved = json.loads(path.read_text())
    if saved.get("setup") != setup:
        raise ValueError(f"out_dir: {path} holds rows of a different setup (data, epochs, "
                         "negatives, lr, heldout or seed); use a new directory")
    return {(r["model"], r["augmentation"], r["n"]): r for r in saved["rows"]}


def _drops(rows: list[dict], models: list[dict], augmentations: list[str]) -> list[dict]:
    """Per model and augmentation, the n where the held-out accuracy first falls below
    :data:`LEVEL` (interpolated on log n; None when it never does)."""
    out = []
    for m in models:
        for aug in augmentations:
            pts = [(r["n"], r["heldout_accuracy"]) for r in rows
                   if r["model"] == m["model"] and r["augmentation"] == aug]
            n_drop = None
            for (n0, a0), (n1, a1) in zip(pts, pts[1:]):
                if a0 >= LEVEL > a1:
                    t = (a0 - LEVEL) / (a0 - a1)
                    n_drop = float(math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0))))
                    break
            if n_drop is None and pts and pts[0][1] < LEVEL:
                n_drop = float(pts[0][0])
            out.append({"model": m["model"], "augmentation": aug, "n_drop": n_drop})
    return out


def capacity(out_dir: str | Path | None = None, features: Any = None, *,
             progress: Callable[[str], Any] | None = None,
             **options: Any) -> CapacityResult:
    """:func:`run` with the options as keywords.

    Examples
    --------
    >>> from miakit.studies.capacity import capacity
    >>> r = capacity(n=[4], widths=[1], augmentations=["none"], epochs=5, plot=False)
    >>> r["rows"][0]["params"]
    67
    """
    return run(features, CapacityConfig(**options), out_dir=out_dir, progress=progress)


def _row_line(row: dict) -> str:
    return (f"{row['model']:>7} ({row['params']} params) {row['augmentation']:>10} "
            f"n={row['n']:<5} C(n)={row['capacity_bits']:7.0f} bits: accuracy train "
            f"{100 * row['train_accuracy']:5.1f}% held-out {100 * row['heldout_accuracy']:5.1f}%")


def _n_text(n: float | None, none: str) -> str:
    return none if n is None else f"n = {n:.3g}"


class CapacityResult(StudyResult):
    """The explicit-capacity report (``capacity.json``).

    Examples
    --------
    >>> from miakit.studies.capacity import CapacityResult
    >>> r = CapacityResult({"dataset": "d", "total": 100, "rows": [],
    ...                     "models": [{"model": "mlp-1", "params": 67, "n_at_capacity": 9.5}],
    ...                     "drops": [{"model": "mlp-1", "augmentation": "none",
    ...                                "n_drop": 12.0}]})
    >>> print(r.summary().splitlines()[1])
      mlp-1: 67 params, C(n) = params at n = 9.5; held-out accuracy below 75% from n = 12 (none)
    """

    name = "capacity"

    def summary(self) -> str:
        """What ``miakit capacity`` prints: per model, the n where C(n) = params and where
        the held-out accuracy drops, per augmentation."""
        report = self._report
        lines = [f"miakit capacity: {report['dataset']}; positives drawn from N = "
                 f"{report['total']}"]
        for m in report["models"]:
            at = m["n_at_capacity"]
            drops = ", ".join(f"{_n_text(d['n_drop'], 'never')} ({d['augmentation']})"
                              for d in report["drops"] if d["model"] == m["model"])
            lines.append(f"  {m['model']}: {m['params']} params, C(n) = params at "
                         f"{_n_text(at, 'no n <= N/2')}; held-out "
                         f"accuracy below {100 * report.get('level', LEVEL):.0f}% from "
                         f"{drops}")
        return "\n".join(lines + self._files_line())

    def _draw(self, path: Path) -> None:
        report = self._report
        models = report["models"]
        colours = dict(zip(AUGMENTATIONS, ("C0", "C1", "C2", "C3")))
        fig, axes = subplots(1, len(models), figsize=(3.6 * len(models) + 0.6, 3.6),
                             dpi=110, squeeze=False)
        for ax, m in zip(axes[0], models):
            for aug in report["augmentations"]:
                rows = [r for r in report["rows"]
                        if r["model"] == m["model"] and r["augmentation"] == aug]
                ns = [r["n"] for r in rows]
                ax.plot(ns, [r["heldout_accuracy"] for r in rows], "o-", ms=3,
                        color=colours[aug], label=aug)
                ax.plot(ns, [r["train_accuracy"] for r in rows], ":", lw=1,
                        color=colours[aug])
            if m["n_at_capacity"] is not None:
                ax.axvline(m["n_at_capacity"], color="k", lw=1, ls="--",
                           label="C(n) = params")
            ax.axhline(0.5, color="0.6", lw=0.8)
            ax.set_xscale("log")
            ax.set_ylim(0.45, 1.02)
            ax.set_xlabel("positives n")
            ax.set_title(f"{m['model']}: {m['params']} params", fontsize=9)
            ax.grid(True, alpha=0.3)
        axes[0][0].set_ylabel("accuracy (balanced)")
        axes[0][-1].legend(fontsize=7, loc="lower left")
        fig.suptitle(f"in/out discriminators, positives among N = {report['total']}: balanced "
                     "accuracy with held-out negatives (solid), with training negatives "
                     "(dotted)", fontsize=8)
        fig.tight_layout()
        save_figure(fig, path)
