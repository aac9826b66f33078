"""The built wheel carries every package the installed CLI needs (a missing package shows up here,
not only in a fresh venv) and declares the console script."""

import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (path,) = out.glob("sharpsim-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_contains_every_source_package(wheel):
    names = set(wheel.namelist())
    for pkg in ["sharpsim", "bounds", "sharpsim_experiments"]:
        for src in (ROOT / pkg).rglob("*.py"):
            rel = src.relative_to(ROOT).as_posix()
            if "__pycache__" not in rel:
                assert rel in names, f"{rel} is missing from the wheel"


def test_wheel_declares_the_console_script(wheel):
    (ep,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    assert "sharpsim = sharpsim.cli:main" in wheel.read(ep).decode()


def test_wheel_installs_no_generic_top_level_experiments_package(wheel):
    """Issue 13: the experiments install as ``sharpsim_experiments``, not as a site-packages-wide ``experiments``."""
    tops = {n.split("/", 1)[0] for n in wheel.namelist() if "/" in n and ".dist-info" not in n}
    assert "experiments" not in tops
    assert "sharpsim_experiments" in tops
