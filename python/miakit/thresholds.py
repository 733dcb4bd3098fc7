"""Threshold attacks and baselines (Yeom et al. 2018; Sablayrolles et al. 2018;
docs/methods/thresholds.md).

Every score is member-oriented (larger = more likely a member) and plugs into
:mod:`miakit.metrics`. Scores of models ``[M, N, A, C]`` logits are ``[M, N]``: the
signal averaged over the query views.

- :func:`loss` ``-cross_entropy``; :func:`confidence` ``p_y``; :func:`max_confidence`
  ``max_j p_j``; :func:`hinge` ``z_y - max_{j != y} z_j``; :func:`scaled_confidence`
  ``log p_y - log(1 - p_y)``: one threshold on the target's own output, no shadow model.
- :func:`calibrated` and :func:`calibrated_leave_one_out`: the difficulty-calibrated
  attack ``s_target(x) - mean_OUT s(x)`` (the example's own difficulty, measured by
  reference models that did not train on it, is subtracted).
- :func:`bayes_baseline`: the accuracy of "correct means member",
  ``1/2 + (p_train - p_test) / 2``.
- :func:`max_accuracy_threshold`: the best accuracy of one loss threshold on balanced
  members and non-members (MAT), ``max_tau 1/2 + (F_train(tau) - F_heldout(tau)) / 2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from miakit import _arrays as ar
from miakit import signals
from miakit._validation import (
    check_bool_array,
    check_choice,
    check_float_array,
    check_keep,
    check_real_array,
    check_targets,
)
from miakit.lira import balanced_partners

__all__ = ["loss", "confidence", "max_confidence", "hinge", "scaled_confidence",
           "calibrated", "calibrated_leave_one_out", "bayes_baseline", "BayesBaseline",
           "max_accuracy_threshold", "ThresholdAccuracy", "SIGNAL_SCORES", "SIGNAL_SIGNS"]


def _logits_labels(logits: Any, labels: Any) -> tuple[Any, Any]:
    z = check_float_array(logits, "logits", ndim=(2, 3, 4))
    shape = ar.shape_of(z)
    if len(shape) == 2:  # [N, C]: one model, one view
        z = ar.reshape(z, (1, shape[0], 1, shape[1]))
    elif len(shape) == 3:  # [M, N, C]: one view
        z = ar.reshape(z, (shape[0], shape[1], 1, shape[2]))
    n = ar.shape_of(z)[1]
    lab = ar.as_array(labels, "labels")
    if ar.shape_of(lab) != (n,):
        raise ValueError(f"labels: expected shape ({n},) (one label per example), got "
                         f"{ar.shape_of(lab)}")
    return z, ar.reshape(lab, (n, 1))


SIGNAL_SIGNS = {"loss": -1.0, "confidence": 1.0, "max_confidence": 1.0, "hinge": 1.0,
                "scaled_confidence": 1.0}
"""The sign that turns each signal, averaged over query views, into a threshold attack's
score (larger = more member-like): the loss is negated, the others kept."""


def _signal_score(kind: str, logits: Any, labels: Any) -> np.ndarray:
    sign = SIGNAL_SIGNS[kind]
    squeeze = len(ar.shape_of(ar.as_array(logits, "logits"))) == 2
    z, lab = _logits_labels(logits, labels)
    # the true-class probability in float64, as the audit's streamed signals (RMIA reads
    # it there: float32 rounds it to 0 beyond a logit gap of about 104); the others in
    # the logits' precision
    raw = (signals.compute(z, lab, [kind], dtype="float64")[kind] if kind == "confidence"
           else getattr(signals, kind)(z, lab))
    s = sign * ar.views_mean(raw)
    return s[0] if squeeze else s


def loss(logits: Any, labels: Any) -> np.ndarray:
    """Loss attack: ``-cross_entropy``, averaged over query views.

    Parameters
    ----------
    logits : array [M, N, A, C], [M, N, C] or [N, C]
    labels : array [N] int

    Returns
    -------
    numpy.ndarray [M, N] (or [N] for [N, C] logits) float64

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> mk.thresholds.loss(np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([0, 0])).round(3).tolist()
    [-0.127, -2.127]
    """
    return _signal_score("loss", logits, labels)


def confidence(logits: Any, labels: Any) -> np.ndarray:
    """Confidence attack: the true class's probability ``p_y`` (as :func:`loss`).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> mk.thresholds.confidence(np.array([[0.0, 0.0]]), np.array([1])).tolist()
    [0.5]
    """
    return _signal_score("confidence", logits, labels)


def max_confidence(logits: Any, labels: Any = None) -> np.ndarray:
    """Confidence attack without labels: ``max_j p_j`` (as :func:`loss`).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> mk.thresholds.max_confidence(np.array([[0.0, np.log(3.0)]])).tolist()
    [0.75]
    """
    shape = ar.shape_of(check_float_array(logits, "logits", ndim=(2, 3, 4)))
    n = shape[0] if len(shape) == 2 else shape[1]
    return _signal_score("max_confidence", logits,
                         np.zeros(n, np.int64) if labels is None else labels)


def hinge(logits: Any, labels: Any) -> np.ndarray:
    """Hinge attack: ``z_y - max_{j != y} z_j`` (as :func:`loss`).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> mk.thresholds.hinge(np.array([[3.0, 1.0, 2.0]]), np.array([0])).tolist()
    [1.0]
    """
    return _signal_score("hinge", logits, labels)


def scaled_confidence(logits: Any, labels: Any) -> np.ndarray:
    """LiRA's signal as a threshold attack: ``log p_y - log(1 - p_y)`` (as :func:`loss`).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> mk.thresholds.scaled_confidence(np.array([[1.0, 0.0]]), np.array([0])).tolist()
    [1.0]
    """
    return _signal_score("scaled_confidence", logits, labels)


SIGNAL_SCORES = {"loss": loss, "confidence": confidence, "max_confidence": max_confidence,
                 "hinge": hinge, "scaled_confidence": scaled_confidence}
"""The threshold attacks by name, each ``f(logits, labels) -> scores``."""


def _scores_2d(x: Any, name: str) -> np.ndarray:
    s = np.asarray(ar.to_numpy(check_float_array(x, name, ndim=(1, 2))), dtype=np.float64)
    if not np.isfinite(s).all():
        raise ValueError(f"{name}: expected finite scores, got "
                         f"{int((~np.isfinite(s)).sum())} NaN or inf")
    return s


def calibrated(target_scores: Any, ref_scores: Any, ref_keep: Any) -> np.ndarray:
    """Difficulty-calibrated attack: ``s_target(x) - mean_OUT s(x)``.

    Parameters
    ----------
    target_scores : array [N] float
        The target's member-oriented signal (e.g. :func:`loss` of its logits).
    ref_scores : array [M, N] float
        The same signal of M reference models.
    ref_keep : array [M, N] bool
        Which reference models trained on which example; the mean is over the others.

    Returns
    -------
    numpy.ndarray [N] float64
        NaN where no reference model is OUT (a ``ValueError`` when that is every
        example).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> ref = np.array([[-1.0, -3.0], [-2.0, -5.0]])
    >>> mk.thresholds.calibrated(np.array([-0.5, -1.0]), ref, np.array([[0, 1], [0, 0]])).tolist()
    [1.0, 4.0]
    """
    t = _scores_2d(target_scores, "target_scores")
    r = _scores_2d(ref_scores, "ref_scores")
    if r.ndim != 2 or t.ndim != 1 or r.shape[1] != t.shape[0]:
        raise ValueError(f"ref_scores: expected [M, {t.shape[0]}] to match target_scores "
                         f"[N], got {r.shape} and {t.shape}")
    k = ar.to_numpy(check_keep(ref_keep, r.shape, "ref_keep")).astype(bool)
    out = ~k
    cnt = out.sum(0)
    if not cnt.any():  # every score would be NaN: say so instead
        raise ValueError("ref_keep: expected a reference model OUT of some example, got "
                         "every reference model IN of every example")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_out = np.where(cnt > 0, (r * out).sum(0) / cnt, np.nan)
    return t - mean_out


def calibrated_leave_one_out(scores: Any, keep: Any, targets: Any = None, *,
                             references: str = "balanced") -> np.ndarray:
    """The calibrated attack on every model, with the other models as references.

    ``scores [M, N]`` is a member-oriented signal of all models (e.g. :func:`loss`);
    target k's score of x is ``scores[k, x] - mean of scores[j, x]`` over the models j
    that did not train on x, leaving out k and (``references="balanced"``, default) the
    model of :func:`miakit.lira.balanced_partners`, so the number of references does not
    depend on k's membership.

    Returns
    -------
    numpy.ndarray [K, N] float64
        NaN where an example is left without OUT references (a ``ValueError`` when that
        is every score).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> keep = mk.shadow.balanced_keep(4, 3, seed=0)
    >>> s = np.where(keep, 0.0, -1.0)                     # members: loss 0; others: 1
    >>> mk.thresholds.calibrated_leave_one_out(s, keep)[0].tolist() == np.where(
    ...     keep[0], 1.0, 0.0).tolist()
    True
    """
    references = check_choice(references, "references", ["balanced", "all"])
    s = _scores_2d(scores, "scores")
    if s.ndim != 2:
        raise ValueError(f"scores: expected [M, N], got shape {s.shape}")
    m, n = s.shape
    k = ar.to_numpy(check_keep(keep, (m, n))).astype(bool)
    tg = check_targets(targets, m)
    out = ~k
    total = np.where(out, s, 0.0).sum(0)
    magnitude = np.where(out, np.abs(s), 0.0).sum(0)  # what the total's rounding scales with
    cnt = out.sum(0).astype(np.float64)
    cols = np.arange(n)
    res = np.empty((len(tg), n))
    # targets in blocks: the temporaries are a few [block, N] arrays, not [K, N] ones
    step = max(1, (1 << 22) // max(n, 1))
    for b0 in range(0, len(tg), step):
        tb = tg[b0:b0 + step]
        if references == "balanced":
            part = balanced_partners(k, tb)
            has = part >= 0
            pi = np.where(has, part, 0)
            p_out = has & out[pi, cols]
        else:
            pi, p_out = np.zeros((len(tb), n), np.int64), np.zeros((len(tb), n), bool)
        t_out = out[tb]
        c = cnt - t_out - p_out
        st = s[tb]
        sub = total - st * t_out - s[pi, cols] * p_out
        sub = _resum_cancelled(sub, magnitude, s, out, tb,
                               pi if references == "balanced" else None, p_out)
        with np.errstate(invalid="ignore", divide="ignore"):
            res[b0:b0 + len(tb)] = st - np.where(c > 0, sub / c, np.nan)
    if np.isnan(res).all():
        raise ValueError("keep: no target has a reference model that did not train on any "
                         "of its examples (every score would be NaN)")
    return res


def _resum_cancelled(sub: np.ndarray, magnitude: np.ndarray, s: np.ndarray,
                     out: np.ndarray, tb: np.ndarray, partner: np.ndarray | None,
                     p_out: np.ndarray) -> np.ndarray:
    """Sum again, directly over the references, the entries of ``sub`` ([B, N]: the OUT
    total less the left-out models) that the subtraction may have left with a large
    relative error: those below 2^-20 of the sum of magnitudes behind the total. A
    diverged model whose score dwarfs the others' (a loss of 1e10 among losses of order 1)
    otherwise left its own references' mean with the total's rounding error, as
    miakit.rmia's leave-one-out sums (the same rule) and LiRA's refits would not."""
    bad = np.abs(sub) < magnitude[None] * 2.0 ** -20
    if not bad.any():
        return sub
    sub = sub.copy()
    b_all, n_all = np.nonzero(bad)
    m = s.shape[0]
    step = max(1, (1 << 22) // max(m, 1))  # [M, step] temporaries
    for i0 in range(0, len(b_all), step):
        b, n = b_all[i0:i0 + step], n_all[i0:i0 + step]
        cols = np.arange(len(n))
        use = out[:, n].copy()
        use[tb[b], cols] = False
        if partner is not None:
            ok = p_out[b, n]
            use[partner[b, n][ok], cols[ok]] = False
        sub[b, n] = np.where(use, s[:, n], 0.0).sum(0)
    return sub


def _members(members: Any, shape: tuple[int, ...]) -> np.ndarray:
    y = check_bool_array(members, "members", shape)
    if y.all() or not y.any():
        raise ValueError("members: expected both members and non-members")
    return y


@dataclass(frozen=True)
class BayesBaseline:
    """The "correct means member" baseline.

    Attributes
    ----------
    accuracy : float
        ``1/2 + (p_train - p_test) / 2``: the membership accuracy on balanced members and
        non-members of predicting "member" exactly when the model is correct.
    train_accuracy, test_accuracy : float
        ``p_train`` (on members) and ``p_test`` (on non-members).
    """

    accuracy: float
    train_accuracy: float
    test_accuracy: float


def bayes_baseline(correct: Any, members: Any) -> BayesBaseline:
    """Membership accuracy of "the model is correct, so the example is a member".

    Parameters
    ----------
    correct : array of bool
        Whether the model classifies each example correctly (``mk.signals.correct``).
    members : array of bool, same shape

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> b = mk.thresholds.bayes_baseline([1, 1, 1, 0], [1, 1, 0, 0])
    >>> b.accuracy, b.train_accuracy, b.test_accuracy
    (0.75, 1.0, 0.5)
    """
    c = check_bool_array(correct, "correct")
    y = _members(members, c.shape)
    p_train, p_test = float(c[y].mean()), float(c[~y].mean())
    return BayesBaseline(0.5 + (p_train - p_test) / 2, p_train, p_test)


@dataclass(frozen=True)
class ThresholdAccuracy:
    """The maximum-accuracy loss threshold (MAT).

    Attributes
    ----------
    accuracy : float
        ``max_tau 1/2 + (F_train(tau) - F_heldout(tau)) / 2``, F the loss CDFs: the best
        balanced accuracy of "loss <= tau means member".
    threshold : float
        The tau attaining it (the smallest such loss value; -inf: call nobody a member).
    """

    accuracy: float
    threshold: float


def max_accuracy_threshold(losses: Any, members: Any) -> ThresholdAccuracy:
    """The best membership accuracy of one threshold on the loss (MAT).

    Parameters
    ----------
    losses : array of float
        Per-example losses (smaller = more member-like).
    members : array of bool, same shape

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> r = mk.thresholds.max_accuracy_threshold([0.1, 0.4, 0.2, 0.9], [1, 1, 0, 0])
    >>> r.accuracy, r.threshold
    (0.75, 0.1)
    """
    s = check_real_array(losses, "losses")
    if not np.isfinite(s).all():
        raise ValueError("losses: expected finite values, got NaN or inf")
    y = _members(members, s.shape)
    s, y = s.ravel(), y.ravel()
    order = np.argsort(s, kind="stable")
    ss, ys = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(ss))[0], ss.size - 1]  # ties move together
    f_train = np.cumsum(ys)[last] / ys.sum()
    f_held = np.cumsum(~ys)[last] / (~ys).sum()
    gain = np.r_[0.0, f_train - f_held]
    i = int(np.argmax(gain))
    return ThresholdAccuracy(float(0.5 + gain[i] / 2),
                             float(-np.inf) if i == 0 else float(ss[last[i - 1]]))
