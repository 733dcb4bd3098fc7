"""Figures for the reports, drawn without touching the caller's matplotlib state.

Every plot miakit writes comes from :func:`subplots`: a ``matplotlib.figure.Figure``
bound to its own Agg canvas. No backend is selected (``matplotlib.use`` is never
called), nothing is registered with pyplot, so a caller's interactive session, its
backend and its open figures stay as they were, and no display is needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    """A new figure on an Agg canvas and its axes, as ``pyplot.subplots`` returns them.

    Parameters
    ----------
    nrows, ncols : int
        The grid of axes.
    **kwargs
        ``figsize`` and ``dpi`` go to the figure; the rest (``squeeze``, ``sharex``, ...)
        to ``Figure.subplots``.

    Returns
    -------
    tuple of (matplotlib.figure.Figure, axes)
        Save it with :func:`miakit.io.save_figure`; there is nothing to close.
    """
    fig = figure(figsize=kwargs.pop("figsize", None), dpi=kwargs.pop("dpi", None))
    return fig, fig.subplots(nrows, ncols, **kwargs)


def figure(figsize: tuple[float, float] | None = None, dpi: float | None = None) -> Any:
    """A new, empty figure on its own Agg canvas (lay its axes out with a grid spec).

    Examples
    --------
    >>> from miakit._plotting import figure
    >>> figure(figsize=(4, 3), dpi=100).get_size_inches().tolist()
    [4.0, 3.0]
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def colormap(name: str) -> Any:
    """A registered matplotlib colormap by name (``pyplot.get_cmap`` without pyplot)."""
    import matplotlib

    return matplotlib.colormaps[name]


DISCRETE_LEVELS = 25
"""A column with at most this many distinct values is drawn as discrete (jittered)."""


def _levels(v: np.ndarray) -> np.ndarray | None:
    """The sorted distinct values of ``v`` when it takes few of them, else None."""
    u = np.unique(v)
    return u if 1 < u.size <= DISCRETE_LEVELS else None


def _jittered(v: np.ndarray, levels: np.ndarray | None, rng: np.random.Generator,
              log: bool) -> np.ndarray:
    """``v`` spread by up to 0.3 of the smallest gap between its levels (in log space on a
    log axis), so that the examples sharing a value show as a cloud whose size says how
    many they are, not one dot; continuous values unchanged."""
    if levels is None:
        return v
    if log:
        gap = float(np.diff(np.log10(levels)).min())
        return v * 10.0 ** rng.uniform(-0.3 * gap, 0.3 * gap, v.size)
    gap = float(np.diff(levels).min())
    return v + rng.uniform(-0.3 * gap, 0.3 * gap, v.size)


def _bins(x: np.ndarray, levels: np.ndarray | None, log: bool) -> list[np.ndarray]:
    """Masks of x's levels, or of ten bins of equal counts (quantiles) of a continuous x."""
    if levels is not None:
        return [x == lv for lv in levels]
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, 11)))
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
    return [which == b for b in range(edges.size - 1)]


def _marginal(ax: Any, v: np.ndarray, levels: np.ndarray | None, log: bool,
              horizontal: bool, color: Any) -> None:
    """Counts of ``v`` on a log count axis: the pile at one value and the few examples
    elsewhere both stay readable."""
    if levels is not None:
        counts = np.array([(v == lv).sum() for lv in levels])
        if log:
            width = 10.0 ** (0.25 * np.diff(np.log10(levels)).min())
            lo, hi = levels / width, levels * width
        else:
            half = 0.3 * np.diff(levels).min()
            lo, hi = levels - half, levels + half
        if horizontal:
            ax.barh(lo, counts, height=hi - lo, align="edge", color=color)
        else:
            ax.bar(lo, counts, width=hi - lo, align="edge", color=color)
    else:
        bins: Any = (np.geomspace(v.min(), v.max(), 41) if log and v.min() > 0
                     and v.max() > v.min() else 40)
        ax.hist(v, bins=bins, orientation="horizontal" if horizontal else "vertical",
                color=color)
    if horizontal:
        ax.set_xscale("log")
        ax.set_xlabel("examples", fontsize=7)
    else:
        ax.set_yscale("log")
        ax.set_ylabel("examples", fontsize=7)
    ax.tick_params(labelsize=6)


