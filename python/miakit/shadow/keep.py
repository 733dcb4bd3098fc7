"""Membership matrices for shadow-model experiments."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from miakit._validation import check_bool_array, check_int, check_seed


def balanced_keep(n_models: int, n_examples: int, seed: int = 0, *,
                  paired: bool = True, strata: Any = None) -> np.ndarray:
    """A keep matrix in which every example is IN for exactly half of the models.

    Parameters
    ----------
    n_models : int
        M, the number of shadow models; must be even and at least 2.
    n_examples : int
        N, the number of examples; at least 1.
    seed : int
        Seed of the generator (``numpy.random.default_rng``); the same seed gives the
        same matrix on every machine.
    paired : bool
        True (default): models come in complementary pairs, model ``2i + 1`` training on
        exactly the examples model ``2i`` does not (each example is IN for model 2i with
        probability 1/2, independently). Leave-one-out attacks then leave out the
        target's partner too, and every example keeps ``M/2 - 1`` references on each
        side whether or not the target trained on it (:func:`miakit.lira.leave_one_out`).
        The first ``2j`` models of a paired matrix are a paired matrix of ``2j`` models.
        False: every column is an independent uniformly random half.
    strata : array_like [N] of int, optional
        Group of every example (e.g. its label). Given, every model trains on exactly
        half of every group (of an odd-sized group, one model of each pair, at random,
        gets the extra example), so a model's training set has the class balance of the
        data: for each pair a uniformly random half of each group goes to model ``2i``
        and the rest to model ``2i + 1``. Needs ``paired=True``.

    Returns
    -------
    numpy.ndarray [M, N] bool
        ``keep[m, n]`` is true when model m trains on example n; each column has
        exactly M/2 true entries, and each model trains on about N/2 examples.

    Examples
    --------
    >>> import miakit as mk
    >>> keep = mk.shadow.balanced_keep(4, 6, seed=0)
    >>> keep.sum(axis=0).tolist()
    [2, 2, 2, 2, 2, 2]
    >>> bool((keep[0] == ~keep[1]).all() and (keep[2] == ~keep[3]).all())
    True
    >>> y = [0, 0, 1, 1, 1, 1]
    >>> mk.shadow.balanced_keep(4, 6, strata=y)[:, [2, 3, 4, 5]].sum(axis=1).tolist()
    [2, 2, 2, 2]
    """
    for name, v in (("n_models", n_models), ("n_examples", n_examples)):
        check_int(v, name)
    check_seed(seed)
    if not isinstance(paired, (bool, np.bool_)):
        raise TypeError(f"paired: expected a bool, got {type(paired).__name__}")
    if check_int(n_models, "n_models", 2, what="an even number of models >= 2") % 2:
        raise ValueError(f"n_models: expected an even number of models >= 2, got {n_models}")
    check_int(n_examples, "n_examples", 1, what="at least 1 example")
    _check_size(n_models, n_examples, paired)
    rng = np.random.default_rng(seed)
    if strata is not None:
        g = np.asarray(strata)
        if g.shape != (n_examples,) or g.dtype.kind not in "iu":
            raise ValueError(f"strata: expected {n_examples} integer group ids (one per "
                             f"example), got shape {g.shape} dtype {g.dtype}")
        if not paired:
            raise ValueError("strata: balancing within groups draws complementary pairs; "
                             "use paired=True")
        first = np.zeros((n_models // 2, n_examples), dtype=bool)
        for grp in np.unique(g):
            idx = np.flatnonzero(g == grp)
            half = len(idx) // 2 + (len(idx) % 2) * (rng.random(n_models // 2) < 0.5)
            order = np.argsort(rng.random((n_models // 2, len(idx))), axis=1)
            for i in range(n_models // 2):
                first[i, idx[order[i, :half[i]]]] = True
        keep = np.empty((n_models, n_examples), dtype=bool)
        keep[0::2] = first
        keep[1::2] = ~first
        return keep
    if paired:
        first = rng.random((n_models // 2, n_examples)) < 0.5
        keep = np.empty((n_models, n_examples), dtype=bool)
        keep[0::2] = first
        keep[1::2] = ~first
        return keep
    # Rank i.i.d. uniforms within each column: the M/2 smallest are IN. Every column is an
    # independent uniformly random half, drawn in one vectorized step.
    order = np.argsort(rng.random((n_models, n_examples)), axis=0)
    keep = np.zeros((n_models, n_examples), dtype=bool)
    np.put_along_axis(keep, order[: n_models // 2], True, axis=0)
    return keep


def _check_size(n_models: int, n_examples: int, paired: bool) -> None:
    """ValueError naming both sizes when drawing the matrix needs more memory than the
    machine has (checked before allocating: numpy's MemoryError names neither)."""
    # the bool matrix, plus the uniforms drawn for it: float64 for half of the models
    # (paired), or float64 and their int64 argsort for all of them
    per_entry = 1 + (4 if paired else 16)
    need = n_models * n_examples * per_entry
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): numpy decides
        total = None
    if total is not None and total > 0 and need > total:
        raise ValueError(f"n_models, n_examples: a keep matrix of {n_models:,} x "
                         f"{n_examples:,} needs about {need / 2**30:,.1f} GiB to draw, more "
                         f"than this machine's {total / 2**30:,.1f} GiB of memory")


def is_paired(keep: np.ndarray) -> bool:
    """Whether models ``2i`` and ``2i + 1`` of a keep matrix are complementary for every i.

    Examples
    --------
    >>> import miakit as mk
    >>> mk.shadow.is_paired(mk.shadow.balanced_keep(6, 10))
    True
    >>> mk.shadow.is_paired(mk.shadow.balanced_keep(6, 10, paired=False))
    False
    """
    k = check_bool_array(keep, "keep")
    if k.ndim != 2 or k.shape[0] < 2 or k.shape[0] % 2:
        return False
    return bool((k[0::2] != k[1::2]).all())
