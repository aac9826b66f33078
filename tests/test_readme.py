"""The README's quickstart runs as written."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_quickstart_runs(capsys):
    text = (ROOT / "README.md").read_text()
    after = text.split("<!-- quickstart: executed by tests/test_readme.py -->", 1)[1]
    code = re.search(r"```python\n(.*?)```", after, re.S).group(1)
    assert len(code.strip().splitlines()) <= 30
    exec(compile(code, "README.md quickstart", "exec"), {})
    out = capsys.readouterr().out
    assert "C_cov" in out and "3200" in out


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = 'pip install -e ".[test,hf]" && pytest'
    assert command in readme and command in ci
