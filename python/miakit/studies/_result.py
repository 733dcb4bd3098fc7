"""The one shape of a study's result: its report, read as a mapping, summarized, drawn
and written.

Every study's ``run`` returns a subclass of :class:`StudyResult`. The report (a plain
dict of JSON values, what ``<name>.json`` holds) is read through the result as a
read-only mapping, so ``result["rows"]`` keeps working where code once held the dict.
A subclass sets :attr:`StudyResult.name` (the file stem), and implements
:meth:`StudyResult.summary` (the text its command prints) and ``_draw`` (its figure).
"""

from __future__ import annotations

import copy
import json
import os
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from miakit.io import write_report

__all__ = ["StudyResult"]

R = TypeVar("R", bound="StudyResult")


class StudyResult(Mapping):
    """A study's report with its summary, figure and files.

    Parameters
    ----------
    report : dict
        The report (JSON values only); kept as given, read through the mapping.

    Examples
    --------
    >>> from miakit.studies.dp_curvature import DpCurvatureResult
    >>> r = DpCurvatureResult({"dataset": "d", "rows": []})
    >>> r["dataset"], "rows" in r, sorted(r.keys())
    ('d', True, ['dataset', 'rows'])
    """

    name: ClassVar[str] = "study"
    """The file stem: ``<name>.json`` and ``<name>.png``."""

    def __init__(self, report: dict[str, Any]) -> None:
        self._report = report

    # -- read-only mapping over the report
    def __getitem__(self, key: str) -> Any:
        return self._report[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._report)

    def __len__(self) -> int:
        return len(self._report)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({sorted(self._report)})"

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the report (what ``<name>.json`` holds)."""
        return copy.deepcopy(self._report)

    @classmethod
    def from_json(cls: type[R], path: str | os.PathLike) -> R:
        """The result of a report written by :meth:`write` (figures that need the study's
        data, not in the report, are not drawn again); ``ValueError`` naming the file when
        it is not a JSON object (empty, truncated, not text, a JSON list)."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path: expected a file path, got {type(path).__name__}")
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:  # a folder, bytes that are not UTF-8, bad JSON
            raise ValueError(f"path: cannot read {path} as a {cls.name} report ({exc})"
                             ) from None
        if not isinstance(data, dict):
            raise ValueError(f"path: {path} holds a JSON {type(data).__name__}, expected the "
                             f"JSON object of a {cls.name} report")
        return cls(data)

    # -- what a study implements (Mapping's metaclass is ABCMeta: a subclass that lacks
    # either cannot be instantiated)
    @abstractmethod
    def summary(self) -> str:
        """The report in words: what the study's command prints."""

    @abstractmethod
    def _draw(self, path: Path) -> None:
        """Draw the study's figure to ``path``."""

    # -- figures and files
    def plot(self, path: str | os.PathLike) -> Path:
        """Draw the study's figure to ``path`` (written atomically, format from the suffix);
        returns the path."""
        path = Path(path)
        self._draw(path)
        return path

    def write(self, out_dir: str | os.PathLike, plot: bool = True) -> dict[str, str]:
        """Write ``<name>.json`` (and, with ``plot``, ``<name>.png``) in ``out_dir``; the
        files are recorded in the report's ``files`` and returned."""
        write_report(out_dir, self.name, self._report,
                     (lambda _report, path: self._draw(path)) if plot else None)
        return dict(self._report["files"])

    def _files_line(self) -> list[str]:
        """The summary's last line: the files written, once each."""
        files = self._report.get("files")
        if not files:
            return []
        written = dict(files, **self._report.get("figures", {}))
        return ["wrote " + ", ".join(dict.fromkeys(written.values()))]
