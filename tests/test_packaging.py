"""What an install puts on a machine: a distribution of our own name (the index's `study` is
another project), one top-level package `study` with the shipped spaces inside it, and the `study`
command. Built from a copy of the sources, so that the checkout gets no build/ or egg-info."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# what setup.py and pyproject.toml build from (.dockerignore admits the same)
SOURCES = ("pyproject.toml", "setup.py", "README.md", "study", "search_spaces")


def test_the_distribution_has_a_name_of_its_own() -> None:
    # `study` 0.1.0 on the public index is an unrelated project: `pip install study` must never
    # be how this one is installed, and its name must not be what a resolver could confuse
    assert PYPROJECT["name"] not in ("study", "search-spaces")
    assert PYPROJECT["scripts"] == {"study": "study.cli:main"}  # the command keeps its name


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (whl,) = out.glob("*.whl")
    return whl


def test_the_wheel_installs_one_top_level_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    dist = PYPROJECT["name"].replace("-", "_")
    assert wheel.name.startswith(f"{dist}-")
    assert {n.split("/")[0] for n in names} == {
        "study",
        f"{dist}-{wheel.name.split('-')[1]}.dist-info",
    }
    shipped = sorted(p.name for p in (REPO / "search_spaces").glob("*.py"))
    assert (
        sorted(n.split("/")[-1] for n in names if n.startswith("study/search_spaces/")) == shipped
    )
    assert "study/report/template.html" in names  # package data


def test_installed_spaces_load_from_the_package(wheel: Path, tmp_path: Path) -> None:
    """From anywhere but a checkout, every shipped space loads as study.search_spaces.NAME (so
    their imports of each other are relative, and nothing imports a top-level search_spaces)."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        # a top-level search_spaces, wherever one could come from (another install's finder), is
        # not there for an installed wheel: None in sys.modules makes it absent to find_spec and
        # an ImportError to an import
        "import json, sys\n"
        "sys.modules['search_spaces'] = None\n"
        "from study.spaces.loader import list_spaces, load_space, space_file\n"
        "loaded = {n: load_space(n).module.__name__ for n in list_spaces()}\n"
        # a copy of a shipped space, run by path, still finds the helpers it imports relatively
        "open('mine.py', 'w').write(space_file('googlenet_ferg').read_text())\n"
        "loaded['mine.py'] = load_space('mine.py').module.__name__\n"
        "print(json.dumps(loaded))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,  # no checkout here: the repository is not on sys.path
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    loaded = json.loads(r.stdout.splitlines()[-1])
    shipped = sorted(p.stem for p in (REPO / "search_spaces").glob("[!_]*.py"))
    assert loaded.pop("mine.py") == "study.search_spaces.user_space_mine"
    assert sorted(loaded) == shipped
    assert set(loaded.values()) == {f"study.search_spaces.{n}" for n in shipped}
