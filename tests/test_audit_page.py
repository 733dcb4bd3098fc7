"""What report.html says, read back from the page itself: a null run (no attack
significant, no epsilon proven, no strongest attack named) and a leaking run with a DP
claim it breaks (the verdict's attack named, where the largest empirical epsilon comes
from, the figure embedded, the most exposed examples in score order); the empirical
epsilon's sentence on both sides of the ROC; the bands roc.png shades."""

from __future__ import annotations

import base64
import csv
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from test_audit import _leaky_run

import miakit as mk
from miakit.audit import audit, evaluate, privacy_summary, summary_sections


class _Page(HTMLParser):
    """The parts of report.html a reader sees: the headings, each paragraph's text with
    its class, the tables (header and rows of cell texts), the images and the CSS."""

    def __init__(self, text: str):
        super().__init__()
        self.headings: list[str] = []
        self.paragraphs: list[tuple[str, str]] = []
        self.tables: list[list[list[str]]] = []
        self.images: list[dict[str, str]] = []
        self.wrapped_tables = 0
        self.css = ""
        self._text: list[str] | None = None
        self._tag = ""
        self._cls = ""
        self._row: list[str] | None = None
        self._div_wide = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("h1", "h2", "p", "td", "th", "style", "figcaption"):
            self._text, self._tag, self._cls = [], tag, a.get("class") or ""
        elif tag == "table":
            self.tables.append([])
            self.wrapped_tables += self._div_wide > 0
        elif tag == "tr":
            self._row = []
        elif tag == "img":
            self.images.append(a)
        elif tag == "div" and a.get("class") == "wide":
            self._div_wide += 1

    def handle_endtag(self, tag):
        if tag == "div" and self._div_wide:
            self._div_wide -= 1
        if tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None
        if self._text is None or tag != self._tag:
            return
        text = "".join(self._text).strip()
        if tag in ("h1", "h2"):
            self.headings.append(text)
        elif tag == "p":
            self.paragraphs.append((self._cls, text))
        elif tag in ("td", "th") and self._row is not None:
            self._row.append(text)
        elif tag == "style":
            self.css = text
        self._text = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def text(self) -> str:
        return "\n".join(t for _, t in self.paragraphs)


def _null_run(path, m=8, n=200, seed=0):
    """Logits of pure noise: membership has no effect on any model."""
    rng = np.random.default_rng(seed)
    keep = mk.shadow.balanced_keep(m, n, seed=seed)
    labels = rng.integers(0, 4, n)
    run = mk.shadow.create_run(path, keep, labels, n_augmentations=1, n_classes=4,
                               config={"head": "linear"}, metadata={"dataset": "noise"})
    for k in range(m):
        run.write_model(k, rng.normal(size=(n, 1, 4)).astype(np.float32))
    return mk.shadow.open_run(path)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    d = tmp_path_factory.mktemp("pages")
    null = audit(_null_run(d / "null_run"), d / "null")
    leak = audit(_leaky_run(d / "leak_run", m=8, n=80), d / "leak", dp_epsilon=1.0)
    return {name: (rep, d / name, _Page((d / name / "report.html").read_text()))
            for name, rep in (("null", null), ("leak", leak))}


def _verdict_text(page: _Page) -> str:
    return " ".join(t for cls, t in page.paragraphs if cls == "")  # inside the verdict box


def test_null_page_declares_nothing(pages):
    rep, out, page = pages["null"]
    assert not rep["verdict"]["leakage"]
    verdict = _verdict_text(page)
    assert verdict.startswith("verdict: no membership leakage detected")
    assert "smallest TPR excess" in verdict
    text = page.text()
    assert "strongest attack: none; no attack was significant" in text
    labels = [a["label"] for a in rep["attacks"].values()]
    # no attack is named as the strongest, nor in the verdict
    strongest = [t for t in text.splitlines() if t.startswith("strongest attack")]
    assert len(strongest) == 1 and not any(lab in strongest[0] for lab in labels)
    assert not any(lab in verdict for lab in labels)
    # every empirical epsilon is 0 here, and the page says that nothing is proven
    assert rep["privacy"]["max_empirical_epsilon"] == 0.0
    privacy = [t for t in text.splitlines() if "epsilon" in t]
    assert len(privacy) == 1
    assert "0 for every attack" in privacy[0] and "no privacy loss is proven" in privacy[0]
    assert "comes from" not in text and "INCONSISTENT" not in text
    assert "Privacy" in page.headings


