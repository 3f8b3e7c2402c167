"""The domain knows no transport and no provider by name: it imports nothing from adapters/, providers/, net/,
http/, composition, httpx or the AWS SDK (adapters translate their errors into the domain's), and the only
provider names in it are data: the Literal tags of the request models (domain/requests.py)."""

import ast
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[2] / "layers" / "common" / "avatarjobs" / "domain"
FORBIDDEN = (
    "avatarjobs.adapters",
    "avatarjobs.providers",
    "avatarjobs.net",
    "avatarjobs.http",
    "avatarjobs.composition",
    "httpx",
    "httpcore",
    "boto3",
    "botocore",
)
PROVIDER_NAMES = {"fal", "mirako"}
MODULES = sorted(DOMAIN.glob("*.py"))


def imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):  # imports inside functions count too
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", MODULES, ids=[module.name for module in MODULES])
def test_a_domain_module_imports_no_adapter_provider_or_transport(module: Path) -> None:
    bad = {
        name
        for name in imported(ast.parse(module.read_text()))
        if name in FORBIDDEN or name.startswith(tuple(f"{package}." for package in FORBIDDEN))
    }
    assert bad == set()


@pytest.mark.parametrize("module", MODULES, ids=[module.name for module in MODULES])
def test_a_domain_module_names_a_provider_only_as_a_literal_type(module: Path) -> None:
    tree = ast.parse(module.read_text())
    in_literals = {
        id(element)
        for node in ast.walk(tree)
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) == "Literal"
        for element in ast.walk(node.slice)
    }
    named = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in PROVIDER_NAMES and id(node) not in in_literals
    ]
    assert named == []


def test_the_scan_sees_the_domain() -> None:
    assert {"state_machine.py", "ports.py", "webhooks.py", "dispatch_service.py"} <= {path.name for path in MODULES}
