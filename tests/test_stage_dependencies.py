"""dvc.yaml lists, as each stage's code dependencies, exactly the project modules the
stage's command imports, directly or through other project modules.

A module missing from the list would let `dvc repro` skip a stage whose code changed;
an extra one would rerun a stage (train: 40 minutes) for code it never runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from harness import REPO_ROOT

STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_code_dependencies_are_the_modules_the_stage_imports(stage: str) -> None:
    definition = STAGES[stage]
    command = definition["cmd"].split()
    assert command[:2] == ["python", "-m"], f"{stage} should run one module with python -m"
    imported = _imported_closure(command[2])
    listed = {dep for dep in definition.get("deps", []) if dep.endswith(".py")}
    assert listed == imported, (
        f"dvc.yaml's {stage} lists {sorted(listed - imported)} that it does not import and "
        f"misses {sorted(imported - listed)} that it imports"
    )


def test_no_stage_imports_another_stage() -> None:
    stage_modules = {_module_file(STAGES[s]["cmd"].split()[2]) for s in STAGES}
    for stage in STAGES:
        own = _module_file(STAGES[stage]["cmd"].split()[2])
        others = (_imported_closure(STAGES[stage]["cmd"].split()[2]) & stage_modules) - {own}
        assert not others, f"{stage} imports the stage modules {sorted(others)}"


def _imported_closure(module: str) -> set[str]:
    """Repository-relative paths of `module` and every project module it imports, at any
    depth; empty package `__init__.py` files carry no code and are left out."""
    seen: set[str] = set()
    pending = [_module_file(module)]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        pending += [found for name in _imports(REPO_ROOT / path) if (found := _find(name))]
    return {path for path in seen if (REPO_ROOT / path).read_text().strip()}


def _imports(path: Path) -> set[str]:
    """Every module name an import statement in `path` could refer to, lazy ones included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            # `from package import module` imports a module, not only a name.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _find(name: str) -> str | None:
    """The project file that defines module `name`, if the project defines it."""
    candidate = Path(*name.split("."))
    for path in (candidate.with_suffix(".py"), candidate / "__init__.py"):
        if (REPO_ROOT / path).is_file():
            return path.as_posix()
    return None


def _module_file(module: str) -> str:
    found = _find(module)
    assert found is not None, f"no module {module} in the repository"
    return found
