"""The inputs and settings of ``train_heads``, checked and resolved before any training.

:func:`_check_inputs` turns features, labels and keep into the arrays a run stores;
:func:`_resolve_config` picks the optimizer and the defaults that depend on it and
returns the settings a run records (part of its fingerprint), with the DP-SGD settings
and their epsilon (:func:`_resolve_dp`). Checks of arguments only: no torch and no
device are needed here; the training is in ``_head_trainer``, the driver in ``heads``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from miakit._validation import (
    check_choice,
    check_features,
    check_int,
    check_keep_matrix,
    check_real,
    check_run_labels,
)

_HEADS = ("linear", "mlp")
_OPTIMIZERS = ("auto", "lbfgs", "adam", "sgd")
_MAX_LOGITS = 2**36  # values of the logits [M, N, A, C] (256 GiB in float32): beyond, refused
_AUTO_CHUNK_RUN = 16  # heads per chunk when writing into a run: bounds the work a kill loses


def _check_inputs(features: Any, labels: Any, keep: Any, n_classes: int | None):
    x = check_features(features)  # the form the run stores and digests
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(f"features: expected finite values, got NaN or inf in {len(rows)} "
                         f"examples (first: example {int(rows[0])})")
    keep_b = check_keep_matrix(keep)
    if keep_b.shape[1] != x.shape[0]:
        raise ValueError(f"keep: expected {x.shape[0]} columns (one per example in features), "
                         f"got shape {keep_b.shape}")
    lab = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
    given = n_classes is not None
    if n_classes is None:
        if lab.dtype.kind not in "iu" or lab.size == 0:
            check_run_labels(lab, x.shape[0], 2)  # raises the integer/shape message
        n_classes = max(2, int(lab.max()) + 1)
    else:
        check_int(n_classes, "n_classes", 2)
    y = check_run_labels(lab, x.shape[0], int(n_classes))
    n_logits = keep_b.shape[0] * x.shape[0] * x.shape[1] * int(n_classes)
    if n_logits > _MAX_LOGITS:
        name = "n_classes" if given else "labels"
        raise ValueError(f"{name}: {int(n_classes)} classes make logits [M, N, A, C] of "
                         f"{n_logits} values, more than the {_MAX_LOGITS} a run may hold")
    empty = np.flatnonzero(keep_b.sum(1) == 0)
    if len(empty):
        raise ValueError(f"keep: heads {empty.tolist()[:10]} have no training example")
    return x, y, keep_b, int(n_classes)


def _resolve_dp(dp: Any) -> dict | None:
    """Validated DP-SGD settings with the accountant's epsilon, or None."""
    if dp is None:
        return None
    if not isinstance(dp, dict):
        raise TypeError(f"dp: expected a dict of DP-SGD settings, got {type(dp).__name__}")
    need = ("noise_multiplier", "clip", "sample_rate", "steps")
    allowed = set(need) | {"delta", "accountant"}
    missing = [k for k in need if k not in dp]
    extra = sorted(set(dp) - allowed)
    if missing or extra:
        raise ValueError(f"dp: expected the keys {list(need)} (and optionally delta, "
                         f"accountant), got missing {missing}, unknown {extra}")
    from miakit import bounds

    for key in ("noise_multiplier", "clip"):
        check_real(dp[key], f"dp[{key!r}]", 0.0, open_lo=True, what="a positive finite number")
    out = {"noise_multiplier": float(dp["noise_multiplier"]), "clip": float(dp["clip"]),
           "sample_rate": dp["sample_rate"], "steps": dp["steps"],
           "delta": dp.get("delta", 1e-5), "accountant": dp.get("accountant", "pld")}
    try:
        eps = bounds.dpsgd_epsilon(out["noise_multiplier"], out["sample_rate"], out["steps"],
                                   out["delta"], out["accountant"])
    except ValueError as exc:
        raise ValueError(f"dp: {exc}") from exc
    out.update(sample_rate=float(out["sample_rate"]), steps=int(out["steps"]),
               delta=float(out["delta"]), epsilon=float(eps),
               mechanism="DP-SGD: Poisson sampling, per-example clipping, Gaussian noise")
    return out


def _resolve_config(head, hidden, optimizer, epochs, lr, weight_decay, batch_size, tol,
                    warm_start, n_classes, seed, logits_dtype, heads_per_chunk, to_run, m,
                    dp=None):
    check_choice(head, "head", _HEADS)
    check_choice(optimizer, "optimizer", _OPTIMIZERS)
    dp_cfg = _resolve_dp(dp)
    if dp_cfg is not None:
        if optimizer == "lbfgs" or batch_size is not None:
            raise ValueError("dp: DP-SGD samples its own batches and takes first-order steps; "
                             "leave optimizer='auto' (or 'sgd'/'adam') and batch_size=None")
        if optimizer == "auto":
            optimizer = "sgd"
    if optimizer == "auto":
        optimizer = "lbfgs" if head == "linear" and batch_size is None else "adam"
    if optimizer == "lbfgs" and (head != "linear" or batch_size is not None):
        raise ValueError("optimizer='lbfgs' trains linear heads on full batches only; use "
                         "optimizer='adam' for MLP heads or minibatches")
    if batch_size is not None:
        check_int(batch_size, "batch_size", 1, what="a positive int or None")
    if epochs is None:
        epochs = 500 if optimizer == "lbfgs" else 100
    if lr is None:
        lr = {"adam": 1e-3, "sgd": 0.1}.get(optimizer, 1.0)
    for name, v in (("epochs", epochs), ("hidden", hidden)):
        check_int(v, name, 1)
    for name, v in (("lr", lr), ("weight_decay", weight_decay), ("tol", tol)):
        check_real(v, name, 0.0, what="a finite non-negative number")
    check_real(lr, "lr", 0.0, open_lo=True, what="a positive learning rate")
    check_choice(logits_dtype, "logits_dtype", ("float32", "float16"))
    if heads_per_chunk is None:
        heads_per_chunk = min(m, _AUTO_CHUNK_RUN) if to_run else m
    check_int(heads_per_chunk, "heads_per_chunk", 1, what="a positive int")
    return {"trainer": "train_heads", "head": head, "hidden": int(hidden) if head == "mlp"
            else None, "optimizer": optimizer, "epochs": int(epochs),
            "lr": None if optimizer == "lbfgs" else float(lr),
            "weight_decay": float(weight_decay), "batch_size": None if batch_size is None
            else int(batch_size), "tol": float(tol) if optimizer == "lbfgs" else None,
            "warm_start": bool(warm_start) if optimizer == "lbfgs" else None,
            "n_classes": int(n_classes), "seed": int(seed),
            "heads_per_chunk": int(min(heads_per_chunk, m)), **({"dp": dp_cfg} if dp_cfg
                                                                 else {})}