def test_leaking_page_names_the_verdicts_attack_and_the_epsilons_source(pages):
    rep, out, page = pages["leak"]
    v = rep["verdict"]
    assert v["leakage"]
    verdict = _verdict_text(page)
    assert verdict.startswith(f"verdict: membership leakage detected. {v['strongest']['label']}"
                              " calls")
    text = page.text()
    # named as the verdict's attack, with the attack table's TPR at that FPR (the verdict's
    # own test calls a share of all scores, a different operating point)
    best = rep["strongest_attack"]
    row = next(p for p in rep["attacks"][best["attack"]]["tpr_at_fpr"]
               if p["target_fpr"] == best["target_fpr"])
    assert best["table_tpr"] == row["tpr"]
    assert (f"strongest attack: {v['strongest']['label']}, the one the verdict rests on "
            f"(TPR {100 * row['tpr']:.1f}% at FPR {100 * best['target_fpr']:g}%") in text
    assert "of all scores" in verdict
    # the largest empirical epsilon: which attack, which side, at which operating point
    p = rep["privacy"]
    a = rep["attacks"][p["attack"]]
    e = a["empirical_epsilon"]
    n_pos, n_neg = a["n_members"], a["n_nonmembers"]
    side = {"fnr": "low-score", "tpr": "high-score"}[e["side"]]
    src = next(t for t in text.splitlines() if t.startswith("the largest,"))
    assert src.startswith(f"the largest, {a['label']}'s {e['epsilon']:.2f}, comes from the "
                          f"{side} side: at a threshold that ")
    if e["side"] == "fnr":
        assert f"of non-members fall below ({n_neg - e['fp']:,} of {n_neg:,})" in src
        assert f"({n_pos - e['tp']:,} of {n_pos:,})" in src
    else:
        assert f"of members reach ({e['tp']:,} of {n_pos:,})" in src
        assert f"({e['fp']:,} of {n_neg:,})" in src
    panel = "right" if e["side"] == "fnr" else "left"
    assert f"(the star on roc.png's {panel} panel)" in src
    why = next(t for t in text.splitlines() if t.startswith("why: (epsilon, delta)-DP"))
    assert why.endswith(f"= {e['epsilon']:.2f}") and f"{e['n_thresholds']} thresholds" in why
    # the claim it breaks, and where the figure shows it
    assert p["consistent"] is False
    assert (f"INCONSISTENT with the claimed (1, 1e-05)-DP: {a['label']} proves epsilon > "
            f"{e['epsilon']:.2f}") in text
    assert "(the point marked in red on roc.png)" in text
    assert page.paragraphs.index(("note", src)) < page.paragraphs.index(
        ("note", next(t for t in text.splitlines() if t.startswith("INCONSISTENT"))))


def test_the_figures_are_embedded(pages):
    for name in ("null", "leak"):
        rep, out, page = pages[name]
        pngs = {k: v for k, v in rep["files"].items() if v.endswith(".png")}
        assert "roc" in pngs and len(page.images) == len(pngs)
        embedded = [base64.b64decode(img["src"].split(",", 1)[1]) for img in page.images]
        roc = (out / "roc.png").read_bytes()
        assert roc in embedded and roc[:8] == b"\x89PNG\r\n\x1a\n"
        alt = next(img["alt"] for img in page.images
                   if base64.b64decode(img["src"].split(",", 1)[1]) == roc)
        assert "both tails" in alt and "star" in alt


def _csv_rows(path):
    with open(path, newline="") as f:
        return [{k: (float(v) if v not in ("", "nan") else None) for k, v in r.items()}
                for r in csv.DictReader(f)]


@pytest.mark.parametrize("name", ["null", "leak"])
def test_exposed_examples_are_the_top_of_the_score_order(pages, name):
    rep, out, page = pages[name]
    table = next(t for t in page.tables if t[0][0] == "example")
    head, rows = table[0], table[1:]
    assert head[:3] == ["example", "per-example TPR", "LiRA score"] and len(head) <= 8
    # every example of the CSV ranked: per-example TPR from the highest, ties by the
    # higher LiRA score, then by the lower index; the page shows the first 20, in order
    every = _csv_rows(out / "vulnerability.csv")
    want = sorted(every, key=lambda r: (-r["tpr_at_fpr"], -r["lira_score"], r["index"]))
    assert [int(r[0]) for r in rows] == [int(r["index"]) for r in want[:20]]
    tpr = [float(r[1].rstrip("%")) for r in rows]
    assert tpr == sorted(tpr, reverse=True)
    # the numbers are short (three significant digits or a percentage), never raw floats
    assert all(len(c) <= 8 for r in rows for c in r)
    # every table scrolls inside its own box, not the page
    assert page.wrapped_tables == len(page.tables) and ".wide { overflow-x: auto" in page.css


