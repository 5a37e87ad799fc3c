"""The layering of the packages: arrows point down (library <- lab <- cli; atompaint -> structlayers'
library only), no import cycles, and a light ``import structlayers``.

The static checks read every ``import`` statement (function-level ones included) with ``ast``; the
dynamic ones import each library module alone (in a child process forked from one interpreter
that has imported torch) and look at what got loaded.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGES = ("structlayers", "atompaint")
#: Layers of structlayers that the library must never import.
UPPER = ("structlayers.lab", "structlayers.cli")


def is_upper(name: str) -> bool:
    """``name`` is in ``structlayers.lab`` or ``structlayers.cli`` (a package prefix: ``structlayers.clikit``
    is library)."""
    return any(name == upper or name.startswith(upper + ".") for upper in UPPER)


#: The Lightning integration (installed with the ``lab`` extra): the library never imports it, the lab
#: and atompaint do.  Only its callbacks module loads Lightning, so run configs and checkpoints stay light.
INTEGRATION = "structlayers.lightning"
LIGHTNING_CLASSES = INTEGRATION + ".callbacks"


def is_integration(name: str) -> bool:
    return name == INTEGRATION or name.startswith(INTEGRATION + ".")


#: Heavy dependencies that belong to the lab and applications, never to the library.
HEAVY = ("lightning", "pytorch_lightning", "matplotlib", "pandas", "escnn", "gemmi", "torchmetrics", "tensorboard")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in sorted((SRC / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """Every project module ``name`` imports, resolving ``from a import b`` to the submodule a.b
    when there is one and relative imports to absolute names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def is_library(name: str) -> bool:
    return name.startswith("structlayers") and not is_upper(name) and not is_integration(name)


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over the import graph: every one must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_library_never_imports_lab_cli_or_the_integration() -> None:
    bad = {name: sorted(t for t in targets if is_upper(t) or (is_library(name) and is_integration(t)))
           for name, targets in GRAPH.items() if is_library(name) or is_integration(name)}
    assert not {k: v for k, v in bad.items() if v}


def test_atompaint_uses_only_structlayers_library() -> None:
    bad = {name: sorted(t for t in targets if is_upper(t))
           for name, targets in GRAPH.items() if name.startswith("atompaint")}
    assert not {k: v for k, v in bad.items() if v}


def test_the_registry_is_a_leaf() -> None:
    assert GRAPH["structlayers.registry"] <= {"structlayers.base", "structlayers.configs"}
    # base wraps every plugin's forward with the FLOP-counter and mixed-precision checks and refuses
    # oversized parameters and dense forms up front with the memory estimate (which words sizes with
    # the one formatter, utils.report.human): leaves but for that; its check_word names the type of
    # a word-valued option's vocabulary (configs.Words, a leaf with no imports of its own).
    leaves = ("structlayers.flops", "structlayers.utils.precision", "structlayers.utils.memory")
    assert GRAPH["structlayers.base"] <= {*leaves, "structlayers.configs"}
    assert GRAPH["structlayers.configs"] == set()
    assert GRAPH["structlayers.utils.report"] == set()
    assert all(GRAPH[leaf] <= {"structlayers.utils.report"} for leaf in leaves)


def test_lab_never_imports_cli() -> None:
    bad = {n: sorted(t for t in ts if t.startswith("structlayers.cli")) for n, ts in GRAPH.items()
           if n.startswith("structlayers.lab")}
    assert not {k: v for k, v in bad.items() if v}


#: One interpreter imports torch once, then imports each module in a child forked from it (a fresh
#: child per module), so every module is seen alone at the cost of its own imports only.
PROBE = """
import importlib, json, multiprocessing, sys
import torch  # noqa: F401  (every library module imports it: loaded once, before the forks)

def loaded(module):
    importlib.import_module(module)
    return module, sorted(sys.modules)

with multiprocessing.get_context("fork").Pool(2, maxtasksperchild=1) as pool:
    print(json.dumps(dict(pool.imap_unordered(loaded, sys.argv[1:]))))
"""


def loaded_alone(modules: list[str]) -> dict[str, list[str]]:
    """``{module: every module loaded once it is imported}``, each imported alone (see :data:`PROBE`)."""
    out = subprocess.run([sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"importing the library modules failed:\n{out.stderr}"
    return json.loads(out.stdout.strip().splitlines()[-1])


LIBRARY = sorted(n for n in MODULES if is_library(n))
#: Imported alone by the probe: the library, and the integration but for its Lightning classes.
LIGHT = sorted(n for n in MODULES if is_library(n) or (is_integration(n) and n != LIGHTNING_CLASSES))


@pytest.fixture(scope="module")
def library_loads() -> dict[str, list[str]]:
    return loaded_alone(LIGHT)


def test_each_library_module_alone_loads_no_lab_cli_or_heavy_dependency(library_loads) -> None:
    offenders = {}
    for module, loaded in library_loads.items():
        bad = [m for m in loaded
               if is_upper(m) or m.split(".")[0] in HEAVY or (is_library(module) and is_integration(m))]
        if bad:
            offenders[module] = sorted({m if m.startswith("structlayers") else m.split(".")[0] for m in bad})
    assert not offenders
    assert set(library_loads) == set(LIGHT)


def test_import_structlayers_is_light(library_loads) -> None:
    loaded = set(library_loads["structlayers"])
    assert not {"scipy.optimize", "lightning", "matplotlib", "escnn", "pandas", "yaml"} & loaded


def test_library_works_without_the_extras() -> None:
    """The base install (torch, numpy, scipy, tqdm): with every extra made unimportable, the library
    (the plugin contract and the CLI kit included) imports, builds, counts, collapses, fits and replaces."""
    script = f"""
import importlib.abc, sys
BLOCKED = {HEAVY + ("yaml", "onnx", "timm", "torchvision", "numba", "lmdb")!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import torch, structlayers, structlayers.testing, structlayers.clikit
from structlayers.surgery import FitOptions, fit_layer
layer = structlayers.create("acdc", 16, 16, depth=2)
x = torch.randn(3, 16)
assert structlayers.count(layer, x).total_flops > 0
model, _ = structlayers.collapse(torch.nn.Sequential(layer), x)
fit_layer(structlayers.create("lowrank", 6, 6, rank=2), torch.randn(6, 6), fit=FitOptions(steps=5))
structlayers.replace(torch.nn.Sequential(torch.nn.Linear(8, 8)), "acdc", depth=2)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr


def test_base_install_requires_only_the_core_dependencies() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((SRC.parent / "pyproject.toml").read_text())["project"]
    names = {d.split(";")[0].split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip().lower()
             for d in project["dependencies"]}
    assert names == {"torch", "numpy", "scipy", "tqdm"}
    assert {"lab", "atompaint", "test"} <= set(project["optional-dependencies"])
