"""Where the audit's signals come from: a logits array, or a run's model files streamed.

Every attack and every column of the audit reads a few per-model signals of the logits
(LiRA's scaled confidence, the true-class probability, the loss, the hinge, the maximum
confidence, the first view's correctness, loss and logit-gradient norm). For an array of
logits in memory they are computed from it when asked (:class:`ArraySignals`). For a run
on disk, :class:`RunSignals` computes all of them in one pass over the per-model files,
one model at a time, so the audit reads each file once, holds one model's logits at a
time and needs no stacked copy of the logits on disk (docs/guide/report.md). Both give
the same values: the signals are computed per model by the same kernels, and LiRA on
float64 scaled confidences equals LiRA fused on the logits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from miakit import _arrays as ar
from miakit import signals, thresholds
from miakit.thresholds import SIGNAL_SIGNS

# The threshold attacks' scores RunSignals can keep (each its signal's view mean, signed
# as the attack signs it).
_SCORES = ("loss", "confidence", "max_confidence", "hinge")


def first_view_grad_norm(first_view: Any, labels: np.ndarray) -> np.ndarray:
    """``||softmax(z) - e_y||_2`` of first-view logits ``[..., N, C]`` (float64, ``[..., N]``)."""
    return signals.compute(first_view, labels, ["grad_norm"], dtype="float64")["grad_norm"]


class ArraySignals:
    """The signals of a logits array ``[M, N, A, C]``, computed when asked."""

    def __init__(self, logits: Any, labels: Any):
        self.logits = logits
        self.labels = np.asarray(labels)

    def lira_source(self) -> tuple[Any, Any]:
        """What LiRA reads: the logits with their labels (the fused kernels)."""
        return self.logits, self.labels

    def confidence(self) -> Any:
        # float64: RMIA's references' mean probability must not underflow (RunSignals)
        return signals.compute(self.logits, self.labels[:, None], ["confidence"],
                               dtype="float64")["confidence"]

    def score(self, name: str) -> np.ndarray:
        """A threshold attack's scores ``[M, N]`` (mean over query views)."""

        return thresholds.SIGNAL_SCORES[name](self.logits, self.labels)

    def first_view(self) -> tuple[np.ndarray, np.ndarray]:
        """Correctness and loss (float64) ``[M, N]`` of the first query view."""
        z = self.logits[:, :, 0, :]
        return (np.asarray(signals.correct(z, self.labels[None, :])),
                np.asarray(signals.loss(z, self.labels[None, :]), dtype=np.float64))

    def memorization_input(self) -> tuple[Any, str]:
        """Memorization's input: the first view's 0/1 correctness."""
        return self.first_view()[0], "correct"

    def grad_proxy(self) -> np.ndarray:
        """The logit-gradient norm ``[M, N]`` of the first view."""
        return np.asarray(first_view_grad_norm(self.logits[:, :, 0, :], self.labels[None, :]))

    def drop(self, name: str) -> None:
        """Nothing is kept: signals are computed when asked."""


