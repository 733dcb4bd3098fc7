"""The Likelihood Ratio Attack, LiRA (Carlini et al. 2022; docs/methods/lira.md).

For each example and query augmentation, the shadow models that trained on the example
(IN) and those that did not (OUT) give two distributions of the target signal, fitted
as Gaussians. A target model's observation is scored by the likelihood ratio (online)
or by how far it lies above the OUT distribution (offline). Larger score = more likely
a member.

Observations can be given as precomputed scores ``[M, N, A]`` or, with ``labels=``, as
raw logits ``[M, N, A, C]``: the fused path computes the scaled confidence tile by tile
inside the kernel and never stores the ``[M, N, A]`` scores.

Observations of any finite magnitude are accepted. Beyond 2^256 (about 1.2e77), where
the sums of squared deviations could overflow float64, they are divided by a power of
two before the statistics are taken (which changes no digit), and the results are scaled
back; from logits, such signal values make the call compute and store the scores first.
Scores spanning more than float64's squares hold at once (above about 1e209 beside
scores of order 1) are refused rather than given clamped spreads (docs/methods/lira.md).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from miakit import _C
from miakit import _arrays as ar
from miakit._lira_fit import LiraFit
from miakit._lira_risk import ShadowModelsNeeded, hellinger, privacy_score, shadow_models_needed
from miakit._lira_scale import (
    _row_exponents,
    _scale_exponent,
    _scaled,
)
from miakit._options import (
    CENTERS,
    MODES,
    OFFLINE,
    REFERENCES,
    SIGNALS,
    VARIANCES,
)
from miakit._status import message, raise_for_status
from miakit._validation import (
    check_choice,
    check_float_array,
    check_keep,
    check_real,
    check_targets,
)
from miakit.signals import prepare_logits_labels

__all__ = [
    "LiraFit",
    "fit",
    "score",
    "leave_one_out",
    "balanced_partners",
    "hellinger",
    "privacy_score",
    "shadow_models_needed",
    "ShadowModelsNeeded",
]

_ON_EMPTY = ("raise", "nan")
_LIRA_SIGNALS = ("scaled_confidence", "hinge", "loss", "confidence")

class ClampedSpreadWarning(UserWarning):
    """Some standard deviations were below ``min_std`` and were clamped to it.

    ``n_clamped`` holds how many, so callers need not read the count out of the message.
    """

    def __init__(self, text: str, n_clamped: int = 0) -> None:
        super().__init__(text)
        self.n_clamped = int(n_clamped)


# how errors name the logits, which come in as shadow_scores (with labels)
_LOGITS_ARG = "shadow_scores (logits)"


def _prepare_source(data: Any, keep: Any, labels: Any, signal: str):
    """Validate shadow data and keep; return (data, labels or None, keep, M, N, A)."""
    check_choice(signal, "signal", _LIRA_SIGNALS)  # checked even when unused (no labels)
    if labels is None:
        data = check_float_array(data, "shadow_scores", ndim=(2, 3))
        shape = ar.shape_of(data)
        if len(shape) == 2:
            data = ar.reshape(data, shape + (1,))
        labels_k = None
    else:
        # logits come in as shadow_scores (with labels): errors name that argument
        data = check_float_array(data, _LOGITS_ARG, ndim=(3, 4))
        shape = ar.shape_of(data)
        if len(shape) == 3:  # [M, N, C]: one augmentation
            data = ar.reshape(data, (shape[0], shape[1], 1, shape[2]))
        shape = ar.shape_of(data)
        data, labels_k = prepare_logits_labels(data, labels, lead_shape=(shape[1],),
                                               name=_LOGITS_ARG)
        lab_shape = ar.shape_of(ar.as_array(labels, "labels"))
        if len(lab_shape) != 1 or lab_shape[0] != shape[1]:
            raise ValueError(
                f"labels: expected shape ({shape[1]},) (one label per example), got {lab_shape}"
            )
    m, n, a = ar.shape_of(data)[:3]
    if m < 1 or n < 1 or a < 1:
        raise ValueError(f"shadow_scores: expected non-empty [M, N, A], got "
                         f"{ar.shape_of(data)}")
    keep = check_keep(keep, (m, n))
    keep = ar.match_device(keep, data, "keep", "shadow data")
    return data, labels_k, keep, m, n, a


def _raise_status(st: dict, n_classes: int | None) -> None:
    checks = {
        # the fused path: the signal kernel's counts of logits rows and label rows
        "nonfinite_logits": message("nonfinite_rows", _LOGITS_ARG),
        "bad_label": message("bad_label", "labels", n_classes=n_classes or 0),
    }
    # NaN/inf scores; from logits the count is of signal values beyond _MAX_ABS instead,
    # which the caller rescales
    if n_classes is None:
        checks["nonfinite_scores"] = message("nonfinite", "shadow_scores")
    raise_for_status(st, checks)


def _signal_scores(data: Any, labels_k: Any, signal: str) -> Any:
    """The signal of logits [M, N, A, C] as float64 scores [M, N, A]: what the fused path
    computes tile by tile, stored, for the path that rescales observations beyond
    ``_MAX_ABS`` (the logits and labels were checked by the fused run)."""
    m, n, a = ar.shape_of(data)[:3]
    out = ar.empty_like_device(data, (m, n, a), "float64")
    lab = ar.broadcast_to(ar.reshape(labels_k, (1, n, 1)), (m, n, a))
    _C.signal(ar.kernel_arg(data), ar.kernel_arg(lab), ar.kernel_arg(out), SIGNALS[signal],
              ar.stream_of(data))
    return out


def fit(
    shadow_scores: Any,
    keep: Any,
    center: str = "median",
    variance: str = "per_example",
    min_std: float = 1e-6,
    *,
    labels: Any = None,
    signal: str = "scaled_confidence",
) -> LiraFit:
    """Fit the IN and OUT Gaussians of every example and augmentation.

    Parameters
    ----------
    shadow_scores : array [M, N, A] (or [M, N]) float, or logits [M, N, A, C] with ``labels``
        Observations of M shadow models on N examples under A augmentations.
    keep : array [M, N] bool
        ``keep[m, n]`` is true when shadow model m trained on example n.
    center : {"median", "mean"}
        Centre of each distribution; the median is the reference code's choice.
    variance : {"per_example", "global"}
        ``"per_example"``: population std (ddof 0, around the example's mean) per example
        and augmentation. ``"global"``: one pooled value per side, the square root of the
        sum of squared deviations from each example's own mean over the total count
        (recommended below 64 shadow models).
    min_std : float
        Spreads below this are clamped to it; the count is in ``n_clamped``.
    labels : array [N] int, optional
        Given, ``shadow_scores`` are logits and the signal is computed in the kernel.
    signal : str
        Signal computed from logits: "scaled_confidence" (default), "hinge", "loss" or
        "confidence".

    Returns
    -------
    LiraFit
        An example no shadow model trained on (or every one did) has NaN IN (OUT)
        statistics: :func:`score` handles it as its ``on_empty`` says.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> keep = mk.shadow.balanced_keep(8, 5, seed=0)
    >>> s = rng.normal(size=(8, 5, 2)) + 2.0 * keep[:, :, None]
    >>> f = mk.lira.fit(s, keep)
    >>> f.mu_in.shape, f.n_in.tolist()
    ((5, 2), [4, 4, 4, 4, 4])
    """
    center = check_choice(center, "center", list(CENTERS))
    variance = check_choice(variance, "variance", list(VARIANCES))
    min_std = check_real(min_std, "min_std", 0.0, open_lo=True, what="a positive finite float")
    data, labels_k, keep_u8, m, n, a = _prepare_source(shadow_scores, keep, labels, signal)
    mu_in, mu_out, sd_in, sd_out = (ar.empty_like_device(data, (n, a), "float64") for _ in range(4))
    n_in, n_out = (ar.empty_like_device(data, (n,), "int64") for _ in range(2))

    def run(source: Any, labels_arg: Any) -> dict:
        st = _C.lira_fit(
            ar.kernel_arg(source), None if labels_arg is None else ar.kernel_arg(labels_arg),
            ar.kernel_arg(keep_u8), *(ar.kernel_arg(t) for t in (mu_in, mu_out, sd_in, sd_out)),
            ar.kernel_arg(n_in), ar.kernel_arg(n_out), CENTERS[center],
            SIGNALS[signal], ar.stream_of(source),
        )
        _raise_status(st, ar.shape_of(source)[-1] if labels_arg is not None else None)
        return st

    k = (_scale_exponent(data, name="shadow_scores", min_std=min_std)
         if labels_k is None else 0)
    st = run(_scaled(data, k), labels_k)
    if labels_k is not None and st["nonfinite_scores"]:  # signal values beyond _MAX_ABS
        scores = _signal_scores(data, labels_k, signal)
        k = _scale_exponent(scores, name=_LOGITS_ARG, min_std=min_std)
        run(_scaled(scores, k), None)
    if variance == "global":  # pooled before scaling back: the squares stay finite
        sd_in, sd_out = _pooled(sd_in, n_in), _pooled(sd_out, n_out)
    if k:
        mu_in, mu_out, sd_in, sd_out = (_scaled(t, -k) for t in (mu_in, mu_out, sd_in, sd_out))
    n_clamped = 0
    clamped = []
    for sd, cnt in ((sd_in, n_in), (sd_out, n_out)):
        has = cnt[:, None] > 0
        low = (sd < min_std) & has
        n_clamped += int(low.sum())
        clamped.append(ar.namespace(sd).where(low, min_std, sd))
    return LiraFit(mu_in, mu_out, clamped[0], clamped[1], n_in, n_out, center, variance,
                   float(min_std), n_clamped)


def _pooled(sd: Any, counts: Any) -> Any:
    """One pooled spread per side: sqrt(sum of per-column M2 / total count), as [N, A]."""
    sd_np = ar.to_numpy(sd)
    cnt = np.broadcast_to(ar.to_numpy(counts).astype(np.float64)[:, None], sd_np.shape)
    valid = cnt > 0
    total = cnt[valid].sum()
    value = np.sqrt((sd_np[valid] ** 2 * cnt[valid]).sum() / total) if total > 0 else np.nan
    return ar.namespace(sd).full_like(sd, float(value))


def score(
    target_scores: Any,
    fit: LiraFit,
    mode: str = "online",
    offline: str = "one_sided",
    *,
    on_empty: str = "raise",
) -> Any:
    """Score a target model's observations against a :class:`LiraFit`.

    Parameters
    ----------
    target_scores : array [N, A] (or [N]) float
        The target model's observations, in the same signal as the fit.
    fit : LiraFit
        From :func:`fit`.
    mode : {"online", "offline"}
        Online uses IN and OUT Gaussians:
        ``mean_a [log N(s; mu_in, sigma_in^2) - log N(s; mu_out, sigma_out^2)]``.
        Offline uses OUT only.
    offline : {"one_sided", "two_sided"}
        Offline test: ``mean_a log Phi((s - mu_out) / sigma_out)`` (the paper, default) or
        ``-mean_a log N(s; mu_out, sigma_out^2)`` (the reference code).
    on_empty : {"raise", "nan"}
        An example without IN (online) or OUT models raises, or scores NaN.

    Returns
    -------
    array [N] float64
        Larger means more likely a member.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> keep = mk.shadow.balanced_keep(16, 50, seed=0)
    >>> s = rng.normal(size=(16, 50, 1)) + 3.0 * keep[:, :, None]
    >>> f = mk.lira.fit(s[1:], keep[1:])
    >>> sc = mk.lira.score(s[0], f)
    >>> bool(sc[keep[0]].mean() > sc[~keep[0]].mean())
    True
    """
    mode = check_choice(mode, "mode", list(MODES))
    offline = check_choice(offline, "offline", list(OFFLINE))
    on_empty = check_choice(on_empty, "on_empty", _ON_EMPTY)
    if not isinstance(fit, LiraFit):
        raise TypeError(f"fit: expected a LiraFit from miakit.lira.fit, got {type(fit).__name__}")
    t = check_float_array(target_scores, "target_scores", ndim=(1, 2))
    n, a = ar.shape_of(fit.mu_in)
    if len(ar.shape_of(t)) == 1:
        t = ar.reshape(t, (ar.shape_of(t)[0], 1))
    if ar.shape_of(t) != (n, a):
        raise ValueError(f"target_scores: expected shape ({n}, {a}) to match the fit, "
                         f"got {ar.shape_of(t)}")
    t = ar.match_device(t, fit.mu_in, "target_scores", "fit")
    _check_empty_fit(fit, mode, on_empty)
    out = ar.empty_like_device(fit.mu_in, (n,), "float64")
    stats = (fit.mu_in, fit.mu_out, fit.sigma_in, fit.sigma_out)
    rows = _row_exponents(t, *stats)
    if rows is not None:  # the spreads stay positive however small (min_std may be tiny)
        xp = ar.namespace(fit.mu_in)
        tiny = float(np.finfo(np.float64).tiny)
        scale = xp.asarray(np.ldexp(1.0, -rows)[:, None])
        t = xp.astype(t, xp.float64) * scale
        stats = (stats[0] * scale, stats[1] * scale,
                 xp.clip(stats[2] * scale, tiny), xp.clip(stats[3] * scale, tiny))
    st = _C.lira_score(ar.kernel_arg(t), *(ar.kernel_arg(x) for x in stats),
                       ar.kernel_arg(out), MODES[mode], OFFLINE[offline], ar.stream_of(t))
    raise_for_status(st, {"nonfinite_scores": message("nonfinite", "target_scores")})
    if rows is not None and mode == "offline" and offline == "two_sided":
        # -log N(s; mu, sd) grows by log(2^k) with each example's scale
        out += xp.asarray(rows * math.log(2.0))
    return out


def _check_empty_fit(fit: LiraFit, mode: str, on_empty: str) -> None:
    if on_empty != "raise":
        return
    no_out = int((fit.n_out == 0).sum())
    no_in = int((fit.n_in == 0).sum()) if mode == "online" else 0
    if no_out or no_in:
        raise ValueError(_empty_message(no_in, no_out, mode, None))


def _empty_message(no_in: int, no_out: int, mode: str, target: int | None) -> str:
    parts = []
    if no_in:
        parts.append(f"{no_in} examples have no IN model")
    if no_out:
        parts.append(f"{no_out} examples have no OUT model")
    where = f" once target model {target} is left out" if target is not None else ""
    need = "an IN and an OUT model" if mode == "online" else "an OUT model"
    return (f"keep: {mode} LiRA needs {need} for every example, but "
            f"{' and '.join(parts)}{where}; train more shadow models, or pass on_empty='nan' "
            "to score those examples NaN")


def leave_one_out(
    shadow_scores: Any,
    keep: Any,
    targets: Any = None,
    mode: str = "online",
    offline: str = "one_sided",
    center: str = "median",
    variance: str = "per_example",
    min_std: float = 1e-6,
    *,
    labels: Any = None,
    signal: str = "scaled_confidence",
    on_empty: str = "raise",
    references: str = "balanced",
) -> Any:
    """Attack each target model with the statistics of the other models.

    All targets come from one pass over the data: each column's running sums and sorted
    values give the statistics without a model in O(1), so evaluating all M targets
    costs little more than one.

    By default (``references="balanced"``) every example's references are the same in
    number whether or not the target trained on it: besides the target, one model from
    the *other* side of the example is left out, so an example IN for ``n_in`` and OUT
    for ``n_out`` of the M models is always scored against ``n_in - 1`` IN and
    ``n_out - 1`` OUT references. Leaving out the target alone (``references="all"``)
    gives a member one IN reference fewer and a non-member one OUT reference fewer; a
    Gaussian fitted to fewer points gives a new point a lower likelihood on average, so
    members score systematically lower and an attack on data without any membership
    signal reads *below* chance (AUC 0.0 at M = 4, 0.42 at M = 8, per-example spreads).
    The model left out from the other side is the target's pair partner ``k ^ 1`` where
    it is on that side (always, for keep matrices of
    :func:`miakit.shadow.balanced_keep`, drawn in complementary pairs), else the first
    model after the target, cyclically, that is on that side; see :func:`balanced_partners`.

    Parameters
    ----------
    shadow_scores : array [M, N, A] (or [M, N]) float, or logits [M, N, A, C] with ``labels``
        Observations of all M models.
    keep : array [M, N] bool
        Training membership of every model.
    targets : sequence of int, optional
        Models to attack (default: all M).
    mode, offline : str
        As in :func:`score`.
    center, variance, min_std : str, str, float
        As in :func:`fit`; the spread floor's hits are reported by a
        ``ClampedSpreadWarning``.
    labels : array [N] int, optional
        Given, ``shadow_scores`` are logits and the signal is computed inside the kernel
        (fused: the ``[M, N, A]`` scores are never stored).
    signal : str
        Signal computed from logits (see :func:`fit`).
    on_empty : {"raise", "nan"}
        An example left without IN (online) or OUT models raises, or scores NaN.
    references : {"balanced", "all"}
        ``"balanced"`` (default): leave out the target and one model from the other side
        of each example, so the reference counts do not depend on the target's
        membership (unbiased). ``"all"``: leave out the target only (biased against
        members at small M; kept for comparison).

    Returns
    -------
    array [K, N] float64
        Row k scores target ``targets[k]`` on every example; judge it with
        ``keep[targets]`` as the membership truth.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> keep = mk.shadow.balanced_keep(16, 40, seed=0)
    >>> s = rng.normal(size=(16, 40, 2)) + 3.0 * keep[:, :, None]
    >>> loo = mk.lira.leave_one_out(s, keep)
    >>> loo.shape, mk.metrics.auc(loo, keep) > 0.9
    ((16, 40), True)
    """
    mode = check_choice(mode, "mode", list(MODES))
    offline = check_choice(offline, "offline", list(OFFLINE))
    center = check_choice(center, "center", list(CENTERS))
    variance = check_choice(variance, "variance", list(VARIANCES))
    on_empty = check_choice(on_empty, "on_empty", _ON_EMPTY)
    references = check_choice(references, "references", list(REFERENCES))
    min_std = check_real(min_std, "min_std", 0.0, open_lo=True, what="a positive finite float")
    data, labels_k, keep_u8, m, n, a = _prepare_source(shadow_scores, keep, labels, signal)
    tg = check_targets(targets, m)
    if on_empty == "raise":
        _check_empty_loo(keep_u8, tg, mode, references)
    # targets are host indices chosen by the caller; they follow the data to its device
    tg_dev = ar.namespace(data).asarray(tg)
    out = ar.empty_like_device(data, (len(tg), n), "float64")

    def run(source: Any, labels_arg: Any, k: int) -> dict:
        # min_std in the units of the scaled observations (kept positive however small)
        floor = max(min_std * 2.0 ** -k, float(np.finfo(np.float64).tiny)) if k else min_std
        st = _C.lira_loo(
            ar.kernel_arg(source), None if labels_arg is None else ar.kernel_arg(labels_arg),
            ar.kernel_arg(keep_u8), ar.kernel_arg(tg_dev), ar.kernel_arg(out),
            CENTERS[center], VARIANCES[variance], MODES[mode], OFFLINE[offline],
            REFERENCES[references], floor,
            SIGNALS[signal], ar.stream_of(source),
        )
        _raise_status(st, ar.shape_of(source)[-1] if labels_arg is not None else None)
        return st

    k = (_scale_exponent(data, name="shadow_scores", min_std=min_std)
         if labels_k is None else 0)
    st = run(_scaled(data, k), labels_k, k)
    if labels_k is not None and st["nonfinite_scores"]:  # signal values beyond _MAX_ABS
        scores = _signal_scores(data, labels_k, signal)
        k = _scale_exponent(scores, name=_LOGITS_ARG, min_std=min_std)
        st = run(_scaled(scores, k), None, k)
    if k and mode == "offline" and offline == "two_sided":
        out += k * math.log(2.0)  # -log N(s; mu, sd) grows by log(2^k) with the scale
    n_clamped = int(sum(st["clamped"]))
    if n_clamped:
        warnings.warn(
            ClampedSpreadWarning(
                f"{n_clamped} standard deviations were below min_std={min_std:g} and were "
                "clamped (too few shadow models on one side, or identical observations)",
                n_clamped),
            stacklevel=2)
    return out


def _check_empty_loo(keep_u8: Any, tg: np.ndarray, mode: str, references: str) -> None:
    keep_np = ar.to_numpy(keep_u8).astype(bool)
    n_in = keep_np.sum(axis=0)
    n_out = keep_np.shape[0] - n_in
    for t in tg:
        kin = keep_np[t]
        if references == "balanced":
            # one model leaves each side (the target, and its partner from the other side)
            ref_in, ref_out = n_in - 1, n_out - 1
        else:
            ref_in, ref_out = n_in - kin, n_out - ~kin
        no_in = int((ref_in <= 0).sum()) if mode == "online" else 0
        no_out = int((ref_out <= 0).sum())
        if no_in or no_out:
            raise ValueError(_empty_message(no_in, no_out, mode, int(t)))


def balanced_partners(keep: Any, targets: Any = None) -> np.ndarray:
    """The model balanced leave-one-out leaves out beside each target, per example.

    For target k and example n: model ``k ^ 1`` (the target's pair partner) when its
    membership of n differs from the target's, else the first model after k, cyclically,
    whose membership differs; -1 when every model is on the target's side.

    Parameters
    ----------
    keep : array [M, N] bool
    targets : sequence of int, optional
        Default: all M models.

    Returns
    -------
    numpy.ndarray [K, N] int64

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> keep = mk.shadow.balanced_keep(4, 3, seed=0)      # complementary pairs (0,1), (2,3)
    >>> mk.lira.balanced_partners(keep).tolist()
    [[1, 1, 1], [0, 0, 0], [3, 3, 3], [2, 2, 2]]
    """
    arr = ar.as_array(keep, "keep")
    shape = ar.shape_of(arr)
    if len(shape) != 2:
        raise ValueError(f"keep: expected a 2-D [M, N] matrix, got shape {shape}")
    if 0 in shape:
        raise ValueError(f"keep: expected at least one model and one example, got shape "
                         f"{shape}")
    keep_u8 = ar.to_numpy(check_keep(arr, (shape[0], shape[1])))
    tg = check_targets(targets, shape[0])
    # the kernels' own rule (csrc/include/miakit/lira_math.h, balanced_partner)
    return _C.balanced_partners(keep_u8, tg)
