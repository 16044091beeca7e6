"""Benchmark: how fast the explorer follows its controls, and what each base method costs on first use.

1. Slider latency: the time from a change of a refinement control (τ, the
   temperature, ``normalize``, ``use_abs``) or of a display control (the colour
   scale) to the new panels set on the application's image widgets, with
   EfficientNet-Lite0, the ``chelsea`` photo and K = 4 classes (the automatic set,
   ``top_k=3``). The target is 150 ms; the script prints median / 90th percentile
   and the ratio target / median.
2. Base-map time per method: one ``attribute_classes`` call for the same image
   and K = 4 classes, with the explorer's settings (what a user waits for when
   they change the image, model, method or class set; cached afterwards).
3. With ``--browser``: the same τ change in a real JupyterLab page (headless
   Chromium), from the key press on the slider to the new pixels in the page,
   which adds the kernel round trip and the browser's decoding.

Usage::

    python benchmarks/bench_explore.py              # 1 and 2
    python benchmarks/bench_explore.py --browser    # also 3 (needs chromium and chromium-driver)
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from var_utils import METHODS, attribute_classes, explore

TARGET_MS = 150.0
CHANGES = {
    "tau_slider": (0.002, 0.005, 0.02, 0.05, 0.1, 0.01),
    "temperature_slider": (0.05, 0.2, 0.5, 0.1),
    "normalize_picker": ("joint", "none"),
    "use_abs_box": (False, True),
    "per_class_box": (True, False),
}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def control_latency(app, rounds: int) -> dict[str, list[float]]:
    """Milliseconds per change of each control; the observers run synchronously, so the call returns when drawn."""
    times: dict[str, list[float]] = {}
    for name, values in CHANGES.items():
        control = getattr(app, name)
        samples = []
        for value in itertools.islice(itertools.cycle(values), rounds):
            start = time.perf_counter()
            control.value = value
            samples.append(1000 * (time.perf_counter() - start))
            if app.last_error:
                raise RuntimeError(app.last_error)
        times[name] = samples
    return times


def base_map_times(app) -> list[tuple[str, str]]:
    """(method, milliseconds or the reason it cannot run) for one K-class attribution of the explorer's image."""
    from var_utils.apps.explore.app import METHOD_SETTINGS

    model = app.session.model("efficientnet_lite0")
    inputs = app.prepared.inputs
    rows = []
    for name in sorted(METHODS):
        setting = METHOD_SETTINGS.get(name)
        settings = {setting.keyword: setting.default} if setting else {}
        start = time.perf_counter()
        try:
            attribute_classes(model, inputs, app.classes, name, **settings)
        except ValueError as error:
            rows.append((name, f"refused: {str(error)[:90]}"))
            continue
        label = name + "".join(f" ({key}={value})" for key, value in settings.items())
        rows.append((label, f"{1000 * (time.perf_counter() - start):,.0f}"))
    return rows


def browser_latency(rounds: int) -> list[float]:
    """Milliseconds from an arrow-key press on the τ slider to new pixels in a real JupyterLab page."""
    import tempfile

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from lab_browser import chromium, jupyter_lab, panel_fingerprints, wait_for
    from test_explore_browser import ALL_CELLS_RUN_JS, KERNEL_IDLE_JS, MAPS, NOTEBOOK, _lab_root

    samples = []
    with tempfile.TemporaryDirectory() as folder:
        root = _lab_root(Path(folder))
        with jupyter_lab(root, Path(folder) / "lab.log") as url, chromium() as driver:
            driver.get(url.format(path=NOTEBOOK.name))
            wait_for(lambda: driver.execute_script(KERNEL_IDLE_JS), 120, "the kernel")
            driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
            wait_for(lambda: driver.execute_script(ALL_CELLS_RUN_JS), 300, "the notebook to run")
            wait_for(lambda: driver.execute_script(KERNEL_IDLE_JS), 120, "the kernel to finish")
            handle = driver.find_element(By.CSS_SELECTOR, ".var-explore-tau-slider .noUi-handle")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", handle)
            for press in range(rounds):
                before = wait_for(
                    lambda: all(panel_fingerprints(driver, MAPS)) and panel_fingerprints(driver, MAPS), 30, "maps"
                )
                start = time.perf_counter()
                handle.send_keys(Keys.ARROW_LEFT if press % 2 else Keys.ARROW_RIGHT)
                wait_for(lambda shown=before: panel_fingerprints(driver, MAPS) != shown, 30, "new maps", interval=0.005)
                samples.append(1000 * (time.perf_counter() - start))
    return samples


def main() -> None:
    """Print the latency table, the base-map times and (``--browser``) the in-page latency."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="changes per control (default 30)")
    parser.add_argument("--browser", action="store_true", help="also measure in JupyterLab with headless Chromium")
    arguments = parser.parse_args()
    torch.manual_seed(0)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    app = explore(model="efficientnet_lite0", image="chelsea", method="gradcam", top_k=3)
    print(f"explorer: EfficientNet-Lite0, chelsea, Grad-CAM, K = {len(app.classes)} classes {app.classes}\n")
    print("| control | median ms | p90 ms | target / median |")
    print("| --- | ---: | ---: | ---: |")
    for name, samples in control_latency(app, arguments.rounds).items():
        median = statistics.median(samples)
        print(f"| {name} | {median:.1f} | {_percentile(samples, 0.9):.1f} | {TARGET_MS / median:.1f}× |")
    print("\n| method (K = 4, first use) | ms |")
    print("| --- | ---: |")
    for name, text in base_map_times(app):
        print(f"| {name} | {text} |")
    if arguments.browser:
        samples = browser_latency(min(arguments.rounds, 20))
        median = statistics.median(samples)
        print(
            f"\nbrowser, τ key press -> new pixels: median {median:.0f} ms, p90 {_percentile(samples, 0.9):.0f} ms, "
            f"target / median {TARGET_MS / median:.1f}×"
        )


if __name__ == "__main__":
    main()
