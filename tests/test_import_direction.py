"""Imports point down: the edges issue 16 named as climbing stay cut.

Read from the source with ``ast`` (every ``import`` and ``from ... import``, also those
inside functions, which run when the function does), so a lazy import that climbs is
caught as surely as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

VMM = Path(__file__).resolve().parent.parent / "vmm"


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, by absolute name (``from a import b``: a and a.b)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def under(names: set[str], package: str) -> list[str]:
    return sorted(n for n in names if n == package or n.startswith(package + "."))


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        # The container package is measured by the benchmark, never the other way round
        # (this was a cycle with vmm/bench/containers.py).
        ("container/**/*.py", "vmm.bench"),
        # pyvmm boot learns the kind of KVM from vmm/kvm/kind.py, not from the bench.
        ("boot_cli.py", "vmm.bench"),
        # pyvmm-runtime is the OCI core's command line: the engine's CLI is above it.
        ("container/runtime_cli.py", "vmm.cli.container"),
        ("container/runtime.py", "vmm.cli.container"),
        ("container/runtime.py", "vmm.container.engine.container"),
        # The one record loader serves the snapshot and the container store: below both.
        ("record.py", "vmm.container"),
        ("record.py", "vmm.devices"),
        # GuestStop belongs to the machine (vmm/guest_stop.py), not to a device.
        ("halt.py", "vmm.devices"),
        ("gdb/*.py", "vmm.devices"),
    ],
)
def test_no_climbing_import(modules: str, forbidden: str):
    paths = sorted(VMM.glob(modules))
    assert paths, modules
    bad = {str(p.relative_to(VMM)): under(imports(p), forbidden) for p in paths}
    assert {p: names for p, names in bad.items() if names} == {}


def test_the_check_sees_a_lazy_climbing_import(tmp_path):
    """The negative case: an import inside a function is found too."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from vmm.bench.machineinfo import kvm_kind\n")
    assert under(imports(module), "vmm.bench") == ["vmm.bench.machineinfo",
                                                   "vmm.bench.machineinfo.kvm_kind"]  # fmt: skip
