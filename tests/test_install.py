"""The install files agree: pyproject.toml, environment.yml and the CI script."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {_name(r): r.replace(" ", "") for r in requirements}


def _environment_requirements() -> dict[str, str]:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml must have exactly one pip section"
    return {_name(r): r.replace(" ", "") for r in pip_lists[0]}


def test_environment_yml_lists_the_same_packages_and_pins_as_pyproject():
    assert _environment_requirements() == _pyproject_requirements()


def test_torch_is_pinned_to_the_versions_available_offline():
    requirements = _pyproject_requirements()
    assert requirements["torch"] == "torch==2.14.1"
    assert requirements["torchvision"] == "torchvision==0.29.1"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = (
        ".venv/bin/ruff check . && .venv/bin/ruff format --check . && "
        ".venv/bin/python -m pytest var_utils tests notebooks --doctest-modules --nbval "
        "--nbval-sanitize-with notebooks/sanitize.cfg"
    )
    assert command in readme
    assert command in ci
    assert "bash install.sh" in ci
