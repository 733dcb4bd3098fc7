"""The documentation site links the docstrings' Sphinx roles instead of printing them.

docs/hooks/sphinx_roles.py (a Griffe extension named in mkdocs.yml) turns
``:func:`target``` and the other Python roles into cross-references; these tests check
the conversion on examples, the lookup of short targets in a small package, and, where
MkDocs is installed (the ``docs`` extra), that the built API page holds no raw role.
"""

from __future__ import annotations

import doctest
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOOK = ROOT / "docs" / "hooks" / "sphinx_roles.py"

pytestmark = pytest.mark.skipif(not HOOK.is_file(), reason="docs/ is not beside the tests")
# The extension is written for Griffe, which the docs extra installs (with mkdocstrings).
griffe = pytest.importorskip("griffe")

# A role marker as Sphinx writes it: what must not reach a page.
RAW_ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|data|attr|obj|exc|const):`")


def _load_hook():
    spec = importlib.util.spec_from_file_location("sphinx_roles", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


roles = _load_hook()
PATHS = {"fit": "pkg.lira.fit", "miakit.lira.fit": "miakit.lira.fit",
         "Run.write_model": "pkg.shadow.Run.write_model", "pkg.shadow": "pkg.shadow"}


def link(identifier: str, title: str) -> str:
    return (f'<autoref identifier="{identifier}" optional class="{roles.LINK_CLASS}">'
            f"<code>{title}</code></autoref>")


@pytest.mark.parametrize("text, expected", [
    (":func:`fit`", link("pkg.lira.fit", "fit")),
    (":func:`miakit.lira.fit`", link("miakit.lira.fit", "miakit.lira.fit")),
    # ~ shows the last component; a leading . is dropped; () is not part of the target
    (":func:`~miakit.lira.fit`", link("miakit.lira.fit", "fit")),
    (":func:`.fit`", link("pkg.lira.fit", "fit")),
    (":py:func:`fit()`", link("pkg.lira.fit", "fit()")),
    # an explicit title, the role wrapped over two lines as in a docstring paragraph
    ("the :meth:`writes\n   <Run.write_model>` of", "the " + link("pkg.shadow.Run.write_model",
                                                                    "writes") + " of"),
    (":mod:`pkg.shadow` and :class:`Run`",
     link("pkg.shadow", "pkg.shadow") + " and `Run`"),
    # unresolved or ! (no link): plain code, never the raw marker
    (":class:`numpy.ndarray`", "`numpy.ndarray`"),
    (":func:`!fit`", "`fit`"),
    (":data:`~numpy.float64` values", "`float64` values"),
    # a double-backquoted literal that shows the syntax stays as written
    ("write ``:func:`fit``` in docstrings", "write ``:func:`fit``` in docstrings"),
    # a title is escaped for HTML
    (":func:`a < b <fit>`", link("pkg.lira.fit", "a &lt; b")),
])
def test_convert_roles(text, expected):
    assert roles.convert_roles(text, PATHS.get) == expected


def test_hook_docstring_examples():
    result = doctest.testmod(roles, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_code_examples_are_left_alone():
    text = textwrap.dedent("""\
        See :func:`fit`.

        >>> print(":func:`fit`")
        :func:`fit`

        ```python
        doc = ":class:`Run`"
        ```
        And :func:`fit` again.
        """)
    converted = roles.convert_roles(text, PATHS.get)
    assert converted.count(link("pkg.lira.fit", "fit")) == 2
    for line in ('>>> print(":func:`fit`")', ":func:`fit`\n", 'doc = ":class:`Run`"'):
        assert line in converted


PACKAGE = {
    "__init__.py": '''"""The package: :mod:`pkg.stats` and :func:`fit`."""
from pkg.stats import fit
''',
    "stats.py": '''"""Statistics: :func:`fit`, :class:`Model`, :func:`helper`, :func:`run`."""
from pkg._impl import helper


def fit():
    """Fits; see :meth:`Model.score` and :func:`numpy.polyfit`."""


def run():
    """The statistics' run."""


class Base:
    def describe(self):
        """Describes."""


class Model(Base):
    """A model: :meth:`score`, :meth:`describe` (inherited), :attr:`size`."""

    size = 3
    """The size."""

    def score(self):
        """Scores; as :func:`fit`."""
''',
    "_impl.py": '''"""Helpers: :func:`~pkg.stats.fit`, :func:`run` and :func:`Model.score`."""


def helper():
    """Helps."""


def run():
    """The helpers' run."""
''',
}


def test_targets_resolve_like_sphinx(tmp_path):
    (tmp_path / "pkg").mkdir()
    for name, source in PACKAGE.items():
        (tmp_path / "pkg" / name).write_text(source)
    package = griffe.load("pkg", search_paths=[tmp_path])
    linked, plain = roles.link_package_roles(package)
    assert (linked, plain) == (14, 1)

    def targets(path):
        value = (package[path] if path else package).docstring.value
        assert not RAW_ROLE.search(value), value
        return re.findall(r'identifier="([^"]+)"', value)

    # in the module first; an imported name links to where it is defined
    assert targets("stats") == ["pkg.stats.fit", "pkg.stats.Model", "pkg._impl.helper",
                                "pkg.stats.run"]
    assert targets("") == ["pkg.stats", "pkg.stats.fit"]
    # from a function, the enclosing module's class; an outside target is plain code
    assert targets("stats.fit") == ["pkg.stats.Model.score"]
    assert "`numpy.polyfit`" in package["stats.fit"].docstring.value
    # in a class: its own members, inherited ones (where they are defined)
    assert targets("stats.Model") == ["pkg.stats.Model.score", "pkg.stats.Base.describe",
                                      "pkg.stats.Model.size"]
    assert targets("stats.Model.score") == ["pkg.stats.fit"]
    # ~ on a full path; a name of the module wins over a same name elsewhere; a dotted
    # suffix found anywhere in the package
    assert targets("_impl") == ["pkg.stats.fit", "pkg._impl.run", "pkg.stats.Model.score"]
    # converting twice changes nothing (Griffe may announce the package twice)
    assert roles.link_package_roles(package) == (0, 0)


class _TextOutsideCode(HTMLParser):
    """The text of a page outside <pre> blocks (docstring examples), and its links."""

    def __init__(self) -> None:
        super().__init__()
        self.depth_in_pre = 0
        self.text: list[str] = []
        self.role_links = 0

    def handle_starttag(self, tag, attrs):
        if tag == "pre":
            self.depth_in_pre += 1
        if tag == "a" and roles.LINK_CLASS in (dict(attrs).get("class") or "").split():
            self.role_links += 1

    def handle_endtag(self, tag):
        if tag == "pre":
            self.depth_in_pre -= 1

    def handle_data(self, data):
        if not self.depth_in_pre:
            self.text.append(data)


@pytest.mark.slow
def test_built_api_page_has_links_not_raw_roles(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    page = _TextOutsideCode()
    page.feed((site / "api" / "index.html").read_text())
    raw = RAW_ROLE.findall("".join(page.text))
    assert not raw, f"{len(raw)} raw role markers on the API page"
    # the docstrings hold a few hundred roles: most must have become links
    assert page.role_links > 200, page.role_links
