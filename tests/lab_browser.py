"""A real JupyterLab server and a headless Chromium driving it, for the explorer's browser test and benchmark.

Debian's ``chromium`` and ``chromium-driver`` are used through Selenium with
explicit paths, so nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING_BROWSER = (
    None
    if CHROMIUM and CHROMEDRIVER
    else "the real-browser test needs Debian's `chromium` and `chromium-driver` "
    "(apt-get install chromium chromium-driver; .ci/run installs them)"
)

# Every explorer panel's pixels, read back through a canvas: the image data the page shows.
PANEL_PIXELS_JS = """
return Array.from(document.querySelectorAll(arguments[0])).map((img) => {
  if (!img.complete || img.naturalWidth === 0) { return null; }
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  canvas.getContext('2d').drawImage(img, 0, 0);
  return canvas.toDataURL('image/png');
});
"""


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> object:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def jupyter_lab(root: Path, log_path: Path) -> Iterator[str]:
    """Run JupyterLab on the loopback interface with a random token; yield its base URL with the token query."""
    port, token = _free_port(), secrets.token_hex(16)
    state = root.parent / "jupyter-state"
    # Nothing from the user's own Jupyter folders (kernelspecs, settings) and the environment's kernel first.
    env = dict(
        os.environ,
        JUPYTER_RUNTIME_DIR=str(state / "runtime"),
        JUPYTER_CONFIG_DIR=str(state / "config"),
        JUPYTER_DATA_DIR=str(state / "data"),
        JUPYTER_PREFER_ENV_PATH="1",
    )
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={state / 'settings'}",
        f"--LabApp.workspaces_dir={state / 'workspaces'}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.extension_manager=readonly",
    ]
    if os.geteuid() == 0:  # containers and CI often run as root; JupyterLab refuses that unless told
        command.append("--allow-root")
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
        try:
            base = f"http://127.0.0.1:{port}"

            def answers() -> bool:
                if server.poll() is not None:
                    raise RuntimeError(f"JupyterLab exited with {server.returncode}; see {log_path}")
                with contextlib.suppress(OSError):
                    return urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).status == 200
                return False

            wait_for(answers, 90, "JupyterLab to answer")
            yield f"{base}/lab/tree/{{path}}?token={token}"
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium (Selenium WebDriver) on Debian's binaries."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,2000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def panel_fingerprints(driver, selector: str) -> list[str | None]:
    """A hash of the pixels of every displayed image matching ``selector`` (None: not loaded yet)."""
    urls = driver.execute_script(PANEL_PIXELS_JS, selector)
    return [None if url is None else hashlib.sha1(url.encode()).hexdigest() for url in urls]
