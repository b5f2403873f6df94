"""Imports point one way (README "Layout"): jobs -> policies/envs -> acodm_ray, and no two modules or
packages of ours import each other (function-level imports count: a late import is still a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("acodm_ray", "envs", "policies")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: the modules of ours it imports} over acodm_ray/, envs/ and policies/."""
    modules = {_module_name(p): p for layer in LAYERS for p in (ROOT / layer).rglob("*.py")}

    def ours(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for imported in names:
                target = ours(imported)
                if (
                    target and target != name and not name.startswith(target + ".")
                ):  # a package's own parent
                    targets.add(target)
        graph[name] = targets
    return graph


def _unit(module: str) -> str:
    """acodm_ray.agent.ddpg -> acodm_ray.agent; acodm_ray.config -> acodm_ray.config; envs.x -> envs."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "acodm_ray" else parts[0]


def _mutual(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted(
        {tuple(sorted((a, b))) for a, bs in edges.items() for b in bs if a in edges.get(b, set())}
    )


def test_no_two_modules_import_each_other():
    assert _mutual(import_graph()) == []


def test_no_two_packages_import_each_other():
    units: dict[str, set[str]] = {}
    for a, bs in import_graph().items():
        units.setdefault(_unit(a), set()).update(_unit(b) for b in bs if _unit(b) != _unit(a))
    assert _mutual(units) == []


def test_imports_point_down_the_layers():
    graph = import_graph()
    assert {
        (a, b)
        for a, bs in graph.items()
        if a.startswith("acodm_ray")
        for b in bs
        if not b.startswith("acodm_ray")
    } == set()  # the core imports neither envs nor policies
    assert {
        (a, b)
        for a, bs in graph.items()
        if a.startswith("envs")
        for b in bs
        if b.startswith("policies")
    } == set()


def test_the_graph_sees_late_imports():
    """The check would be empty if the walk missed function-level imports: the target's driver imports
    the policy server at module level and several modules import lazily inside functions."""
    graph = import_graph()
    assert "acodm_ray.policy_server" in graph["acodm_ray.target.driver"]
    assert "acodm_ray.target" in graph["acodm_ray.compare.schedule"]  # inside run_comparison()


MODULE_LINES = 400  # a reader holds a module in one sitting
JOB_LINES = 60  # a job is arguments, a config and a call into the library
DATA_FORMAT_MODULES = ("acodm_ray/data/formats.py",)  # pure data formats may run longer


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_modules_stay_short():
    """The layout the README describes: no module of ours over ~400 lines, no job over ~60."""
    long = {
        str(p.relative_to(ROOT)): _lines(p)
        for layer in (*LAYERS, "jobs")
        for p in (ROOT / layer).rglob("*.py")
        if _lines(p) > MODULE_LINES and str(p.relative_to(ROOT)) not in DATA_FORMAT_MODULES
    }
    assert long == {}
    jobs = {p.name: _lines(p) for p in (ROOT / "jobs").glob("*.py") if not p.name.startswith("_")}
    assert set(jobs) >= {"proxy_rl.py", "target_pretrain.py", "compare.py"}
    assert {name: n for name, n in jobs.items() if n > JOB_LINES} == {}


FUNCTION_LINES = 60  # a function a reader takes in at once: one job, its loop in view


def test_functions_stay_short():
    """No function or method of ours over ~60 lines (signature and docstring included)."""
    long = {}
    for layer in (*LAYERS, "jobs"):
        for path in (ROOT / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    key = f"{path.relative_to(ROOT)}:{node.name}"
                    lines = node.end_lineno - node.lineno + 1
                    if lines > FUNCTION_LINES:
                        long[key] = lines
    assert long == {}
