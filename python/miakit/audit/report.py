"""The audit's report as a typed object: :class:`AuditReport` and its parts.

:func:`miakit.audit.audit` returns an :class:`AuditReport`; ``report.json`` is its
:meth:`AuditReport.to_json`, and :meth:`AuditReport.from_json` reads it back (checking
that it is one), so the text summary (:mod:`miakit.audit.text`), the HTML page
(:mod:`miakit.audit.page`) and ``miakit report`` all read one declared shape.

Each attack's numbers are an :class:`AttackResult`. What the figures need but the JSON
does not hold (the ROC curve's vertices, the loss attack's maximum-accuracy threshold)
are its attributes ``curve`` and ``max_accuracy``, outside :meth:`AttackResult.to_dict`:
no private keys travel in a dictionary. The nested records (operating points, leakage
test points, the verdict, ...) are plain dictionaries typed with ``TypedDict``.

Both classes also read like the dictionaries they serialize to (``report["attacks"]
["loss"]["auc"]``, ``report.get("verdict")``), so code written against ``report.json``
works on the object unchanged; they are read-only views: change a report through its
attributes.
"""

from __future__ import annotations

import abc
import dataclasses
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

__all__ = ["AuditReport", "AttackResult", "OperatingPoint", "LeakagePoint", "Verdict",
           "EmpiricalEpsilon", "RunInfo", "REQUIRED_KEYS"]


class OperatingPoint(TypedDict):
    """One row of an attack's TPR table (:func:`miakit.metrics.tpr_at_fpr`)."""

    target_fpr: float
    tpr: float
    fpr: float
    tp: int
    fp: int
    n_members: int
    n_nonmembers: int
    tpr_ci: list[float]
    fpr_ci: list[float]
    design_effect: list[float]
    threshold: float | None
    resolvable: bool
    unresolvable_reason: str | None


class LeakagePoint(TypedDict):
    """One leakage test of an attack at one FPR budget (:func:`miakit.metrics.leakage_test`)."""

    target_fpr: float
    tpr: float
    fpr: float
    tpr_lower: float
    fpr_upper: float
    leak: bool
    min_detectable_tpr: float | None
    alpha_each: float
    resolvable: bool
    p_value: float
    test: str
    threshold: float | None


class EmpiricalEpsilon(TypedDict):
    """An attack's empirical epsilon lower bound (:func:`miakit.bounds.empirical_epsilon`)."""

    epsilon: float
    delta: float
    level: float
    threshold: float | None
    tp: int
    fp: int
    tpr_lower: float
    fpr_upper: float
    side: str
    n_thresholds: int
    method: str


class Verdict(TypedDict):
    """The leakage verdict over every attack and budget (:func:`miakit.audit.verdict`)."""

    leakage: bool
    strongest: dict[str, Any] | None
    evidence: list[dict[str, Any]]
    detectable: list[dict[str, Any]]
    n_tests: int
    alpha: float
    method: str


class RunInfo(TypedDict):
    """What the report says of the audited run."""

    path: str
    n_models: int
    n_examples: int
    n_augmentations: int
    n_classes: int
    logits_dtype: str
    config: dict[str, Any]
    metadata: dict[str, Any]
    fingerprint: dict[str, Any]


REQUIRED_KEYS = ("run", "models", "evaluation", "attacks")
_OPTIONAL_SECTIONS = ("files", "vulnerability", "target", "exposed")
"""The sections without which a JSON document is not an audit report."""


class _DictView(Mapping[str, Any]):
    """Read-only mapping access to a dataclass's serialized form."""

    @abc.abstractmethod
    def _as_dict(self) -> dict[str, Any]:
        """The serialized form the mapping reads."""

    def __getitem__(self, key: str) -> Any:
        return self._as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._as_dict())

    def __len__(self) -> int:
        return len(self._as_dict())


