"""What a long job is doing, on stderr: a tqdm bar on a terminal, plain lines otherwise.

Every long job of miakit (training shadow models, resuming a run, an audit's phases)
reports through this module, with one rule for whether and how:

- ``progress=True``: a tqdm bar, even when stderr is not a terminal (plain lines when
  tqdm is not installed);
- ``progress=None`` (the default): a bar when stderr is a terminal; otherwise -- a log
  file, a pipe, a batch job, CI -- plain lines, throttled so that a log stays short: one
  when a job starts (or resumes, with how much was already done), one each time another
  tenth of it is done, at most one a minute in between, and one at the end;
- ``progress=False``: nothing.

A call that leaves ``progress`` unset takes the setting of the innermost
:func:`progress_mode` block around it (the ``miakit`` command puts its ``--quiet`` and
``--progress`` flags there), so that code without a ``progress`` argument of its own, such
as the audit's phase lines (:func:`phase`), follows the same switch.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["progress_bar", "progress_mode", "phase", "LINE_INTERVAL_S", "LINE_STEP"]

LINE_INTERVAL_S = 60.0
"""Plain lines: at most one a minute between the tenths of a job (a heartbeat for slow
steps), so that an hour-long run logs about 70 lines, not thousands."""

LINE_STEP = 0.1
"""Plain lines: one each time another tenth of the job is done."""

_MODE: contextvars.ContextVar[bool | None] = contextvars.ContextVar("miakit_progress",
                                                                    default=None)


@contextlib.contextmanager
def progress_mode(progress: bool | None) -> Iterator[None]:
    """Within the block, progress that a call leaves unset (None) follows ``progress``.

    Parameters
    ----------
    progress : bool or None
        True: bars even when stderr is not a terminal; False: no progress at all; None:
        a bar on a terminal, plain lines otherwise.

    Examples
    --------
    >>> from miakit._progress import phase, progress_mode
    >>> with progress_mode(False):
    ...     phase("computing signals")  # prints nothing
    """
    token = _MODE.set(progress)
    try:
        yield
    finally:
        _MODE.reset(token)


def _resolve(progress: bool | None) -> bool | None:
    return _MODE.get() if progress is None else bool(progress)


def phase(message: str, progress: bool | None = None) -> None:
    """Say on stderr, in one line, which step a long job has reached.

    Printed unless progress is off (``progress=False``, or a ``progress_mode(False)``
    block around the call), on a terminal as in a log: a phase line is written between
    bars, never inside one.

    Parameters
    ----------
    message : str
        What is happening, e.g. ``"audit: fitting LiRA"``; printed after ``miakit:``.
    progress : bool, optional
        False: print nothing (default: the enclosing :func:`progress_mode`, else print).

    Examples
    --------
    >>> import contextlib, io
    >>> from miakit._progress import phase
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     phase("audit: computing signals")
    >>> err.getvalue()
    'miakit: audit: computing signals\\n'
    """
    if _resolve(progress) is False:
        return
    stream = sys.stderr  # looked up now: the caller may have redirected it
    print(f"miakit: {message}", file=stream, flush=True)


def _duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``: short enough for a log line."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class _Quiet:
    """Stands in for a tqdm bar when progress is off."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.n = kwargs.get("initial", 0)

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Lines(_Quiet):
    """A tqdm bar's interface (``n``, ``update``, ``set_postfix_str``, ``close``) that
    writes plain lines to stderr: a line when the job starts or resumes, one per
    :data:`LINE_STEP` of it, a heartbeat after :data:`LINE_INTERVAL_S` without one, and
    one at the end (or where it stopped)."""

    def __init__(self, *args: Any, total: int | None = None, initial: int = 0,
                 unit: str = "it", desc: str = "", **kwargs: Any):
        self.n = int(initial)
        self.total = None if total is None else int(total)
        self._initial = self.n
        self._unit = unit
        self._desc = desc or "working"
        # "trained" for training jobs (their units are models and heads), else "done"
        self._verb = "trained" if self._desc.startswith("training") else "done"
        self._postfix = ""
        self._closed = False
        self._t0 = self._last_t = time.monotonic()
        self._last_n = self.n
        if self.total is None:
            self._say("started")
        elif self.n >= self.total:
            self._say(f"all {self.total} {self._units(self.total)} already {self._verb}")
            self._closed = True  # nothing to do: no end line either
        elif self.n:
            self._say(f"resuming: {self.n} of {self.total} {self._units(self.total)} "
                      f"already {self._verb}, {self.total - self.n} to go")
        else:
            self._say(f"{self.total} {self._units(self.total)} to go")

    def _units(self, k: int) -> str:
        return self._unit if k == 1 else self._unit + "s"

    def _say(self, text: str) -> None:
        print(f"miakit: {self._desc}: {text}", file=sys.stderr, flush=True)
        self._last_t, self._last_n = time.monotonic(), self.n

    def _status(self) -> str:
        elapsed = time.monotonic() - self._t0
        if self.total is None:
            text = f"{self.n} {self._units(self.n)} {self._verb}, {_duration(elapsed)}"
        else:
            text = (f"{self.n} of {self.total} {self._units(self.total)} {self._verb} "
                    f"({100 * self.n / max(1, self.total):.0f}%), {_duration(elapsed)}")
            new = self.n - self._initial
            if 0 < new and self.n < self.total:  # from this session's pace only
                text += f", about {_duration(elapsed / new * (self.total - self.n))} left"
        return text + (f" ({self._postfix})" if self._postfix else "")

    def _step(self, n: int) -> int:
        """Which tenth of the job ``n`` is in."""
        return math.floor(n / (LINE_STEP * self.total)) if self.total else 0

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._closed:
            return
        if self.total is not None and self.n >= self.total:
            self._finish()
        elif (self._step(self.n) > self._step(self._last_n)
              or time.monotonic() - self._last_t >= LINE_INTERVAL_S):
            self._say(self._status())

    def set_postfix_str(self, s: str = "", *args: Any, **kwargs: Any) -> None:
        # a slow job's inner step (e.g. "step 300/1000" of one batch of heads): shown on
        # the next line, and worth a heartbeat line by itself after a quiet minute
        self._postfix = str(s)
        if not self._closed and time.monotonic() - self._last_t >= LINE_INTERVAL_S:
            self._say(self._status())

    def _finish(self) -> None:
        self._postfix = ""
        elapsed = _duration(time.monotonic() - self._t0)
        self._say(f"{self.n} of {self.total} {self._units(self.total or 0)} {self._verb} "
                  f"in {elapsed}")
        self._closed = True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.total is None or self.n >= self.total:
            self._say(f"{self.n} {self._units(self.n)} {self._verb} in "
                      f"{_duration(time.monotonic() - self._t0)}")
        else:  # an error or an interrupt: the log says where it stopped
            self._say(f"stopped at {self.n} of {self.total} {self._units(self.total)} "
                      f"after {_duration(time.monotonic() - self._t0)}")


