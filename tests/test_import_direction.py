"""Imports point down the layers, and the package tree is the layering (issue 16).

Read from the source with ``ast``: every ``import`` and ``from ... import``, also those
inside functions (they run when the function does), so a lazy import that climbs is
caught as surely as one at the top of a module. docs/ARCHITECTURE.md draws the same
layers; when a package is added, give it a place in ``LAYERS`` and in the code map.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VMM = ROOT / "vmm"

# The modules at vmm/'s root: what every layer may use. A new module does not go here
# by default: it goes into the package of its layer.
FOUNDATION = {
    "vmm.errors",
    "vmm.record",
    "vmm.inputfile",
    "vmm.memory",
    "vmm.guest_stop",
    "vmm.proc",
    "vmm.typedtuple",
}

# Each layer and the layers right below it; a module may import its own layer and
# every layer it reaches downwards, nothing else.
LAYERS: dict[str, set[str]] = {
    "foundation": set(),
    # The VM, bottom up.
    "vmm.kvm": {"foundation"},  # the only package that calls ioctl
    "vmm.devices": {"foundation"},  # a device never touches KVM
    "vmm.boot": {"foundation"},
    "vmm.debug": {"vmm.kvm"},  # observers; the machine is above them
    "vmm.hostnet": {"foundation"},  # the host's network: a VM's TAP, published ports
    "vmm.vm": {"vmm.debug", "vmm.devices", "vmm.boot", "vmm.hostnet"},
    "vmm.control": {"vmm.vm"},  # pause, snapshot, migrate a running VM
    "vmm.guests": {"foundation"},  # building the guests; booting them is the machine's
    # The container runtime: engine -> oci -> linux, engine -> image -> store.
    "vmm.container.linux": {"foundation"},
    "vmm.container.oci": {"vmm.container.linux"},
    "vmm.container.store": {"vmm.container.linux"},
    "vmm.container.image": {"vmm.container.store"},
    "vmm.container.engine": {"vmm.container.oci", "vmm.container.image", "vmm.hostnet"},
    # What uses both sides.
    "vmm.course": {"vmm.guests"},
    "vmm.bench": {"vmm.control", "vmm.guests", "vmm.container.engine"},
    "vmm.cli": {"vmm.bench", "vmm.course", "vmm.control", "vmm.container.engine"},
}
# Package roots with nothing in them but their docstring.
EMPTY = {"vmm", "vmm.container"}

# Command lines whose start-up is measured (issue 16, "Start-up budget"): the layering
# would let them import more than they may.
HOT = {
    # pyvmm boot learns the kind of KVM from vmm/kvm/kind.py, not from the bench, and
    # never loads the container runtime.
    "vmm.cli.boot": ("vmm.bench", "vmm.container", "vmm.cli.group"),
    # pyvmm-runtime is the OCI core's command line: the engine and its CLI are above it.
    "vmm.cli.runtime": (
        "vmm.container.engine",
        "vmm.container.image",
        "vmm.container.store",
        "vmm.cli.container",
        "vmm.bench",
    ),  # fmt: skip
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(VMM.rglob("*.py"))}


def imports(path: Path, module: str) -> set[str]:
    """Every pyvmm module ``path`` imports, by absolute name: ``from a import b`` is
    ``a.b`` where that is a module, else ``a``; relative imports resolved."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES or _compiled(sub) else base)
    return {n for n in found if n == "vmm" or n.startswith("vmm.")}


def _compiled(name: str) -> bool:
    """A cffi module (``_kvm``, ``_libc``): built at install time, no .py."""
    return name.rpartition(".")[2].startswith("_") and name.rpartition(".")[0] in MODULES


def layer(module: str) -> str:
    if module == "vmm.__main__":  # python -m vmm is pyvmm
        return "vmm.cli"
    if module in EMPTY:
        return "foundation"
    for name in sorted(LAYERS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    if module.count(".") == 1:  # at vmm/'s root: the foundation, or a stray (below)
        return "foundation"
    raise LookupError(module)


def below(name: str) -> set[str]:
    """The layers ``name`` may import: itself and all it reaches downwards."""
    seen, todo = {name}, [name]
    while todo:
        for lower in LAYERS[todo.pop()]:
            if lower not in seen:
                seen.add(lower)
                todo.append(lower)
    return seen


def climbing(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    bad = {}
    for module, targets in graph.items():
        allowed = below(layer(module))
        wrong = sorted(t for t in targets if layer(t) not in allowed)
        if wrong:
            bad[module] = wrong
    return bad


GRAPH = {m: imports(p, m) - {m} for m, p in MODULES.items()}


def test_the_layers_form_no_cycle():
    TopologicalSorter(LAYERS).prepare()


def test_every_module_has_a_layer():
    """vmm/'s root holds the foundation only, and every package is a layer."""
    strays = []
    for module in MODULES:
        try:
            layer(module)
        except LookupError:
            strays.append(module)
    root = {m for m, path in MODULES.items() if path.parent == VMM and path.name[0] != "_"}
    assert strays == [] and root - FOUNDATION == set()


def test_no_import_climbs():
    assert climbing(GRAPH) == {}


def test_no_module_import_cycle():
    """Not even within a package: a cycle would make the order of the layer's
    modules, and what importing one of them costs, depend on who came first."""
    graph = {m: {t for t in targets if t in MODULES} for m, targets in GRAPH.items()}
    TopologicalSorter(graph).prepare()


@pytest.mark.parametrize("module", sorted(HOT))
def test_hot_command_lines_import_little(module):
    assert sorted(t for t in GRAPH[module] if t.startswith(HOT[module])) == []


def test_the_check_sees_a_lazy_climbing_import(tmp_path):
    """The negative cases: an import inside a function, and a relative one, are found."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from vmm.bench.machineinfo import kvm_kind\n"
                      "    from ..engine import container\n")  # fmt: skip
    found = imports(module, "vmm.container.oci.m")
    assert found == {"vmm.bench.machineinfo", "vmm.container.engine.container"}
    assert climbing({"vmm.container.oci.m": found}) == {"vmm.container.oci.m": sorted(found)}


def test_the_check_sees_a_cycle():
    with pytest.raises(CycleError):
        TopologicalSorter({"vmm.vm.a": {"vmm.vm.b"}, "vmm.vm.b": {"vmm.vm.a"}}).prepare()