def scatter_with_marginals(x: Any, y: Any, *, xlabel: str, ylabel: str, log_x: bool = False,
                           title: str = "", trend: tuple[str, str] | None = ("x", "y")
                           ) -> tuple[Any, Any]:
    """A scatter plot of many points that pile up on a few values, made readable.

    Columns with few distinct values (at most :data:`DISCRETE_LEVELS`, e.g. a share of
    8 models) are jittered, each point by up to 0.3 of the gap between levels (the tick
    labels stay the true values); histograms of each column on log count axes sit
    above and to the right, so a pile of most points at one value and the few points
    elsewhere are both visible; the mean of y within each level of x (or each tenth of a
    continuous x) is drawn over the points as the trend.

    Parameters
    ----------
    x, y : array_like [N]
        Finite values (the caller drops the others).
    xlabel, ylabel : str
        The axis labels.
    log_x : bool
        A logarithmic x axis (x must then be positive).
    title : str
        Above the histogram of x.
    trend : (str, str), optional
        Short names of x and y for the trend line's legend ("mean y at each x value");
        None draws no trend.

    Returns
    -------
    tuple of (matplotlib.figure.Figure, matplotlib.axes.Axes)
        The figure (on its own Agg canvas) and its scatter axes, the figure's first.

    Examples
    --------
    >>> import numpy as np
    >>> from miakit._plotting import scatter_with_marginals
    >>> rng = np.random.default_rng(0)
    >>> x = rng.integers(0, 9, 300) / 8
    >>> fig, ax = scatter_with_marginals(x, x * (rng.random(300) < 0.2), xlabel="a",
    ...                                  ylabel="b")
    >>> fig.axes[0] is ax, len(fig.axes), ax.get_xlabel()
    (True, 3, 'a')
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    fig = figure(figsize=(6.4, 5.4), dpi=120)
    grid = fig.add_gridspec(2, 2, width_ratios=(4.5, 1.0), height_ratios=(1.0, 3.8),
                            wspace=0.04, hspace=0.04)
    ax = fig.add_subplot(grid[1, 0])
    top = fig.add_subplot(grid[0, 0], sharex=ax)
    right = fig.add_subplot(grid[1, 1], sharey=ax)
    color = colormap("tab10")(0)
    if log_x:
        ax.set_xscale("log")
    if x.size:
        lx, ly = _levels(x), _levels(y)
        rng = np.random.default_rng(0)  # the same picture on every call
        ax.scatter(_jittered(x, lx, rng, log_x), _jittered(y, ly, rng, False), s=7,
                   alpha=0.35, linewidths=0, color=color)
        if trend is not None:
            masks = [m for m in _bins(x, lx, log_x) if m.any()]
            xs = [float(np.median(x[m])) for m in masks]
            where = (f"at each {trend[0]} value" if lx is not None
                     else f"in each tenth of the examples by {trend[0]}")
            ax.plot(xs, [float(y[m].mean()) for m in masks], "o-", color="tab:red", ms=4,
                    lw=1.3, label=f"mean {trend[1]} {where}")
            ax.legend(fontsize=7, loc="upper left")
        _marginal(top, x, lx, log_x, horizontal=False, color=color)
        _marginal(right, y, ly, False, horizontal=True, color=color)
    else:
        ax.text(0.5, 0.5, "no example has both values", ha="center", va="center",
                transform=ax.transAxes)
    top.tick_params(axis="x", labelbottom=False)
    right.tick_params(axis="y", labelleft=False)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.25)
    top.set_title(title, fontsize=8, loc="left")
    return fig, ax
