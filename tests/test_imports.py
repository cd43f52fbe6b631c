"""The dependency direction of STYLE.md, read from the source (no imports executed).

runtime: numpy/scipy/trimesh/numba only (no torch, GL, sockets); viewer: never torch, and
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


def _inside(mod: str, package: str) -> bool:
    return mod == package or mod.startswith(package + ".")


def test_streaming_never_imports_generator_viewer_or_torch_outside_the_cli():
    graph = _module_imports()
    bad = [b for b in _forbidden(graph, "streaming", ("torch", "generator", "viewer", "onnxruntime"))
           if not _inside(b.split(" -> ")[0], "streaming.cli")]
    assert bad == []


def test_only_the_cli_composes_generator_and_viewer():
    graph = _module_imports()
    both = []
    for mod in graph:
        roots = {name.split(".")[0] for name in _closure(graph, mod)}
        if {"generator", "viewer"} <= roots:
            both.append(mod)
    assert both and all(_inside(m, "streaming.cli") for m in both), both
    assert "streaming.cli" in both  # the console script's package composes them


def test_the_graph_sees_real_imports():
    # Guard against a parser that sees nothing: the tile service imports runtime.tin.simplify (via runtime.wire).
    graph = _module_imports()
    assert "runtime.tin.simplify" in _closure(graph, "streaming.tileservice")


def _project_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in the file, lazy imports included)."""
    return {mod: {n for n in names if n in graph and n != mod} for mod, names in graph.items()}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_known_circle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_the_four_packages():
    # Lazy (in-function) imports count too: a circle hidden in a function is still a circle.
    graph = _module_imports()
    assert "generator.learned.backends" in _closure(graph, "generator.learned.refiner")
    assert _cycles(_project_edges(graph)) == []
