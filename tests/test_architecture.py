"""The shape of the package (docs/architecture.md): dependencies point one way, no import circles (imports inside
functions count), the command line stays thin."""

import ast
import graphlib
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "llmsynth"

# Each stage may import the stages above it, never one below it.
LAYERS = [
    {"errors", "versions"},
    {"serialize", "model", "processes"},
    {"data"},
    {"scrub"},
    {"train", "generate"},
    {"evaluate"},
    {"synthesizers"},
    {"pipeline"},
    {"demo", "sweep"},
    {"cli_options"},
    {"cli"},
    {"__main__", "__init__"},  # __init__: the facade (llmsynth.TabularSynthesizer...)
]
# Evaluation sees a fitted model only through a narrow interface (evaluate.canary.CanaryHost), never the classes.
EVALUATE_NEVER = {"train", "generate", "synthesizers", "pipeline"}


def _imports() -> dict[str, set[str]]:
    """Every llmsynth module -> the llmsynth modules it imports, anywhere in its code."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return {name: graph[name] for name in modules}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_circles():
    try:
        graphlib.TopologicalSorter(_imports()).prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import circle: {' -> '.join(error.args[1])}")


def test_dependencies_point_one_way():
    layer = {stage: number for number, stages in enumerate(LAYERS) for stage in stages}
    wrong = sorted({(_stage(a), _stage(b)) for a, targets in _imports().items() for b in targets
                    if _stage(a) != _stage(b)
                    and (layer[_stage(b)] >= layer[_stage(a)]
                         or (_stage(a) == "evaluate" and _stage(b) in EVALUATE_NEVER))})
    assert not wrong, f"imports against the direction of the pipeline: {wrong}"


def test_the_command_line_and_the_library_functions_stay_short():
    assert len((PACKAGE / "cli.py").read_text().splitlines()) < 300
    long = [f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in PACKAGE.rglob("*.py") for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno >= 80]
    assert not long
