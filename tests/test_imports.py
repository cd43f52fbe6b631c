"""The dependency direction of STYLE.md, read from the source (no imports executed).

runtime: numpy/scipy/trimesh only (no torch, GL, sockets); viewer: never torch, and
never the generator (which needs torch). Checked transitively through the project.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "generator", "streaming", "viewer")


def _module_imports() -> dict[str, set[str]]:
    graph = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            mod = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            names = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names |= {a.name for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module)
                    names |= {f"{node.module}.{a.name}" for a in node.names}
            graph[mod] = names
    return graph


def _closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        mod = todo.pop()
        for name in graph.get(mod, ()):
            if name in seen:
                continue
            seen.add(name)
            if name in graph:
                todo.append(name)
    return seen


def _forbidden(graph, package: str, banned: tuple[str, ...]) -> list[str]:
    bad = []
    for mod in graph:
        if mod == package or mod.startswith(package + "."):
            for name in _closure(graph, mod):
                if name.split(".")[0] in banned:
                    bad.append(f"{mod} -> {name}")
    return bad


def test_runtime_imports_no_torch_gl_or_sockets():
    graph = _module_imports()
    assert graph, "no modules found"
    assert _forbidden(graph, "runtime", ("torch", "moderngl", "glcontext", "glfw", "websockets",
                                         "generator", "streaming", "viewer")) == []


def test_viewer_never_imports_torch_or_generator():
    graph = _module_imports()
    assert _forbidden(graph, "viewer", ("torch", "generator", "onnxruntime")) == []


def test_the_graph_sees_real_imports():
    # Guard against a parser that sees nothing: the tile service does import runtime.tin.simplify (through runtime.wire).
    graph = _module_imports()
    assert "runtime.tin.simplify" in _closure(graph, "streaming.tileservice")
