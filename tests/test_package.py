"""The package as a whole: no import cycles between its modules, the public API importable."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lsm_core"


def imports_of(path: Path, modules: set) -> set:
    """The lsm_core modules that `path` imports anywhere (at the top or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "lsm_core":
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lsm_core."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("lsm_core.")}
    return found - {path.stem, "__init__"}


def test_no_module_imports_itself_through_others():
    """A cycle means two modules cannot be read (or imported) on their own; lazy imports count too."""
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    graph = {name: imports_of(PACKAGE / f"{name}.py", modules) for name in modules}
    cycles = []

    def visit(name, path):
        for other in sorted(graph[name]):
            if other in path:
                cycles.append(path[path.index(other):] + [other])
            elif other not in done:
                visit(other, path + [other])
        done.add(name)

    done = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_public_api_imports():
    import lsm_core

    assert callable(lsm_core.simulate) and lsm_core.Network is not None
