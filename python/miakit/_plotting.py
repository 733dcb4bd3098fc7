"""Figures for the reports, drawn without touching the caller's matplotlib state.

Every plot miakit writes comes from :func:`subplots`: a ``matplotlib.figure.Figure``
bound to its own Agg canvas. No backend is selected (``matplotlib.use`` is never
called), nothing is registered with pyplot, so a caller's interactive session, its
backend and its open figures stay as they were, and no display is needed.
"""

from __future__ import annotations

from typing import Any


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
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=kwargs.pop("figsize", None), dpi=kwargs.pop("dpi", None))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def colormap(name: str) -> Any:
    """A registered matplotlib colormap by name (``pyplot.get_cmap`` without pyplot)."""
    import matplotlib

    return matplotlib.colormaps[name]
