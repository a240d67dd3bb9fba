"""Imports point one way, down (DESIGN.md, Layers): no file of tlcore, ui, views or app.py reaches
itself through imports, lazy imports inside functions included; the engine never imports the UI;
a registry imports nothing above it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tlcore", "ui", "views")


def modules() -> dict[str, Path]:
    found = {"app": ROOT / "app.py"}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The project module an import names (a name imported from a package may be a submodule)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Every project module `module` imports, at the top or inside a function."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
        else:
            continue
        if id(node) in skipped:
            continue
        for n in names:
            target = _resolve(n, mods)
            # A module's own packages are initialised before it runs: importing from them is no edge.
            if target and target != module and not module.startswith(target + "."):
                out.add(target)
    return out


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The imports under `if TYPE_CHECKING:`: they never run."""
    return {id(child) for parent in ast.walk(tree)
            if isinstance(parent, ast.If) and isinstance(parent.test, ast.Name) and parent.test.id == "TYPE_CHECKING"
            for stmt in parent.body for child in ast.walk(stmt)}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(m, p, mods) for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in g:
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter[0]; counter[0] += 1
        stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1
                    stack.append(w); on.add(w)
                    work.append((w, iter(sorted(g.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop(); on.discard(w); comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_module_reaches_itself_through_imports():
    g = graph()
    found = cycles(g)
    described = ["; ".join(f"{m} -> {', '.join(sorted(set(g[m]) & set(c)))}" for m in c) for c in found]
    assert not found, "import cycles:\n" + "\n".join(described)


def test_the_engine_never_imports_the_ui():
    g = graph()
    bad = sorted((m, t) for m, ts in g.items() if m.startswith("tlcore") for t in ts
                 if t.split(".")[0] in ("ui", "views", "app"))
    assert not bad, bad
    for m, p in modules().items():
        if m.startswith("tlcore"):
            tree = ast.parse(p.read_text())
            names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
            names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
            assert not any(n.split(".")[0] == "streamlit" for n in names), m


# Each layer may import only the layers below it (DESIGN.md: pages -> ui -> labs / jobs / cli -> train ->
# models / data -> settings, errors). A module not named here sits with its package's entry.
LAYERS = {
    "tlcore.errors": 0, "tlcore.settings": 0, "tlcore.metrics": 0, "tlcore.downloads": 0, "tlcore": 0, "tlcore.disk": 0,
    "tlcore.kinds": 1, "tlcore.paths": 1, "tlcore.device": 1, "tlcore.store": 1, "tlcore.teacher": 1,
    "tlcore.data": 2, "tlcore.models": 2, "tlcore.uploads": 2,
    "tlcore.train": 3,
    "tlcore.memory": 4, "tlcore.limits": 4, "tlcore.advisor": 4, "tlcore.artifacts": 4, "tlcore.export": 4,
    "tlcore.runs": 4, "tlcore.runlist": 4, "tlcore.plan_code": 4, "tlcore.plots": 4, "tlcore.progress": 4,
    "tlcore.prefetch": 4,
    "tlcore.jobs": 5, "tlcore.cli": 5, "tlcore.inspect": 5,
    "tlcore.labs": 6,
    "tlcore.bench": 7, "tlcore.__main__": 7,
    "ui": 8, "views": 9, "app": 10,
}
REGISTRIES = ("tlcore.kinds", "tlcore.data.registry", "tlcore.models.registry")


def layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    raise KeyError(module)


def test_every_module_has_a_layer():
    g = graph()
    missing = [m for m in g if not any(m == k or m.startswith(k + ".") for k in LAYERS if k != "tlcore")
               and m != "tlcore"]
    assert not missing, f"add these to LAYERS (and to DESIGN.md's map): {missing}"


def test_no_import_runs_back_up_a_layer():
    g = graph()
    up = sorted(f"{m} (layer {layer(m)}) -> {t} (layer {layer(t)})" for m, ts in g.items() for t in ts
                if layer(t) > layer(m))
    assert not up, "imports that run back up:\n" + "\n".join(up)


@pytest.mark.parametrize("registry", REGISTRIES)
def test_a_registry_imports_nothing_above_it(registry):
    g = graph()
    above = sorted(t for t in g[registry] if t.split(".")[:2] != registry.split(".")[:2]
                   and layer(t) >= layer(registry))
    assert not above, f"{registry} imports {above}: each entry registers itself instead"
