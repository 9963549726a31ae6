"""The package as a whole: its layout, no import cycles between its modules, the public API importable."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lsm_core"
SUBPACKAGES = ("model", "engines", "data", "runs", "analysis", "cli")


def module_names() -> set:
    """Every module of lsm_core as a dotted name below it ("runs.pipeline", "config"), packages' __init__
    left out."""
    return {".".join(path.relative_to(PACKAGE).with_suffix("").parts) for path in PACKAGE.rglob("*.py")
            if path.name != "__init__.py"}


def imports_of(path: Path, modules: set) -> set:
    """The lsm_core modules that `path` imports anywhere (at the top or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and (node.module + ".").startswith("lsm_core."):
            base = node.module[len("lsm_core."):]
            for alias in node.names:               # `from lsm_core.runs import pipeline` names a module
                name = f"{base}.{alias.name}" if base else alias.name
                found.add(name if name in modules else base)
        elif isinstance(node, ast.Import):
            found |= {alias.name[len("lsm_core."):] for alias in node.names if alias.name.startswith("lsm_core.")}
    return found & modules


def test_every_module_sits_in_a_subpackage_or_is_a_shared_foundation():
    """The layout shows the architecture: six subpackages, and at the top only what all of them share."""
    top = {name for name in module_names() if "." not in name}
    assert top == {"__main__", "config", "errors", "places", "progress", "storage"}
    assert {name.split(".")[0] for name in module_names() if "." in name} == set(SUBPACKAGES)


def test_subpackages_import_nothing_on_their_own():
    """A subpackage's __init__ is its table of contents, so importing one module never drags in others."""
    for sub in SUBPACKAGES:
        tree = ast.parse((PACKAGE / sub / "__init__.py").read_text(encoding="utf-8"))
        assert ast.get_docstring(tree) and len(tree.body) == 1, sub


def test_no_module_imports_itself_through_others():
    """A cycle means two modules cannot be read (or imported) on their own; lazy imports count too."""
    modules = module_names()
    graph = {name: imports_of(PACKAGE / (name.replace(".", "/") + ".py"), modules) - {name} for name in modules}
    assert graph["runs.pipeline"] >= {"runs.folder", "analysis.readout"}        # the parser sees the imports
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
