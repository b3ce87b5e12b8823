"""The README's API table and the documentation agree with the code.

The README lists every top-level name of ``rnnfuse.__all__`` once, in its order, with the
module that defines it; the API reference's overview lists the same names; the guides'
examples print what their comments say; the README's links point at files that exist.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import rnnfuse

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
GUIDES = sorted((ROOT / "docs").glob("*.md"))


def _section(text: str, heading: str) -> str:
    """The text under a ``## heading`` up to the next ``## `` heading."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _table_names(text: str) -> list[str]:
    """The code-formatted name in the first cell of each table row."""
    return re.findall(r"^\| \[?`(\w+)`", text, re.M)


def test_readme_api_table_lists_all_of_rnnfuse_all_in_order():
    names = _table_names(_section(README, "API"))
    missing = [n for n in rnnfuse.__all__ if n not in names]
    extra = [n for n in names if n not in rnnfuse.__all__]
    assert not missing and not extra, f"README API table: missing {missing}, not in __all__ {extra}"
    assert names == list(rnnfuse.__all__), "README API table: not in the order of rnnfuse.__all__"


def test_readme_api_table_names_the_defining_module():
    rows = re.findall(r"^\| `(\w+)` \| `([\w.]+)` \|", _section(README, "API"), re.M)
    assert len(rows) == len(rnnfuse.__all__)
    for name, module in rows:
        defined_in = getattr(rnnfuse, name).__module__
        assert defined_in == f"rnnfuse.{module}" or defined_in.startswith(f"rnnfuse.{module}."), (
            f"README API table: {name} is defined in {defined_in}, the table says {module}"
        )


def test_reference_overview_lists_all_of_rnnfuse_all():
    overview = (ROOT / "docs" / "reference" / "index.md").read_text()
    assert _table_names(overview) == list(rnnfuse.__all__)


def test_readme_links_point_at_files():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    assert links
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def _printing_blocks(path: Path) -> list[str]:
    """Python blocks of a page that print something and state it in a trailing comment."""
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), re.S)
    return [b for b in blocks if re.search(r"print\(.*\)\s+# ", b)]


GUIDE_EXAMPLES = [
    pytest.param(code, id=f"{path.name}:{i}")
    for path in GUIDES
    for i, code in enumerate(_printing_blocks(path))
]


def test_the_guides_have_runnable_examples():
    assert len(GUIDE_EXAMPLES) >= 4


@pytest.mark.parametrize("code", GUIDE_EXAMPLES)
def test_guide_example_prints_what_it_claims(code, capsys):
    exec(compile(code, "guide example", "exec"), {})
    printed = capsys.readouterr().out.strip()
    claimed = re.search(r"print\(.*\)\s+# (.*)", code).group(1).strip()
    assert printed == claimed


def test_reference_pages_name_importable_modules():
    pages = sorted((ROOT / "docs" / "reference").glob("*.md"))
    targets = [m for page in pages for m in re.findall(r"^::: ([\w.]+)", page.read_text(), re.M)]
    assert "rnnfuse.stack" in targets
    for target in targets:
        importlib.import_module(target)
