"""Sphinx cross-reference roles in the docstrings, rendered as links on the MkDocs site.

The docstrings are numpydoc and write their cross-references as Sphinx roles
(``:func:`miakit.lira.fit```, ``:class:`~miakit.metrics.ranking.RankedScores```,
``:meth:`Run.write_model <miakit.shadow._run.Run.write_model>```): what ``help()`` and an
IDE show, and what Sphinx would link. mkdocstrings does not know them and printed them
raw. This Griffe extension (mkdocs.yml, ``mkdocstrings`` handler option ``extensions``)
rewrites them once the package is loaded, before any docstring is rendered, so the
source keeps one notation:

- a target that names an object of the package becomes an mkdocs-autorefs
  cross-reference to its canonical path, shown in code. Short targets are looked up
  the way Sphinx does: in the enclosing class, module and packages first, then any
  object whose dotted path ends with the target (the nearest one to the docstring
  when several do). ``~`` shows the last component only, a leading ``.`` is dropped,
  ``Title <target>`` shows the title, ``!`` asks for no link;
- a target that names nothing in the package (``numpy.ndarray``, a typo) is shown as
  plain code, neither a raw marker nor a broken link.

The cross-references are *optional* autorefs (as mkdocstrings writes for signatures):
an object that is resolved but not rendered on any page (a private helper module)
shows as code with its full path as a tooltip instead of failing the strict build.
Doctest examples and fenced code are left as they are.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from typing import Any

import griffe

# The Python-domain roles of Sphinx (with or without the ``py:`` domain prefix).
PYTHON_ROLES = ("func", "function", "meth", "method", "class", "mod", "module", "data",
                "attr", "attribute", "obj", "exc", "const", "type")

# A double-backquoted literal (kept as it is, so ``:func:`x``` written as an example of
# the syntax is not converted) or a role with its backquoted body (which may wrap lines).
_ROLE_OR_LITERAL = re.compile(
    r"``.+?``"
    r"|:(?:py:)?(?P<role>" + "|".join(PYTHON_ROLES) + r"):`(?P<body>[^`]+)`",
    re.DOTALL,
)
# ``Title <target>``: an explicit title.
_EXPLICIT_TITLE = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$", re.DOTALL)
# The class autorefs puts on the links made here (the site's tests count them).
LINK_CLASS = "docstring-role"


def convert_roles(text: str, resolve: Callable[[str], str | None]) -> str:
    """Rewrite the Sphinx roles of a docstring as autorefs cross-references or code.

    Parameters
    ----------
    text : str
        A docstring (Markdown with numpydoc sections).
    resolve : callable
        Maps a target as written (``fit``, ``miakit.lira.fit``, ``Run.write_model``;
        without ``~``, ``!``, a leading ``.`` or trailing ``()``) to the full path to
        link to, or ``None`` when the target names nothing that can be linked.

    Returns
    -------
    str
        The docstring with every role replaced: a resolved one by
        ``<autoref identifier="PATH" optional ...><code>TITLE</code></autoref>``, an
        unresolved one by ```TITLE``` (Markdown code). Lines of doctest examples
        (``>>>`` to the next blank line) and fenced code blocks are unchanged.

    Examples
    --------
    >>> paths = {"fit": "pkg.fit"}
    >>> convert_roles("Calls :func:`~miakit.x.fit` then :func:`numpy.sum`.", lambda t: None)
    'Calls `fit` then `numpy.sum`.'
    >>> convert_roles(":func:`fit`", paths.get)
    '<autoref identifier="pkg.fit" optional class="docstring-role"><code>fit</code></autoref>'
    """
    return "".join(
        _replace_roles(chunk, resolve) if convertible else chunk
        for chunk, convertible in _split_code(text)
    )


def _split_code(text: str) -> Iterator[tuple[str, bool]]:
    """Cut ``text`` into chunks, each with whether it is prose (``True``) or code
    (doctest example lines up to a blank line, or a fenced block), keeping every
    character so that joining the chunks gives ``text`` back."""
    lines = text.splitlines(keepends=True)
    prose: list[str] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith(">>>") or stripped.startswith(("```", "~~~")):
            if prose:
                yield "".join(prose), True
                prose = []
            end = i + 1
            if stripped.startswith(">>>"):
                while end < len(lines) and lines[end].strip():
                    end += 1
            else:
                fence = stripped[:3]
                while end < len(lines) and not lines[end].strip().startswith(fence):
                    end += 1
                end = min(end + 1, len(lines))
            yield "".join(lines[i:end]), False
            i = end
        else:
            prose.append(lines[i])
            i += 1
    if prose:
        yield "".join(prose), True


def _replace_roles(text: str, resolve: Callable[[str], str | None]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["role"] is None:  # a ``literal``
            return match[0]
        body = " ".join(match["body"].split())  # a role may wrap lines
        link = True
        explicit = _EXPLICIT_TITLE.match(body)
        if explicit:
            title, target = explicit["title"], explicit["target"].strip()
        else:
            target = body
            if target.startswith("!"):
                link, target = False, target[1:]
            if target.startswith("~"):
                target = target[1:]
                title = target.rsplit(".", 1)[-1]
            else:
                title = target.lstrip(".")
        target = target.lstrip("~!.").removesuffix("()")
        identifier = resolve(target) if link else None
        if identifier is None:
            return f"`{title}`"
        return (f'<autoref identifier="{html.escape(identifier)}" optional '
                f'class="{LINK_CLASS}"><code>{html.escape(title)}</code></autoref>')

    return _ROLE_OR_LITERAL.sub(replace, text)


class PackageIndex:
    """Finds the object a role's target names, from the docstring it appears in.

    Parameters
    ----------
    package : griffe.Module
        The loaded top-level package; every object under it can be a target.
    """

    def __init__(self, package: griffe.Module) -> None:
        self.package = package
        # Every object defined in the package (aliases, i.e. imports, left out: they are
        # found through their target), keyed by its last name for the suffix search.
        self.objects: list[griffe.Object] = list(_walk(package))
        self.by_name: dict[str, list[griffe.Object]] = {}
        for obj in self.objects:
            self.by_name.setdefault(obj.name, []).append(obj)

    def lookup(self, path: str) -> griffe.Object | None:
        """The object at the dotted ``path`` (through imports and, in classes, inherited
        members), or ``None``."""
        head, *rest = path.split(".")
        if head != self.package.name:
            return None
        obj: Any = self.package
        try:
            for name in rest:
                obj = _final(obj).all_members[name]
            return _final(obj)
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None

    def resolve(self, target: str, scope: griffe.Object) -> str | None:
        """The canonical path of the object ``target`` names in the docstring of
        ``scope``, or ``None``: a full path; else the target inside the enclosing class,
        module or package, innermost first; else the one object whose path ends with
        ``.target`` (the one sharing the longest prefix with ``scope`` when several)."""
        found = self.lookup(target)
        enclosing: griffe.Object | None = scope
        while found is None and enclosing is not None:
            if enclosing.is_module or enclosing.is_class:
                found = self.lookup(f"{enclosing.path}.{target}")
            enclosing = enclosing.parent
        if found is None:
            found = self._by_suffix(target, scope)
        return None if found is None else found.path

    def _by_suffix(self, target: str, scope: griffe.Object) -> griffe.Object | None:
        last = target.rsplit(".", 1)[-1]
        matches = [obj for obj in self.by_name.get(last, [])
                   if obj.path == target or obj.path.endswith("." + target)]
        if len(matches) <= 1:
            return matches[0] if matches else None
        here = scope.path.split(".")

        def shared(obj: griffe.Object) -> int:
            count = 0
            for a, b in zip(obj.path.split("."), here):
                if a != b:
                    break
                count += 1
            return count

        best = max(shared(obj) for obj in matches)
        nearest = [obj for obj in matches if shared(obj) == best]
        return nearest[0] if len(nearest) == 1 else None


def _final(obj: Any) -> Any:
    return obj.final_target if obj.is_alias else obj


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


def link_package_roles(package: griffe.Module) -> tuple[int, int]:
    """Rewrite the roles in every docstring of ``package`` (in place).

    Returns
    -------
    tuple of int
        How many roles became cross-references and how many plain code.
    """
    index = PackageIndex(package)
    counts = [0, 0]
    for obj in index.objects:
        if obj.docstring is None:
            continue

        def resolve(target: str, scope: griffe.Object = obj) -> str | None:
            identifier = index.resolve(target, scope)
            counts[identifier is None] += 1
            return identifier

        obj.docstring.value = convert_roles(obj.docstring.value, resolve)
    return counts[0], counts[1]


class SphinxRoles(griffe.Extension):
    """Griffe extension: converts the Sphinx roles of a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        link_package_roles(pkg)

    # The same event under its name before Griffe 1.x renamed it; a second pass finds no
    # role left, so a Griffe that calls both does the work once.
    on_package_loaded = on_package
