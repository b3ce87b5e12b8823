"""The README's runnable examples, run as written: each Python block that prints something
states what it prints in a trailing comment, and that must be what it prints (the guides'
examples under docs/: tests/test_docs.py)."""

import re
from pathlib import Path

import pytest

README = (Path(__file__).parents[2] / "README.md").read_text()
BLOCKS = [
    b for b in re.findall(r"```python\n(.*?)```", README, re.S) if re.search(r"print\(.*\)\s+# ", b)
]


def test_the_readme_has_runnable_examples():
    assert len(BLOCKS) >= 1


@pytest.mark.parametrize("code", BLOCKS, ids=lambda b: b.splitlines()[-1][:40])
def test_readme_example_prints_what_it_claims(code, capsys):
    exec(compile(code, "README example", "exec"), {})
    printed = capsys.readouterr().out.strip()
    claimed = re.search(r"print\(.*\)\s+# (.*)", code).group(1).strip()
    assert printed == claimed


def test_public_names_exist():
    import rnnfuse

    missing = [name for name in rnnfuse.__all__ if not hasattr(rnnfuse, name)]
    assert not missing
