"""The package's shape in figures: modules, import edges, loops, imports against the layers,
project imports made inside functions, and the longest files and functions.

    python scripts/layout_report.py                 # this checkout
    python scripts/layout_report.py --root OTHER    # another checkout, e.g. an older commit's worktree

The import graph is grimp's (the engine of import-linter, which `tests/test_layout.py` runs
against the layers declared in pyproject.toml). grimp counts every import statement, those
inside functions too; which ones sit inside a function is read from the syntax tree here.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "coder_align"
# the layers of pyproject.toml's import-linter contract, top first (`|` and `:` join siblings)
CONTRACT_FILE = "pyproject.toml"


def module_files(root: Path) -> dict[str, Path]:
    files = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def function_spans(tree: ast.AST) -> list[tuple[int, int]]:
    return [(n.lineno, n.end_lineno) for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def import_graph(root: Path):
    sys.path.insert(0, str(root))
    import grimp

    return grimp.build_graph(PACKAGE, cache_dir=None)


def edges(graph) -> set[tuple[str, str]]:
    """(importer, imported) pairs between different modules; an import of a package's own
    submodule from its face (`__init__`) counts like any other."""
    return {(a, b) for a in graph.modules for b in graph.find_modules_directly_imported_by(a) if a != b}


def lazy_imports(graph, files: dict[str, Path], pairs) -> list[tuple[str, str, int]]:
    """Project imports made inside a function: (importer, imported, line)."""
    spans = {m: function_spans(ast.parse(p.read_text(encoding="utf-8"))) for m, p in files.items()}
    found = []
    for a, b in sorted(pairs):
        for detail in graph.get_import_details(importer=a, imported=b):
            line = detail["line_number"]
            if any(lo < line <= hi for lo, hi in spans.get(a, [])):
                found.append((a, b, line))
    return found


def cycles(nodes, pairs) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in pairs:
        succ.setdefault(a, []).append(b)
        succ.setdefault(b, [])
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for start in sorted(succ):
        if start in index:
            continue
        work = [(start, iter(succ[start]))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(succ[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(out)


def unit(module: str) -> str:
    """The room a module lives in: a subpackage, or a top-level module of its own."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def layer_violations(root: Path, graph) -> list[str] | None:
    """Imports against the layers contract of pyproject.toml (None where it declares none)."""
    import tomllib

    config = tomllib.loads((root / CONTRACT_FILE).read_text(encoding="utf-8"))
    contracts = config.get("tool", {}).get("importlinter", {}).get("contracts", [])
    layered = [c for c in contracts if c.get("type") == "layers"]
    if not layered:
        return None
    from grimp import Layer

    found = []
    for contract in layered:
        layers = []
        for line in contract["layers"]:
            independent = "|" in line
            names = [n.strip() for n in line.replace(":", "|").split("|") if n.strip()]
            names = [n if n.startswith(PACKAGE) else f"{PACKAGE}.{n}" for n in names]
            layers.append(Layer(*[n for n in names if n in graph.modules], independent=independent))
        for dependency in graph.find_illegal_dependencies_for_layers(layers=layers):
            for route in dependency.routes:
                found.append(f"{dependency.importer} -> {dependency.imported} via {sorted(route.heads)}")
    return found


def long_definitions(files: dict[str, Path], limit: int) -> list[tuple[int, str]]:
    rows = []
    for path in files.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    rows.append((length, f"{path.as_posix().split(PACKAGE + '/', 1)[1]}:{node.name}"))
    return sorted(rows, reverse=True)


def report(root: Path, function_limit: int = 60, file_limit: int = 400) -> dict:
    files = module_files(root)
    graph = import_graph(root)
    pairs = edges(graph)
    lazy = lazy_imports(graph, files, pairs)
    unit_pairs = {(unit(a), unit(b)) for a, b in pairs if unit(a) != unit(b)}
    top_level = sorted(m for m in files if m.count(".") == 1 and not files[m].name == "__init__.py")
    lines = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in files.items()}
    return {
        "modules": len(files),
        "top_level_modules": len(top_level),
        "packages": sorted(m for m, p in files.items() if p.name == "__init__.py" and m != PACKAGE),
        "import_edges": len(pairs),
        "edges_between_rooms": len(unit_pairs),
        "module_cycles": cycles(files, pairs),
        "room_cycles": cycles({unit(m) for m in files}, unit_pairs),
        "lazy_project_imports": lazy,
        "layer_violations": layer_violations(root, graph),
        "functions_over_limit": long_definitions(files, function_limit),
        "files_over_limit": sorted(((n, m) for m, n in lines.items() if n > file_limit), reverse=True),
        "lines": sum(lines.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]), help="the checkout to measure")
    parser.add_argument("--function-limit", type=int, default=60)
    parser.add_argument("--file-limit", type=int, default=400)
    args = parser.parse_args(argv)
    r = report(Path(args.root), args.function_limit, args.file_limit)
    print(f"modules {r['modules']} ({r['top_level_modules']} at the top of {PACKAGE}/, "
          f"{len(r['packages'])} packages), {r['lines']} lines")
    print(f"import edges {r['import_edges']} between modules, {r['edges_between_rooms']} between rooms "
          "(a room: a package or a top-level module)")
    print(f"module loops {len(r['module_cycles'])}: {r['module_cycles']}")
    print(f"room loops {len(r['room_cycles'])}: {r['room_cycles']}")
    print(f"project imports inside functions {len(r['lazy_project_imports'])}")
    for a, b, line in r["lazy_project_imports"]:
        print(f"  {a}:{line} -> {b}")
    violations = r["layer_violations"]
    print("imports against the layers: " + ("no layers contract in pyproject.toml" if violations is None
                                             else str(len(violations))))
    for v in violations or []:
        print(f"  {v}")
    print(f"functions over {args.function_limit} lines {len(r['functions_over_limit'])}: "
          + ", ".join(f"{name} {n}" for n, name in r["functions_over_limit"]))
    print(f"files over {args.file_limit} lines {len(r['files_over_limit'])}: "
          + ", ".join(f"{name} {n}" for n, name in r["files_over_limit"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
