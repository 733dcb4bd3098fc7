"""The audit report as one self-contained HTML page (``report.html``).

:func:`to_html` lays out the parts of :func:`miakit.audit.text.summary_sections` (the
verdict, the attack table, the empirical epsilon, the baselines) with the figures
(embedded) and the most exposed examples; :func:`write_html` writes it.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from miakit.audit.text import summary_sections

__all__ = ["to_html", "write_html"]

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
.verdict { padding: 0.8em 1em; border-radius: 6px; margin: 1em 0; }
.leak { background: #fde8e8; border: 1px solid #d33; }
.clear { background: #e8f6e8; border: 1px solid #3a3; }
.note { color: #555; font-size: 0.92em; margin: 0.2em 0; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; }
code { background: #f5f5f5; padding: 0 0.2em; }
"""


_CAPTIONS = {
    "roc": "ROC curve of every attack, log-log: the low false-positive region is where "
           "membership inference matters",
    "vulnerability_vs_memorization": "each example's LiRA vulnerability against its "
                                     "memorization",
    "vulnerability_vs_grad_norm": "each example's LiRA vulnerability against its gradient "
                                  "norm",
    "vulnerability_vs_curvature": "each example's LiRA vulnerability against its input-loss "
                                  "curvature",
}


def _lines_html(lines: list[str], cls: str = "note") -> str:
    return "".join(f'<p class="{cls}">{html.escape(t.strip())}</p>' for t in lines if t)


def _table_html(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _figure_html(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption class=\"note\">{html.escape(caption)}</figcaption></figure>")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def to_html(report: Mapping[str, Any], embed_figures: bool = True,
            figures_dir: str | Path | None = None) -> str:
    """An audit report (``report.json``, :func:`miakit.audit.audit`) as one self-contained
    HTML page: the verdict, the attack table, the empirical epsilon, the baselines, the
    figures (embedded) and the most exposed examples.

    It says what :func:`miakit.audit.summarize` prints, from the same parts
    (:func:`miakit.audit.summary_sections`), laid out for a reviewer who opens one file.

    Parameters
    ----------
    report : dict
        The audit's report (``mk.audit.load_report("report.json")``).
    embed_figures : bool
        Embed the PNG figures the report lists under ``files`` (those that exist) as
        data URIs, so that the page needs no other file.
    figures_dir : path, optional
        Where to look for a figure whose recorded path no longer exists (a report folder
        that was moved or copied): the file of the same name in this folder.

    Returns
    -------
    str
        The page.

    Examples
    --------
    >>> import miakit as mk
    >>> rep = {"run": {"n_models": 4, "n_examples": 10, "n_augmentations": 1,
    ...                "n_classes": 2, "config": {"head": "linear"}, "metadata": {}},
    ...        "models": {"train_accuracy": 1.0, "test_accuracy": 0.9},
    ...        "evaluation": {"confidence_level": 0.95}, "attacks": {}}
    >>> page = mk.audit.to_html(rep)
    >>> page.startswith("<!DOCTYPE html>") and "4 shadow models" in page
    True
    """
    sec = summary_sections(report)
    title = sec["run"][0]
    parts = [f"<h1>{html.escape(title)}</h1>", _lines_html(sec["run"][1:])]
    created = report.get("created")
    if created:
        parts.append(_lines_html([f"created {created} by miakit "
                                  f"{report.get('miakit_version', '')}"]))
    if sec["verdict"]:
        leak = bool((report.get("verdict") or {}).get("leakage"))
        privacy = report.get("privacy") or {}
        leak = leak or privacy.get("consistent") is False
        parts.append(f'<div class="verdict {"leak" if leak else "clear"}">'
                     + _lines_html(sec["verdict"], "") + "</div>")
    if sec["table"] is not None:
        head, rows = sec["table"]
        parts += ["<h2>Attacks</h2>", _lines_html([sec["pairs"]]), _table_html(head, rows),
                  _lines_html(sec["notes"])]
    if sec["privacy"]:
        parts += ["<h2>Privacy</h2>", _lines_html(sec["privacy"])]
    files = report.get("files") or {}
    if embed_figures:
        def found(v: Any) -> Path | None:
            for p in (Path(v), Path(figures_dir) / Path(v).name if figures_dir else None):
                if p is not None and p.is_file():
                    return p
            return None

        figures = [(k, p) for k, p in ((k, found(v)) for k, v in files.items()
                                       if str(v).endswith(".png")) if p is not None]
        if figures:
            parts.append("<h2>Figures</h2>")
            parts += [_figure_html(p, _CAPTIONS.get(k, k.replace("_", " ")))
                      for k, p in figures]
    vul = report.get("vulnerability") or {}
    top = vul.get("top") or []
    exposed = report.get("exposed") or {}
    if exposed:  # a target model's audit: the records it exposes, most significant first
        parts += ["<h2>Exposed training records</h2>", _lines_html(sec["risk"])]
        rows = exposed.get("top") or []
        if rows:
            cols = ["example", "p_value", "q_value", "method", "n_out",
                    *exposed.get("columns", [])]
            parts.append(_lines_html([f"the {len(rows)} most significant of the "
                                      f"{exposed['n_exposed']} exposed records (all tested "
                                      "records: exposed.csv)"]))
            parts.append(_table_html(cols, [[_cell(r.get(c)) for c in cols] for r in rows]))
        else:
            parts.append(_lines_html([f"no record is exposed at a false discovery rate of "
                                      f"{100 * exposed['fdr']:g}%"]))
    elif sec["risk"] or top:
        parts += ["<h2>Examples at risk</h2>", _lines_html(sec["risk"])]
        if top:
            cols = list(top[0])
            parts.append(_lines_html([f"the {len(top)} most exposed examples (all "
                                      "examples: vulnerability.csv)"]))
            parts.append(_table_html(cols, [[_cell(r.get(c)) for c in cols] for r in top]))
    timing = report.get("timing_s")
    if timing:
        parts += ["<h2>Time</h2>", _table_html(["phase", "seconds"],
                                               [[k, _cell(v)] for k, v in timing.items()])]
    if sec["files"]:
        parts.append(_lines_html(sec["files"]))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def write_html(report: Mapping[str, Any], path: str | Path,
               figures_dir: str | Path | None = None) -> Path:
    """Write :func:`to_html` of ``report`` to ``path`` (atomically); returns the path.

    Examples
    --------
    >>> import tempfile, pathlib, miakit as mk
    >>> rep = {"run": {"n_models": 4, "n_examples": 10, "n_augmentations": 1,
    ...                "n_classes": 2, "config": {"head": "linear"}, "metadata": {}},
    ...        "models": {"train_accuracy": 1.0, "test_accuracy": 0.9},
    ...        "evaluation": {"confidence_level": 0.95}, "attacks": {}}
    >>> p = mk.audit.write_html(rep, pathlib.Path(tempfile.mkdtemp()) / "report.html")
    >>> p.name
    'report.html'
    """
    from miakit.io import atomic_write

    path = Path(path)
    data = to_html(report, figures_dir=figures_dir).encode("utf-8")
    atomic_write(path, lambda f: f.write(data), "the HTML report")
    return path
