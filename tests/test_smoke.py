"""The README example, run as written."""

import re
from pathlib import Path



def test_readme_example_runs_and_prints_what_it_claims(capsys):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"## Example\n\n```python\n(.*?)```", readme, re.S).group(1)
    exec(compile(code, "README example", "exec"), {})
    printed = capsys.readouterr().out.strip()
    claimed = re.search(r"print\(.*\)\s+# (.*)", code).group(1)
    assert printed == claimed


def test_public_names_exist():
    import rnnfuse

    for name in rnnfuse.__all__:
        assert hasattr(rnnfuse, name), name