def progress_bar(progress: bool | None, **kwargs: Any) -> Any:
    """A progress reporter with tqdm's interface: a bar, plain lines or nothing.

    Parameters
    ----------
    progress : bool or None
        True: a tqdm bar on stderr; None: a bar when stderr is a terminal, else plain
        lines (the module's rules; the enclosing :func:`progress_mode` decides first);
        False: nothing.
    **kwargs
        tqdm's: ``total``, ``initial`` (already done: a resumed job), ``unit``, ``desc``.

    Returns
    -------
    object
        With ``n``, ``update(k)``, ``set_postfix_str(text)`` and ``close()`` (and usable
        as a context manager).

    Examples
    --------
    >>> import contextlib, io
    >>> from miakit._progress import progress_bar
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):  # not a terminal: plain lines
    ...     with progress_bar(None, total=4, initial=1, unit="model",
    ...                       desc="training shadow models") as bar:
    ...         bar.update(3)
    >>> print(err.getvalue(), end="")
    miakit: training shadow models: resuming: 1 of 4 models already trained, 3 to go
    miakit: training shadow models: 4 of 4 models trained in 0 s
    """
    show = _resolve(progress)
    if show is False:
        return _Quiet(**kwargs)
    if show is None and not _isatty(sys.stderr):
        return _Lines(**kwargs)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Lines(**kwargs)
    return tqdm(file=sys.stderr, dynamic_ncols=True, **kwargs)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