@dataclasses.dataclass(eq=False)
class AttackResult(_DictView):
    """One attack's numbers: AUC, the TPR table, the leakage tests, the empirical epsilon
    and the downsampled ROC, all from its ``[M, N]`` leave-one-out scores.

    ``curve`` (the ROC's vertices for the figure) and ``max_accuracy`` (the loss
    attack's maximum-accuracy threshold, for the baselines) are in memory only.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> from miakit.audit import evaluate
    >>> keep = mk.shadow.balanced_keep(4, 200, seed=0)
    >>> r = evaluate({"noise": {"scores": np.random.default_rng(0).normal(size=keep.shape)}},
    ...              keep)["noise"]
    >>> r["n_members"], "curve" in r, len(r.curve[0]) > 2
    (400, False, True)
    """

    label: str
    auc: float
    auc_se: float
    auc_ci: list[float]
    n_members: int
    n_nonmembers: int
    excluded: int
    tpr_at_fpr: list[OperatingPoint]
    leakage_test: list[LeakagePoint]
    empirical_epsilon: EmpiricalEpsilon
    roc: dict[str, list[float]]
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    clamped_std: int = 0
    curve: tuple[np.ndarray, np.ndarray] | None = dataclasses.field(default=None,
                                                                       repr=False)
    max_accuracy: Any = dataclasses.field(default=None, repr=False)

    _MEMORY_ONLY = ("curve", "max_accuracy")

    def to_dict(self) -> dict[str, Any]:
        """What ``report.json`` holds of this attack (JSON types only)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in self._MEMORY_ONLY}

    _as_dict = to_dict

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AttackResult:
        """The attack of a ``report.json`` (keys it does not declare are an error)."""
        names = {f.name for f in dataclasses.fields(cls)} - set(cls._MEMORY_ONLY)
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"attack: unknown keys {unknown}")
        return cls(**dict(d))


def _check_output_path(path: Any, name: str = "path", *, folder: bool = False) -> Path:
    """A path the audit writes, as a ``Path``: a file (``folder=False``; not an existing
    folder) or a folder (not an existing file, nor under one); the error names the
    argument ``name`` before anything is computed or written."""
    import os

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a path (str or os.PathLike), got "
                        f"{type(path).__name__}")
    text = os.fspath(path)
    if isinstance(text, bytes) or not text or "\x00" in text:
        raise ValueError(f"{name}: expected a non-empty path without NUL characters, got "
                         f"{path!r}")
    out = Path(text)
    if folder:
        # the folder itself or the nearest existing folder above it must not be a file
        for p in (out, *out.parents):
            if p.exists():
                if not p.is_dir():
                    raise ValueError(f"{name}: expected a folder, but {p} is a file")
                break
    elif out.is_dir():
        raise ValueError(f"{name}: expected a file to write, but {out} is a folder")
    return out


def _jsonable(obj: Any) -> Any:
    """numpy scalars and arrays, tuples and nested results as JSON types."""
    if isinstance(obj, _DictView):
        return _jsonable(obj._as_dict())
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


@dataclasses.dataclass(eq=False)
class AuditReport(_DictView):
    """Everything an audit found: the run, the models' quality, each attack's numbers,
    the baselines, the verdict, the privacy summary and the per-example table.

    An audit of one target model (:func:`miakit.audit.audit_target`) also holds
    ``target`` (the model attacked, and which attacks its references allow) and
    ``exposed`` (its training records whose membership the references reveal, at a
    false discovery rate).

    ``extra`` holds what a caller added (``audit(..., extra=...)``); it is written at the
    top level of ``report.json`` beside the declared sections.

    Examples
    --------
    >>> import numpy as np, tempfile, miakit as mk
    >>> from miakit.audit import AuditReport, audit
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 40)
    >>> x = rng.normal(size=(40, 3)) + y[:, None]
    >>> keep = mk.shadow.balanced_keep(8, 40, seed=0)
    >>> d = tempfile.mkdtemp()
    >>> _ = mk.shadow.train_heads(x, y, keep, run_dir=d + "/run", progress=False)
    >>> report = audit(mk.shadow.open_run(d + "/run"), d + "/out", plot=False)
    >>> again = AuditReport.from_json(d + "/out/report.json")
    >>> again.attacks["loss"].auc == report["attacks"]["loss"]["auc"]
    True
    >>> again.to_dict()["attacks"] == report.to_dict()["attacks"]
    True
    """

    miakit_version: str
    created: str
    run: RunInfo
    models: dict[str, float | None]
    evaluation: dict[str, Any]
    attacks: dict[str, AttackResult]
    baselines: dict[str, Any]
    verdict: Verdict | None
    strongest_attack: dict[str, Any] | None = None
    privacy: dict[str, Any] = dataclasses.field(default_factory=dict)
    vulnerability: dict[str, Any] | None = None
    timing_s: dict[str, float] = dataclasses.field(default_factory=dict)
    files: dict[str, str] | None = None
    target: dict[str, Any] | None = None
    exposed: dict[str, Any] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON types: what ``report.json`` holds (sections without a value,
        such as ``files`` of a report that wrote none, are left out)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or value is None and f.name in _OPTIONAL_SECTIONS:
                continue
            out[f.name] = _jsonable(value)
        for k, v in self.extra.items():
            out.setdefault(k, _jsonable(v))
        return out

    _as_dict = to_dict

    def to_json(self, path: str | Path | None = None) -> str:
        """The report as JSON text; with ``path``, also written there atomically."""
        text = json.dumps(self.to_dict(), indent=1, sort_keys=True)
        if path is not None:
            from miakit.io import write_json

            write_json(Path(path), self.to_dict(), "the audit report")
        return text

    @classmethod
    def from_dict(cls, d: Any, source: str = "the document", name: str = "report"
                  ) -> AuditReport:
        """An :class:`AuditReport` from what :meth:`to_dict` returned; ``ValueError``
        (``name``: the argument, ``source``: where ``d`` came from) naming the missing
        sections when ``d`` is not an audit report."""
        if not isinstance(d, Mapping):
            raise ValueError(f"{name}: expected the report.json of 'miakit audit', "
                             f"{source} holds a JSON {type(d).__name__}")
        missing = [k for k in REQUIRED_KEYS if k not in d]
        if missing:
            raise ValueError(f"{name}: expected the report.json of 'miakit audit', "
                             f"{source} has no {', '.join(missing)}")
        declared = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kw = {k: v for k, v in d.items() if k in declared}
        kw["attacks"] = {k: AttackResult.from_dict(v) for k, v in d["attacks"].items()}
        kw.setdefault("miakit_version", "")
        kw.setdefault("created", "")
        kw.setdefault("baselines", {})
        kw.setdefault("verdict", None)
        extra = {k: v for k, v in d.items() if k not in declared}
        return cls(**kw, extra=extra)

    @classmethod
    def from_json(cls, path_or_text: str | Path, name: str = "path") -> AuditReport:
        """Read a ``report.json`` (a path, or the JSON text itself); ``name`` is the
        argument the error messages name."""
        text = str(path_or_text)
        source = "the text"
        if isinstance(path_or_text, Path) or not text.lstrip().startswith("{"):
            source = str(path_or_text)
            try:
                text = Path(path_or_text).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"{name}: cannot read {source}: "
                                 f"{exc.strerror or exc}") from None
            except UnicodeDecodeError as exc:  # JSON is UTF-8 text: a binary file is not
                raise ValueError(f"{name}: expected JSON, {source} is not UTF-8 text "
                                 f"({exc.reason} at byte {exc.start})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}: expected JSON, {source} is not ({exc})") from None
        return cls.from_dict(data, source, name)

    def summary(self, files: bool = True) -> str:
        """The report in words (:func:`miakit.audit.summarize`)."""
        from miakit.audit.text import summarize

        return summarize(self, files=files)

    def to_html(self, figures_dir: str | Path | None = None) -> str:
        """The report as one self-contained page (:func:`miakit.audit.to_html`)."""
        from miakit.audit.page import to_html

        return to_html(self, figures_dir=figures_dir)
