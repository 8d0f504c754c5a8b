"""The package's import graph: no cycles, and imports flow down the layers only."""

from __future__ import annotations

import ast
from pathlib import Path

import deeplab

ROOT = Path(deeplab.__file__).parent
# lower number = lower layer; a module may import its own layer (no cycles) or lower ones
LAYERS = {
    "constants": 0,
    "palette": 0,
    "atomic": 0,
    "forks": 0,
    "imageio": 1,
    "checkpoint": 1,
    "devices": 1,
    "distributed": 1,
    "formats": 1,
    "metrics": 2,
    "models": 2,
    "crf": 2,
    "data": 2,
    "inference": 3,
    "evaluation": 4,
    "train": 5,
    "apps": 6,
    "__init__": 7,
    "__main__": 7,
}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """deeplab module -> the deeplab modules it imports (anywhere in the file, functions included)."""
    graph = {}
    for path in ROOT.rglob("*.py"):
        name, found = _module(path), set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deeplab"):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("deeplab"))
        modules = {m for m in found if (ROOT.parent / m.replace(".", "/")).with_suffix(".py").exists()}
        modules |= {m for m in found if (ROOT.parent / m.replace(".", "/") / "__init__.py").exists()}
        graph[name] = modules - {name}
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else LAYERS["__init__"]


def test_imports_flow_down_the_layers():
    upward = [
        f"{a} -> {b}"
        for a, targets in _imports().items()
        for b in targets
        if b != "deeplab" and _layer(b) > _layer(a) and not (a.startswith(b + ".") or b.startswith(a + "."))
    ]
    assert not upward, upward


def test_no_import_cycles():
    graph = _imports()
    # a package's __init__ re-exports its modules: those edges are not dependencies of the package's parts
    edges = {a: {b for b in bs if not b.startswith(a + ".") and b != "deeplab"} for a, bs in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in edges:
        if node not in state:
            visit(node, [])


def test_only_inference_touches_openvino():
    """The fork rule is asked through deeplab.forks; OpenVINO itself stays inside inference/."""
    outside = [
        f"{a} -> {b}"
        for a, targets in _imports().items()
        for b in targets
        if "openvino" in b and not a.startswith("deeplab.inference")
    ]
    raw = [
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*.py")
        if path.parent.name != "inference" and "import openvino" in path.read_text()
    ]
    assert not outside and not raw, outside + raw
