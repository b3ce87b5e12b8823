"""A Griffe extension for the API reference: rnnfuse's docstrings as Markdown.

The docstrings are written for ``help()`` and doctest: examples as bare ``>>>`` lines and
cross references as Sphinx roles (``:class:`~rnnfuse.StackedRNN```).  mkdocstrings reads
Markdown, where ``>>>`` starts a quotation, so before the docstrings are parsed this
extension

* fences every run of doctest lines that starts a paragraph at the docstring's left margin,
  and reads a Google ``Example:`` section of doctest lines as ``Examples:`` (the section the
  parser renders as code; ``Example:`` would be a note in Markdown);
* turns each role into an optional cross reference: a link where the target is documented
  on the site, plain code otherwise (a role may name a private helper).  References written
  in the guides as ``[text][identifier]`` stay strict: an unknown target fails the build.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(?P<body>[^`]+)`")
_EXAMPLE = re.compile(r"^(\s*)Example:\n(?=\1\s+>>>)", re.M)
_TITLED = re.compile(r"(?P<title>.*?)\s*<(?P<target>[^>]+)>$")


class DocstringsAsMarkdown(griffe.Extension):
    """Rewrite every docstring of a loaded package before mkdocstrings parses it."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _markdown(obj.docstring.value, obj, loader)


def _markdown(text: str, obj: griffe.Object, loader: griffe.GriffeLoader) -> str:
    """One docstring with its doctests fenced and its roles as cross references."""
    text = _EXAMPLE.sub(r"\1Examples:\n", _fence_doctests(text))
    return _ROLE.sub(lambda m: _reference(m, obj, loader), text)


def _objects(obj: griffe.Object) -> list[griffe.Object]:
    """The object and every member defined in it, recursively (imported names skipped)."""
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found.extend(_objects(member))  # type: ignore[arg-type]
    return found


def _fence_doctests(text: str) -> str:
    """Fence each run of ``>>>`` lines (with their printed results) at the left margin."""
    lines, out, inside = text.splitlines(), [], False
    for line in lines:
        if not inside and line.startswith(">>>"):
            out.append("```pycon")
            inside = True
        elif inside and not line.strip():
            out.append("```")
            inside = False
        out.append(line)
    if inside:
        out.append("```")
    return "\n".join(out)


def _reference(match: re.Match[str], obj: griffe.Object, loader: griffe.GriffeLoader) -> str:
    """An optional autorefs link for one Sphinx role."""
    body = match["body"]
    titled = _TITLED.match(body)
    target = titled["target"] if titled else body
    target = target.lstrip("~.")
    shown = titled["title"] if titled else (target.rsplit(".", 1)[-1] if body[0] == "~" else target)
    path = _full_path(target, obj, loader)
    return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'


def _full_path(target: str, obj: griffe.Object, loader: griffe.GriffeLoader) -> str:
    """The documented (canonical) path of a name written in ``obj``'s docstring."""
    path = target
    if not target.startswith("rnnfuse"):
        scope = obj if obj.is_module or obj.is_class else obj.parent
        try:
            path = scope.resolve(target) if scope is not None else target
        except (griffe.NameResolutionError, AttributeError, KeyError, ValueError):
            path = f"{obj.module.path}.{target}"
    try:
        found = loader.modules_collection.get_member(path)
        return str(found.canonical_path)
    except (KeyError, ValueError, AttributeError, griffe.AliasResolutionError, IndexError):
        return path
