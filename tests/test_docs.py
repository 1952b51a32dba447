"""The README and docs/ stay true to the tree: every module of `study/` is named in
docs/architecture.md, every relative link resolves, and the README stays a first screen (the three
commands first, no machine-dependent figures; those live in benchmarks/results/)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
ARCHITECTURE = REPO / "docs" / "architecture.md"
# every page a reader reaches from the README
PAGES = [
    README,
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "benchmarks" / "results" / "README.md",
]

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)


def modules() -> list[str]:
    """Every module of the package, as a path relative to study/ (`run/driver.py`)."""
    root = REPO / "study"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py"))


def names_path(text: str, path: str) -> bool:
    """`path` appears whole: `__init__.py` is not found inside `run/__init__.py`."""
    return re.search(rf"(?<![\w/.]){re.escape(path)}(?![\w/])", text) is not None


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)  # links, not code
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]


def test_the_checkers_see_what_they_check(tmp_path: Path) -> None:
    assert names_path("| `run/__init__.py` | x |", "run/__init__.py")
    assert not names_path("| `run/__init__.py` | x |", "__init__.py")
    assert names_path("`__init__.py` and `run/driver.py`", "__init__.py")
    page = tmp_path / "p.md"
    page.write_text(
        "[a](a.md) ![i](img/x.png) [w](https://x.org) [s](#top) [f](b.md#part)\n"
        "```\n[c](not-a-link.md)\n```\n"
    )
    assert relative_links(page) == ["a.md", "img/x.png", "b.md#part"]
    assert "training/trial.py" in modules() and "__init__.py" in modules()


def test_architecture_names_every_module() -> None:
    text = ARCHITECTURE.read_text()
    missing = [m for m in modules() if not names_path(text, m)]
    assert missing == [], f"docs/architecture.md does not name: {missing}"


def test_every_relative_link_points_to_a_file() -> None:
    broken = []
    for page in PAGES:
        for target in relative_links(page):
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert broken == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(README.parent / t.split("#")[0]).resolve() for t in relative_links(README)}
    pages = sorted((REPO / "docs").glob("*.md"))
    assert [p.name for p in pages if p.resolve() not in linked] == []


def test_readme_is_a_first_screen() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    first = re.search(r"```bash\n(.*?)```", text, re.DOTALL)
    assert first is not None and text.index("```") == first.start()  # the first code block
    block = first.group(1)
    assert text[: first.start()].count("\n") <= 3  # at the top, under the title
    for command in (
        'pip install -e ".[test]"',
        "python -m pytest -q -n 2",
        "python -m study.data prepare toon && python -m study.run --space demo",
    ):
        assert command in block, command
    # no timings or machine load in the commands' comments
    assert not re.search(r"\d+(\.\d+)?\s*(s|m|min|minutes?|seconds?|h)\b|\bload\b", block), block


def test_readme_holds_no_load_averages_or_commit_hashes() -> None:
    """Measured figures with their date, commit and load belong in benchmarks/results/."""
    text = README.read_text()
    assert re.findall(r"load (average )?[0-9]", text) == []
    assert re.findall(r"[0-9a-f]{7,}", text) == []


def test_ci_runs_the_readmes_test_command_then_the_slow_fault_rows() -> None:
    """The README's command leaves out `slow` (pyproject's addopts), which only the fault tests
    may carry (the fault table's rows, and test_faults' studies of trial and driver faults), and
    only because CI runs them too."""
    block = re.search(r"```bash\n(.*?)```", README.read_text(), re.DOTALL).group(1)
    test = next(line.split("#")[0].strip() for line in block.splitlines() if "pytest" in line)
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert ci.index(test) < ci.index(f"{test} -m slow")
    marked = sorted(
        p.relative_to(REPO).as_posix()
        for p in (REPO / "tests").rglob("*.py")
        if "mark.slow" in p.read_text() and p.name != "test_docs.py"
    )
    assert marked == ["tests/run/test_fault_table.py", "tests/tuning/test_faults.py"]
