"""The README's quickstart runs as written."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_quickstart_runs(capsys):
    text = (ROOT / "README.md").read_text()
    after = text.split("<!-- quickstart: executed by tests/test_readme.py -->", 1)[1]
    code = re.search(r"```python\n(.*?)```", after, re.S).group(1)
    assert len([line for line in code.strip().splitlines() if line and not line.startswith("#")]) <= 15
    exec(compile(code, "README.md quickstart", "exec"), {})
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "C_cov" in lines[0]
    queries, error = lines[-1].split()
    assert int(queries) == 400 * 32 and float(error) <= 0.05  # sharpened up to one rare prompt (Δ/d = 0.025)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = 'pip install -e ".[test,hf]" && pytest'
    assert command in readme and command in ci
