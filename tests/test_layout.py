"""The house rules of the package layout (DESIGN.md section 2, issue 24), read from the source:
no import cycles, CLIs imported by no module, converters independent of toolkit, thin CLI
functions, environment changes at entry points only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("toolkit", "converters", "device_profiles")
CLI_MAX_LINES = 40


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = p
    return mods


def _type_checking_only(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                skip.update(id(n) for n in ast.walk(sub))
    return skip


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere (top level or inside functions)."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        tree = ast.parse(p.read_text())
        skip = _type_checking_only(tree)
        pkg = m.split(".") if p.name == "__init__.py" else m.split(".")[:-1]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                graph[m].update(a.name for a in node.names if a.name in mods)
            elif isinstance(node, ast.ImportFrom):
                base = (".".join(pkg[:len(pkg) - node.level + 1] + [node.module or ""]).strip(".")
                        if node.level else node.module)
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    if sub in mods:
                        graph[m].add(sub)
                    elif base in mods:
                        graph[m].add(base)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _is_package_of(importer: str, imported: str) -> bool:
    return imported != importer and importer.startswith(imported + ".")


def test_no_import_cycles():
    graph = _imports(_modules())
    # a package's __init__ re-exporting its own modules is not a cycle of concepts
    pruned = {m: {w for w in ws if not _is_package_of(w, m)} for m, ws in graph.items()}
    assert _cycles(pruned) == []


def test_no_module_imports_a_cli():
    graph = _imports(_modules())
    bad = sorted((m, w) for m, ws in graph.items() for w in ws
                 if w.startswith("toolkit.cli.") and w != m)
    assert bad == []


def test_layers():
    graph = _imports(_modules())
    for m, ws in graph.items():
        if m.startswith("converters"):
            assert not [w for w in ws if w.startswith("toolkit")], m
        if m.startswith("device_profiles"):
            assert not [w for w in ws if not w.startswith("device_profiles")], m


def test_cli_functions_are_short():
    long = []
    for p in sorted((ROOT / "toolkit" / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > CLI_MAX_LINES:
                    long.append(f"{p.name}:{node.lineno} {node.name} ({n} lines)")
    assert long == []


def test_environment_changed_by_entry_points_only():
    allowed = {ROOT / "toolkit" / "cli" / "__init__.py"}
    bad = []
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            if p in allowed:
                continue
            for node in ast.walk(ast.parse(p.read_text())):
                sets_env = (isinstance(node, ast.Assign)
                            and "os.environ[" in ast.unparse(node.targets[0]))
                calls = isinstance(node, ast.Call) and ast.unparse(node.func) in (
                    "os.environ.setdefault", "os.environ.update", "os.putenv",
                    "sys.path.insert", "sys.path.append")
                if sets_env or calls:
                    bad.append(f"{p.name}:{node.lineno}")
    assert bad == []


def test_the_checks_see_a_cycle():
    # the cycle finder finds one where there is one (a test that cannot fail proves nothing)
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
