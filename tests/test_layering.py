"""The import contracts in pyproject.toml ([tool.importlinter]) hold on the tree, and a
violation of each one fails lint-imports, which `make test` and `make lint` run.

A planted import goes into a copy of the source packages, never into the tree itself.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]

VIRT = "The libvirt layer (cloudpanel.virt) imports no app"
JOBS = "The jobs framework (cloudpanel.jobs) imports no app"
HOSTS = "hosts imports neither images nor instances"
NO_DRF = "Services, selectors and operations import neither DRF nor Channels"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    # As the Makefile runs it: the config from cwd's pyproject.toml, no cache in the tree.
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_tree_keeps_every_contract():
    names = [contract["name"] for contract in CONFIG["contracts"]]
    assert {VIRT, JOBS, HOSTS, NO_DRF} <= set(names)

    proc = lint_imports(ROOT)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in names:
        assert f"{name} KEPT" in proc.stdout


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("layering")
    skip = shutil.ignore_patterns("__pycache__")
    for package in CONFIG["root_packages"]:
        shutil.copytree(ROOT / package, copy / package, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


@pytest.mark.parametrize(
    ("module", "planted", "contract", "chain"),
    [
        ("cloudpanel/virt/domains.py", "import instances.models", VIRT,
         "cloudpanel.virt.domains -> instances.models"),
        ("cloudpanel/jobs/models.py", "import hosts.models", JOBS,
         "cloudpanel.jobs.models -> hosts.models"),
        ("hosts/models.py", "import instances.models", HOSTS, "hosts.models -> instances.models"),
        ("hosts/services.py", "import rest_framework", NO_DRF, "hosts.services -> rest_framework"),
        ("hosts/selectors.py", "from channels.layers import get_channel_layer", NO_DRF,
         "hosts.selectors -> channels"),
    ],
)  # fmt: skip
def test_a_planted_import_breaks_its_contract(source_copy, module, planted, contract, chain):
    path = source_copy / module
    original = path.read_text()
    path.write_text(f"{original}\n{planted}  # planted by the test\n")
    try:
        proc = lint_imports(source_copy)
    finally:
        path.write_text(original)

    assert proc.returncode != 0, proc.stdout
    assert f"{contract} BROKEN" in proc.stdout, proc.stdout
    assert chain in proc.stdout, proc.stdout
    # The copy itself keeps every contract, so it is the planted import that broke this one.
    assert "1 broken" in proc.stdout, proc.stdout
