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
h1 { font-size: 1.5em; overflow-wrap: anywhere; } h2 { font-size: 1.2em; margin-top: 1.6em; }
.wide { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
td { white-space: nowrap; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
th:first-child, td:first-child { text-align: left; white-space: normal; }
.verdict { padding: 0.8em 1em; border-radius: 6px; margin: 1em 0; }
.leak { background: #fde8e8; border: 1px solid #d33; }
.clear { background: #e8f6e8; border: 1px solid #3a3; }
.note { color: #555; font-size: 0.92em; margin: 0.2em 0; overflow-wrap: anywhere; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; border: 1px solid #eee; }
code { background: #f5f5f5; padding: 0 0.2em; }
"""


_CAPTIONS = {
    "roc": "both tails of every attack's ROC, log-log. Left: the members an attack calls "
           "(TPR) against the non-members it calls by mistake (FPR), the low false-positive "
           "region where membership inference matters. Right: the other tail, the "
           "non-members below the threshold (TNR) against the members below it (FNR), where "
           "an empirical epsilon of the low-score side comes from. Shaded: pointwise "
           "intervals of the attacks the report names; star: the operating point behind the "
           "largest empirical epsilon (square: the confidence bounds that prove it); with a "
           "DP claim, its limit (dash-dot) and the region it rules out (hatched)",
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
    # a table wider than the page scrolls inside its box, not the page
    return (f'<div class="wide"><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


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


def _sig3(v: Any) -> str:
    return "" if v is None else f"{v:.3g}"


# the per-example columns the page shows (all of them are in vulnerability.csv): short
# headers and a number format each; the OUT means and the privacy score stay in the CSV
_RISK_COLUMNS: dict[str, tuple[str, Any]] = {
    "index": ("example", str),
    "tpr_at_fpr": ("per-example TPR", lambda v: "" if v is None else f"{100 * v:.1f}%"),
    "lira_score": ("LiRA score", _sig3),
    "memorization": ("memorization", lambda v: "" if v is None else f"{v:.2f}"),
    "grad_norm": ("gradient norm", _sig3),
    "curvature": ("curvature", _sig3),
    "hellinger": ("Hellinger", lambda v: "" if v is None else f"{v:.3f}"),
    "shadow_models_needed": ("models needed", lambda v: "" if v is None else f"{v:.0f}"),
}
_EXPOSED_COLUMNS: dict[str, tuple[str, Any]] = {
    "example": ("example", str),
    "p_value": ("p-value", lambda v: f"{v:.2g}"),
    "q_value": ("q-value", lambda v: f"{v:.2g}"),
    "method": ("test", str),
    "n_out": ("OUT refs", str),
    "target_loss": ("target loss", _sig3),
    "logit_grad_norm": ("logit gradient", _sig3),
    "memorization": ("memorization", lambda v: "" if v is None else f"{v:.2f}"),
}


def _ranked_examples(top: list[Mapping[str, Any]]
                     ) -> tuple[str, list[Mapping[str, Any]]]:
    """The column the most exposed examples are ranked by (the per-example TPR where the
    table has it, as :meth:`miakit.vulnerability.VulnerabilityTable.top`) and the rows in
    the table's order: that column from the highest, ties by the higher LiRA score, then
    by the lower example index (a report written before ties were broken by the score is
    put in this order too)."""
    by = next((c for c in ("tpr_at_fpr", "lira_score", "memorization") if c in top[0]),
              "index")

    def neg(r: Mapping[str, Any], c: str) -> float:
        v = r.get(c)
        return float("inf") if v is None else -float(v)  # a missing value last

    return by, sorted(top, key=lambda r: (neg(r, by) if by != "index" else 0.0,
                                          neg(r, "lira_score"), int(r["index"])))


def _format_rows(rows: list[Mapping[str, Any]], spec: Mapping[str, tuple[str, Any]]
                 ) -> tuple[list[str], list[list[str]]]:
    """The columns of ``spec`` that ``rows`` hold, with their headers and formats."""
    cols = [c for c in spec if any(c in r for r in rows)]
    head = [spec[c][0] for c in cols]
    body = [[spec[c][1](r.get(c)) if r.get(c) is not None else "" for c in cols]
            for r in rows]
    return head, body


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
            parts.append(_lines_html([f"the {len(rows)} most significant of the "
                                      f"{exposed['n_exposed']} exposed records, smallest "
                                      "p-value first (all tested records and every column: "
                                      "exposed.csv)"]))
            parts.append(_table_html(*_format_rows(rows, _EXPOSED_COLUMNS)))
        else:
            parts.append(_lines_html([f"no record is exposed at a false discovery rate of "
                                      f"{100 * exposed['fdr']:g}%"]))
    elif sec["risk"] or top:
        parts += ["<h2>Examples at risk</h2>", _lines_html(sec["risk"])]
        if top:
            fpr = (vul.get("meta") or {}).get("fpr")
            by, ranked = _ranked_examples(top)
            what = {"tpr_at_fpr": "highest per-example TPR first" + (
                f" (the share of the models that trained on the example whose LiRA score "
                f"reaches the attack's threshold at FPR {100 * fpr:g}%)" if fpr else ""),
                    "lira_score": "highest LiRA score first",
                    "memorization": "highest memorization first"}.get(by, "by index")
            scored = by != "lira_score" and "lira_score" in top[0]
            tie = ", ties by the higher LiRA score, then by" if scored else ", ties by"
            parts.append(_lines_html([f"the {len(top)} most exposed examples, {what}{tie} "
                                      "the lower index (all examples and every column: "
                                      "vulnerability.csv)"]))
            parts.append(_table_html(*_format_rows(ranked, _RISK_COLUMNS)))
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
    from miakit.audit.report import _check_output_path
    from miakit.audit.text import _check_report
    from miakit.io import atomic_write

    _check_report(report)
    path = _check_output_path(path)
    data = to_html(report, figures_dir=figures_dir).encode("utf-8")
    atomic_write(path, lambda f: f.write(data), "the HTML report")
    return path
