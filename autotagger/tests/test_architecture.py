"""The architecture in pyproject.toml (import-linter): apps depend downward only, no cycles inside an app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
APPS = ("autotagger", "taxonomy", "prompts", "tagging", "feedback", "retagging")


def _lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _project_with_the_contract(tmp_path: Path, modules: dict[str, str]) -> Path:
    """Six empty apps under the project's own contract, plus `modules` (dotted name -> source)."""
    pyproject = (BASE_DIR / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(pyproject[pyproject.index("[tool.importlinter]") :])
    for app in APPS:
        (tmp_path / app).mkdir()
        (tmp_path / app / "__init__.py").write_text("")
        (tmp_path / app / "models.py").write_text("")
    for name, source in modules.items():
        (tmp_path / Path(*name.split("."))).with_suffix(".py").write_text(source)
    return tmp_path


def test_the_code_keeps_its_layers_and_has_no_cycle_inside_an_app() -> None:
    completed = _lint_imports(BASE_DIR)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Contracts: 2 kept, 0 broken." in completed.stdout


def test_the_contract_refuses_an_import_from_a_lower_app_into_a_higher_one(tmp_path: Path) -> None:
    project = _project_with_the_contract(tmp_path, {"taxonomy.services": "from tagging import models\n"})

    completed = _lint_imports(project)

    assert completed.returncode == 1
    assert "taxonomy.services -> tagging.models" in completed.stdout


def test_the_contract_refuses_a_cycle_between_modules_of_an_app(tmp_path: Path) -> None:
    project = _project_with_the_contract(
        tmp_path,
        {"tagging.services": "from tagging import tasks\n", "tagging.tasks": "from tagging import services\n"},
    )

    completed = _lint_imports(project)

    assert completed.returncode == 1
    assert "No cycles are allowed in tagging" in completed.stdout