def _report_of(scores, keep, delta=1e-5):
    """The report's parts that the privacy lines read, for scores made by hand."""
    res = {"s": evaluate({"s": {"scores": scores, "label": "hand-made"}}, keep,
                         dp_delta=delta)["s"]}
    return {"run": {"n_models": keep.shape[0], "n_examples": keep.shape[1],
                    "n_augmentations": 1, "n_classes": 2, "config": {}, "metadata": {}},
            "models": {"train_accuracy": None}, "evaluation": {"confidence_level": 0.95},
            "attacks": res, "privacy": privacy_summary(res, None, delta),
            "files": {"roc": "roc.png"}}


@pytest.mark.parametrize("side", ["tpr", "fnr"])
def test_the_epsilon_sentence_on_each_side(side):
    rng = np.random.default_rng(1)
    keep = mk.shadow.balanced_keep(8, 400, seed=1)
    scores = rng.normal(size=keep.shape)
    if side == "tpr":  # a fifth of the members far above everything
        scores[keep & (rng.random(keep.shape) < 0.2)] += 20.0
    else:  # a fifth of the non-members far below everything
        scores[~keep & (rng.random(keep.shape) < 0.2)] -= 20.0
    rep = _report_of(scores, keep)
    e = rep["attacks"]["s"]["empirical_epsilon"]
    assert e["side"] == side and e["epsilon"] > 1.0
    lines = summary_sections(rep)["privacy"]
    src = next(t.strip() for t in lines if "comes from" in t)
    if side == "tpr":
        assert src.startswith(f"the largest, hand-made's {e['epsilon']:.2f}, comes from the "
                              "high-score side: at a threshold that ")
        assert "no non-member does (0 of 1,600)" in src and "left panel" in src
    else:
        assert "low-score side: at a threshold that" in src
        assert "no member does (0 of 1,600)" in src and "right panel" in src
    why = next(t.strip() for t in lines if t.strip().startswith("why:"))
    # the arithmetic the sentence shows gives the epsilon
    big, small = (float(x) / 100 for x in re.search(
        r"ln\(\(([\d.]+)% - delta\) / ([\d.]+)%\)", why).groups())
    assert np.log((big - 1e-5) / small) == pytest.approx(e["epsilon"], rel=5e-3)


def test_the_shaded_bands_are_the_tables_intervals(tmp_path):
    """roc.png's bands: at every grid point of both tails, the interval the TPR table
    gives an operating point (cluster-robust, the same ranking), containing the rate."""
    rng = np.random.default_rng(2)
    keep = mk.shadow.balanced_keep(8, 300, seed=2)
    scores = rng.normal(size=keep.shape) + 0.7 * keep
    r = evaluate({"s": {"scores": scores}}, keep)["s"]
    roc = {k: np.asarray(v) for k, v in r.roc.items()}
    assert len(roc["fpr"]) == len(roc["fnr"]) == 60
    assert np.all(roc["tpr_lower"] <= roc["tpr"]) and np.all(roc["tpr"] <= roc["tpr_upper"])
    assert np.all(roc["tnr_lower"] <= roc["tnr"]) and np.all(roc["tnr"] <= roc["tnr_upper"])
    ranked = mk.metrics.RankedScores(scores, keep)
    for i in (5, 30, 55):
        t = ranked.tpr_at_fpr(float(roc["fpr"][i]) * (1 + 1e-9))
        assert t.tpr == roc["tpr"][i]
        np.testing.assert_allclose(t.ci, (roc["tpr_lower"][i], roc["tpr_upper"][i]),
                                   rtol=1e-9)
    # the low-score tail, as the high-score tail of the negated scores with the roles of
    # members and non-members exchanged: TNR at FNR <= g
    flipped = mk.metrics.RankedScores(-scores, ~keep)
    for i in (5, 30, 55):
        t = flipped.tpr_at_fpr(float(roc["fnr"][i]) * (1 + 1e-9))
        assert t.tpr == pytest.approx(roc["tnr"][i], abs=1e-12)
    # the figure draws both tails and marks the epsilon's point
    path = mk.audit.plot_roc({"s": r}, tmp_path / "roc.png", dp=(0.5, 1e-5), bands="all")
    assert path.read_bytes()[:4] == b"\x89PNG"