class RunSignals:
    """Every signal of a run, from one pass over its model files.

    Parameters
    ----------
    model : callable
        ``model(m)`` -> model m's logits ``[N, A, C]`` (``run.model_logits``).
    n_models : int
    labels : array [N] int
    confidence, scores : what to keep besides the LiRA, first-view and gradient signals:
        the true-class probabilities, and the threshold attacks' scores by name.
    """

    def __init__(self, model: Callable[[int], Any], n_models: int, labels: Any, *,
                 confidence: bool = True, scores: tuple[str, ...] = (),
                 block_bytes: int = 64 << 20):
        for s in scores:
            if s not in _SCORES:
                raise ValueError(f"scores: expected names among {list(_SCORES)}, got {s!r}")
        self.labels = np.asarray(labels)
        lab = self.labels[:, None]
        first = np.asarray(model(0))
        n, a, c = first.shape
        # float64 signals: RMIA divides by the references' mean true-class probability,
        # which float32 rounds to 0 for logit gaps beyond about 104 (float64: 745; rmia
        # handles exact zeros), and a float32 score ties where float64 still orders
        self._sc = np.empty((n_models, n, a))
        self._q = np.empty((n_models, n, a)) if confidence else None
        self._scores = {s: np.empty((n_models, n)) for s in scores}
        self._loss0 = np.empty((n_models, n))
        self._grad = np.empty((n_models, n))
        self._correct = np.empty((n_models, n), dtype=bool)
        # Every signal of a block in one kernel pass; LiRA's and the true-class
        # probabilities go straight into their arrays, the others (per view) into
        # block-sized buffers whose view means and first views are kept.
        want_q = confidence or "confidence" in scores
        names = ["scaled_confidence", "loss", "correct", "grad_norm"]
        names += [s for s in ("confidence", "max_confidence", "hinge")
                  if s in scores or (s == "confidence" and want_q)]
        # float64 for LiRA's signal, the gradient norm and the true-class probability (the
        # confidence attack's score too, as attacks.SIGNAL_SCORES computes it); the other
        # scores in the logits' precision, as the single calls compute them
        dtypes = {"scaled_confidence": "float64", "grad_norm": "float64"}
        if "confidence" in names:
            dtypes["confidence"] = "float64"
        # Models in blocks of about block_bytes of logits: one kernel call per block (a
        # call per model would pay a parallel region's start-up for every model).
        step = max(1, min(n_models, block_bytes // max(first.nbytes, 1)))
        buf = np.empty((step, n, a, c), dtype=first.dtype)
        del first
        q_block = np.empty((step, n, a)) if want_q and not confidence else None
        for m0 in range(0, n_models, step):
            m1 = min(n_models, m0 + step)
            z = buf[: m1 - m0]
            for k in range(m0, m1):
                z[k - m0] = model(k)
            out = {"scaled_confidence": self._sc[m0:m1]}
            # the confidence goes to self._q when kept, else to the block's scratch buffer
            if want_q and confidence:
                assert self._q is not None  # allocated above with confidence
                out["confidence"] = self._q[m0:m1]
            elif want_q:
                assert q_block is not None  # allocated above for want_q without confidence
                out["confidence"] = q_block[: m1 - m0]
            got = signals.compute(z, lab, names, dtype=dtypes, out=out)
            for s, res in self._scores.items():
                res[m0:m1] = SIGNAL_SIGNS[s] * ar.views_mean(got[s])
            self._correct[m0:m1] = got["correct"][:, :, 0]
            self._loss0[m0:m1] = got["loss"][:, :, 0]
            self._grad[m0:m1] = got["grad_norm"][:, :, 0]

    def lira_source(self) -> tuple[np.ndarray, None]:
        return self._sc, None

    def confidence(self) -> np.ndarray:
        if self._q is None:
            raise ValueError("confidence: not computed for this audit")
        return self._q

    def score(self, name: str) -> np.ndarray:
        return self._scores[name]

    def drop(self, name: str) -> None:
        """Forget a signal no attack reads any more (``"confidence"`` or a score)."""
        if name == "confidence":
            self._q = None
        else:
            self._scores.pop(name, None)

    def first_view(self) -> tuple[np.ndarray, np.ndarray]:
        return self._correct, self._loss0

    def memorization_input(self) -> tuple[np.ndarray, str]:
        return self._correct, "correct"

    def grad_proxy(self) -> np.ndarray:
        return self._grad


LOGIT_ATTACKS = ("lira_online", "lira_offline", "rmia_online", "rmia_offline",
                 "calibrated_loss", "loss", "confidence", "max_confidence", "hinge")
"""The attacks a run of logits supports (besides lira_curvature, which needs heads)."""


class StoredSignals:
    """The signals of a run that kept one signal per example (``run.signal``).

    From a loss ``l`` or a probability ``p = exp(-l)`` of the true class everything the
    attacks read follows: LiRA's scaled confidence ``log p - log(1 - p)`` (computed as
    ``-l - log(-expm1(-l))``; ``p`` is kept away from 0 and 1 by the smallest float64
    steps, so a loss of exactly 0 gives a large finite score), the probability for RMIA
    and the confidence attack, and the loss. A score (larger = more member-like) is only
    LiRA's signal. What needs all the logits (hinge, maximum confidence, correctness, the
    logit-gradient norm) is not available.
    """

    ATTACKS = {"loss": LOGIT_ATTACKS[:7], "confidence": LOGIT_ATTACKS[:7],
               "score": ("lira_online", "lira_offline")}

    def __init__(self, model: Callable[[int], Any], n_models: int, kind: str):
        first = np.asarray(model(0))
        n, a = first.shape[:2]
        x = np.empty((n_models, n, a))
        for m in range(n_models):
            x[m] = np.asarray(model(m))[..., 0]
        self.kind = kind
        self.available = self.ATTACKS[kind]
        self._q = self._loss = None
        if kind == "score":
            self._sc = x
            return
        tiny = np.finfo(np.float64).tiny
        if kind == "loss":
            loss = np.maximum(x, tiny)  # p < 1
            self._q = np.exp(-loss)
        else:
            self._q = np.clip(x, tiny, 1.0 - np.finfo(np.float64).epsneg)
            loss = -np.log(self._q)
        self._sc = -loss - np.log(-np.expm1(-loss))
        self._loss = loss

    def lira_source(self) -> tuple[np.ndarray, None]:
        return self._sc, None

    def confidence(self) -> np.ndarray:
        if self._q is None:
            raise ValueError("confidence: a run of scores holds no probabilities")
        return self._q

    def score(self, name: str) -> np.ndarray:
        if name != "loss" or self._loss is None:
            raise ValueError(f"attacks: {name!r} needs the logits; this run holds only "
                             f"{self.kind} values")
        return -self._loss.mean(-1)  # the loss attack's score, mean over query views

    def drop(self, name: str) -> None:
        """Nothing to forget: the stored values are small next to logits."""

    def first_view(self) -> tuple[None, np.ndarray | None]:
        """No correctness without logits; the first view's loss when there is one."""
        return None, None if self._loss is None else self._loss[:, :, 0]

    def memorization_input(self) -> tuple[np.ndarray, str] | None:
        """Memorization of the true class's probability (first view), when known."""
        return None if self._q is None else (self._q[:, :, 0], "prob")

    def grad_proxy(self) -> None:
        return None
