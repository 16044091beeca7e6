"""The package as users get it: a built wheel installed elsewhere, its declared dependencies, its import cost."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "var_utils"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(section: str = "dependencies") -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project[section] if section == "dependencies" else project["optional-dependencies"][section]
    return {_normalise(re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0]) for requirement in requirements}


def _imported_top_level_modules() -> set[str]:
    modules = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"var_utils", "__future__"}


def test_declared_dependencies_are_exactly_the_imported_ones():
    distributions = importlib.metadata.packages_distributions()
    declared = _declared()
    imported = {}
    for module in _imported_top_level_modules():
        candidates = {_normalise(name) for name in distributions.get(module, [])}
        assert candidates, f"var_utils imports {module!r}, which no installed distribution provides"
        assert candidates & declared, f"var_utils imports {module!r} ({sorted(candidates)}) but does not declare it"
        imported[module] = candidates & declared
    used = set().union(*imported.values())
    assert declared - used == set(), f"declared but never imported: {sorted(declared - used)}"


def test_import_var_utils_does_not_load_the_evaluation_stack():
    code = (
        "import sys, var_utils\n"
        "assert 'pandas' not in sys.modules, 'pandas'\n"
        "assert 'safetensors' not in sys.modules, 'safetensors'\n"
        "assert 'var_utils.evaluation' not in sys.modules, 'evaluation'\n"
        "assert callable(var_utils.evaluate_grid_pointing_game)\n"
        "assert 'pandas' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_readme_layout_lists_every_module():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    modules = sorted(path.relative_to(ROOT).as_posix() for path in PACKAGE.rglob("*.py") if path.name != "__init__.py")
    # The layout is a tree: each module's file name starts a line of it.
    missing = [module for module in modules if not re.search(rf"^\s*{re.escape(Path(module).name)}\b", layout, re.M)]
    assert missing == [], f"README's Layout section does not name {missing}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (so the work tree gets no build folders)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(PACKAGE, source / "var_utils", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), "."]
    subprocess.run(command, check=True, cwd=source)
    (built,) = dist.glob("var_utils-*.whl")
    return built


def _heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a markdown file's headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_links_to_sections_of_the_method_document_resolve():
    anchors = _heading_anchors((ROOT / "docs" / "method.md").read_text(encoding="utf-8"))
    sources = [ROOT / "README.md", ROOT / "docs" / "method.md", *sorted((ROOT / "notebooks").glob("*.ipynb"))]
    links = {
        (source.name, anchor)
        for source in sources
        for anchor in re.findall(r"method\.md#([\w\-]+)", source.read_text(encoding="utf-8"))
    }
    links |= {
        ("method.md", anchor) for anchor in re.findall(r"\]\(#([\w\-]+)\)", (ROOT / "docs" / "method.md").read_text())
    }
    assert len(links) > 10
    assert sorted(link for link in links if link[1] not in anchors) == []


def test_wheel_holds_the_package_and_its_weights(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("cnn", "vit", "bcos"):
        assert f"var_utils/models/data/fashion_mnist_{name}.safetensors" in names
    assert {"var_utils/__init__.py", "var_utils/evaluation/gpg/runner.py", "var_utils/apps/cli.py"} <= names
    assert not any(name.startswith(("tests/", "notebooks/", "benchmarks/")) for name in names)


def test_wheel_installed_elsewhere_loads_every_shipped_model_from_any_directory(wheel, tmp_path):
    environment = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True)
    python = environment / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The dependencies come from this project's environment; its editable var_utils does not (that
    # environment's .pth files are not processed when it is only a path on sys.path).
    (site_packages / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q"]
    subprocess.run([*install, str(wheel)], check=True)
    check = (
        "import pathlib, torch, var_utils\n"
        "from safetensors.torch import load_file\n"
        f"assert pathlib.Path(var_utils.__file__).is_relative_to({str(site_packages)!r}), var_utils.__file__\n"
        "for name in ('cnn', 'vit', 'bcos'):\n"
        "    model = var_utils.load_model(f'fashion_mnist_{name}')\n"
        f"    shipped = load_file(f'{PACKAGE / 'models' / 'data'}/fashion_mnist_{{name}}.safetensors')\n"
        "    assert all(torch.equal(model.state_dict()[k], v) for k, v in shipped.items()), name\n"
        "cnn = var_utils.load_model('fashion_mnist_cnn')\n"
        "lite0 = var_utils.load_model('efficientnet_lite0')\n"
        "photo = lite0.preprocess(var_utils.load_photo('coffee'))\n"
        "assert int(lite0(photo).argmax()) == 967, 'espresso'\n"
        "maps = var_utils.attribute_classes(cnn, torch.rand(1, 1, 56, 56), [0, 1], 'gradcam')\n"
        "assert maps.shape == (1, 2, 1, 56, 56)\n"
        "print('ok')\n"
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = subprocess.run([str(python), "-c", check], cwd=workdir, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    cli = subprocess.run([str(python), "-m", "var_utils", "--help"], cwd=workdir, capture_output=True, text=True)
    assert cli.returncode == 0 and "demo" in cli.stdout, cli.stderr
