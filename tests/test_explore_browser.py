"""The explorer in a real browser: JupyterLab, headless Chromium, the 00_explore notebook, real clicks and drags.

Skipped with a stated reason where Chromium is missing (the test session's summary
says so), unless ``VAR_REQUIRE_BROWSER=1`` (set by ``.ci/run``) turns that into a
failure.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest
from lab_browser import MISSING_BROWSER, chromium, jupyter_lab, panel_fingerprints, wait_for

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "00_explore.ipynb"
MAPS = ".var-explore img.var-explore-var-map, .var-explore img.var-explore-winner"
VAR_MAPS = ".var-explore img.var-explore-var-map"

if MISSING_BROWSER and os.environ.get("VAR_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"VAR_REQUIRE_BROWSER=1 but {MISSING_BROWSER}")
pytestmark = pytest.mark.skipif(MISSING_BROWSER is not None, reason=MISSING_BROWSER or "")

KERNEL_IDLE_JS = """
const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
return Boolean(kernel && kernel.status === 'idle' && panel.content && panel.content.widgets.length > 0);
"""
ALL_CELLS_RUN_JS = """
const prompts = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')).map((p) => p.textContent);
return prompts.length > 0 && prompts.every((text) => /\\[\\d+\\]/.test(text));
"""
ERROR_OUTPUT_JS = """
return Array.from(document.querySelectorAll('.jp-OutputArea-output'))
  .map((output) => output.textContent).filter((text) => text.includes('Traceback')).join('\\n');
"""


def _lab_root(tmp_path: Path) -> Path:
    """A folder with the explorer notebook, outputs cleared, and lab settings that keep every cell in the page."""
    root = tmp_path / "lab"
    root.mkdir()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, root / NOTEBOOK.name)
    settings = tmp_path / "jupyter-state" / "settings" / "@jupyterlab"
    files = {
        "notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    }
    for name, content in files.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(content))
    return root


def _texts(driver, selector: str) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map((e) => e.textContent);", selector
    )


def _loaded_maps(driver) -> list[str] | None:
    prints = panel_fingerprints(driver, MAPS)
    return prints if prints and all(prints) else None


def _notebook_ran(driver) -> bool:
    errors = driver.execute_script(ERROR_OUTPUT_JS)
    assert not errors, f"a notebook cell failed:\n{errors[:3000]}"
    return driver.execute_script(ALL_CELLS_RUN_JS)


def _settled_maps(driver, what: str, different_from: list[str] | None = None, timeout: float = 120) -> list[str]:
    """The panels' fingerprints once the kernel is idle, the app not busy and the pixels stable for 0.5 s."""

    def settled() -> list[str] | None:
        busy = driver.find_elements("css selector", ".var-explore-busy")
        if busy or not driver.execute_script(KERNEL_IDLE_JS):
            return None
        first = _loaded_maps(driver)
        time.sleep(0.5)
        if first is None or first != _loaded_maps(driver) or first == different_from:
            return None
        return first

    return wait_for(settled, timeout, what)


def _shot(driver, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / f"{name}.png"))


def test_explorer_in_jupyterlab(tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    root = _lab_root(tmp_path)
    with jupyter_lab(root, tmp_path / "jupyterlab.log") as url, chromium() as driver:
        driver.get(url.format(path=NOTEBOOK.name))
        wait_for(lambda: driver.execute_script(KERNEL_IDLE_JS), 120, "the notebook's kernel to start")
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
        wait_for(lambda: _notebook_ran(driver), 300, "the notebook to run")
        before = _settled_maps(driver, "the explorer's maps to load")
        _shot(driver, tmp_path, "01_opened")
        class_count = len(panel_fingerprints(driver, VAR_MAPS))
        assert class_count >= 4

        # Move the τ slider with the mouse: VAR re-runs from the cached base maps and the maps change.
        tau_readout = _texts(driver, ".var-explore-tau-slider .widget-readout")
        handle = driver.find_element(By.CSS_SELECTOR, ".var-explore-tau-slider .noUi-handle")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", handle)
        start = time.monotonic()
        ActionChains(driver, duration=50).click_and_hold(handle).move_by_offset(25, 0).release().perform()
        wait_for(lambda: _loaded_maps(driver) not in (None, before), 60, "new maps after moving τ", interval=0.02)
        print(f"browser: τ drag released -> new maps displayed in {1000 * (time.monotonic() - start):.0f} ms")
        after_tau = _settled_maps(driver, "the maps to settle after moving τ", different_from=before)
        _shot(driver, tmp_path, "02_tau_moved")
        assert _texts(driver, ".var-explore-tau-slider .widget-readout") != tau_readout
        assert not driver.find_elements(By.CSS_SELECTOR, ".var-explore-error")

        # Add a class by name: the base maps are recomputed for K + 1 classes.
        search = driver.find_element(By.CSS_SELECTOR, ".var-explore-class-search input")
        search.clear()
        search.send_keys("snow leopard")
        driver.find_element(By.CSS_SELECTOR, "button.var-explore-add-button").click()
        wait_for(lambda: len(panel_fingerprints(driver, VAR_MAPS)) == class_count + 1, 120, "a row for the new class")
        after_add = _settled_maps(driver, "the maps with the added class", different_from=after_tau)
        _shot(driver, tmp_path, "03_class_added")
        wait_for(
            lambda: any("snow leopard" in text for text in _texts(driver, ".var-explore .widget-html")),
            30,
            "the new class's label",
        )
        assert not driver.find_elements(By.CSS_SELECTOR, ".var-explore-error")

        # A class the model does not have: a message in the app, and the maps stay as they were.
        search.clear()
        search.send_keys("not a class")
        driver.find_element(By.CSS_SELECTOR, "button.var-explore-add-button").click()
        error = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".var-explore-error"), 60, "the error message")[
            0
        ]
        _shot(driver, tmp_path, "04_bad_class")
        assert "not a class name of this model" in error.text
        assert _settled_maps(driver, "the maps after the refused class") == after_add
