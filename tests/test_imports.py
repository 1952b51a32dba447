"""The import graph of `study` and `search_spaces` has no circles.

Every `import` statement counts, the ones inside functions too: a lazy import that closes a loop
still ties the two modules together (change one, the other breaks at run time, not at import).
Dynamic imports by string (`importlib.import_module(f"search_spaces.{name}")`, how spaces are
found) are not statements and are not counted.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("study", "search_spaces")


def module_names() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of `known` that the file at `path` (module `name`) imports anywhere."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # `from pkg import mod` imports the module pkg.mod when there is one
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        for t in targets:
            # the deepest known module the target names
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = module_names()
    known = set(mods)
    graph = {m: imported(p, m, known) for m, p in mods.items()}
    # a package's own __init__ re-exporting its modules is not a loop: importing study.x runs
    # study/__init__ first by language rule, not by a choice anyone can undo
    for m, deps in graph.items():
        deps -= {d for d in deps if m.startswith(d + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return path[path.index(d) :] + [d]
            if d not in state and (c := visit(d)):
                return c
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_finder_sees_a_loop() -> None:
    """The checker itself: a two-module loop and a three-module loop are found, a chain is not."""
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "x.py").write_text("def f():\n    from p import y\n    from . import z\n")
    known = {"p", "p.x", "p.y", "p.z"}
    assert imported(pkg / "x.py", "p.x", known) == {"p", "p.y", "p.z"}


def test_study_and_search_spaces_import_no_circle() -> None:
    graph = import_graph()
    assert "study.spaces" in graph and "search_spaces.demo" in graph  # the walk found them
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_study_never_imports_search_spaces() -> None:
    """Spaces depend on the package, not the other way round (study.spaces finds their folder
    with importlib.util.find_spec and loads each by name)."""
    graph = import_graph()
    back = {
        m: sorted(d for d in deps if d.startswith("search_spaces"))
        for m, deps in graph.items()
        if m.startswith("study")
    }
    assert {m: d for m, d in back.items() if d} == {}


# ------------------------------------------------------------------ the layers
# Data flows one way: spaces -> training -> tuning -> evaluation -> results -> report, driven by
# run/. results/ is the study folder every stage writes and reads, so any stage may import it.
STAGES = ("spaces", "training", "tuning", "evaluation", "results", "report", "run")


def importers_of(graph: dict[str, set[str]], target: str) -> dict[str, list[str]]:
    """Modules that import `target` or a module below it, with those imports."""
    hit = {
        m: sorted(d for d in deps if d == target or d.startswith(target + "."))
        for m, deps in graph.items()
    }
    return {m: d for m, d in hit.items() if d and not (m == target or m.startswith(target + "."))}


def test_nothing_below_run_imports_run() -> None:
    graph = import_graph()
    assert importers_of(graph, "study.run") == {}


def test_training_never_imports_tuning_evaluation_or_report() -> None:
    """A trial is torch only: the stages after it (and Ray through them) stay out."""
    graph = import_graph()
    training = {m: deps for m, deps in graph.items() if m.startswith("study.training")}
    for later in ("study.tuning", "study.evaluation", "study.report", "study.run"):
        assert importers_of(training, later) == {}, later


def test_results_report_and_spaces_never_import_the_stages_that_need_ray_or_torch() -> None:
    graph = import_graph()
    light = {
        m: deps
        for m, deps in graph.items()
        if m.startswith(("study.results", "study.report", "study.spaces"))
    }
    for heavy in ("study.training", "study.tuning", "study.evaluation", "study.run"):
        assert importers_of(light, heavy) == {}, heavy


def every_module_of(*packages: str) -> list[str]:
    return sorted(m for m in module_names() if m.startswith(packages) and "__main__" not in m)


BLOCKED_IMPORT = """
import importlib, sys
for name in {blocked!r}:
    sys.modules[name] = None  # `import name` now raises ImportError
failed = []
for module in {modules!r}:
    try:
        importlib.import_module(module)
    except ImportError as e:
        failed.append(f"{{module}}: {{e}}")
print("\\n".join(failed))
"""


def import_blocked(modules: list[str], blocked: tuple[str, ...]) -> str:
    code = BLOCKED_IMPORT.format(blocked=blocked, modules=modules)
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip()


def test_training_imports_without_ray() -> None:
    assert import_blocked(every_module_of("study.training"), ("ray",)) == ""


def test_results_report_and_spaces_import_without_ray_or_torch() -> None:
    modules = every_module_of("study.results", "study.report", "study.spaces")
    assert import_blocked(modules, ("ray", "torch")) == ""


def test_the_checker_sees_a_blocked_import() -> None:
    assert "study.tuning.tuner" in import_blocked(["study.tuning.tuner"], ("ray",))


def test_study_has_few_root_modules_and_one_folder_per_stage() -> None:
    root = sorted(p.name for p in (ROOT / "study").glob("*.py"))
    assert len(root) <= 8, root
    for stage in STAGES:
        assert (ROOT / "study" / stage / "__init__.py").is_file(), stage
