"""Drive the explorer in a real browser: start `iclens explore`, open headless Chromium, wait, type, click.

Used by tests/explorer/test_explorer_browser.py and bench/bench_explorer.py. Needs
Debian's `chromium` + `chromium-driver` and selenium (`browser_missing()` says which
is absent).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROME_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1500"]


def browser_missing() -> str | None:
    """Why the browser cannot run here (None when it can)."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return "headless Chromium not installed: apt-get install chromium chromium-driver (scripts/setup.sh --browser)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed: pip install -e '.[dev]'"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_explorer(port: int, runs: Path, out: Path, model: str = "tiny-llama", timeout: float = 40) -> subprocess.Popen:
    """`iclens explore` (as `python -m apps.cli explore`) in its own process group; waits for /_stcore/health."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "apps.cli", "explore", "--model", model, "--port", str(port), "--headless",
         "--runs-dir", str(runs), "--out-dir", str(out), "--device", "cpu"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"iclens explore exited with {proc.returncode}: {proc.stdout.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=1) as r:
                if r.read() == b"ok":
                    return proc
        except OSError:
            time.sleep(0.3)
    stop_explorer(proc)
    raise AssertionError(f"the explorer did not answer on /_stcore/health within {timeout} s")


def stop_explorer(proc: subprocess.Popen) -> None:
    """End the explorer and its streamlit child (the process group this test started)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def chrome(user_data_dir: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROME_FLAGS + [f"--user-data-dir={user_data_dir}"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def body_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def wait_for(driver, text: str, timeout: float = 30) -> None:
    """Wait until `text` is on the page and the app has finished its run (no 'Running...' widget)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):
        return text in body_text(d) and not d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.2).until(ready)
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "explorer_timeout.png"))
        raise AssertionError(f"{text!r} not shown within {timeout} s; page text: {body_text(driver)[:1500]}") from None


def type_prompt(driver, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    # waited for, not looked up once: on a loaded machine the page text can arrive before the widget is rendered
    box = WebDriverWait(driver, 30, poll_frequency=0.2).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, 'textarea[aria-label="Prompt"]')))
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text)
    box.send_keys(Keys.CONTROL, Keys.ENTER)  # Streamlit applies a text area on Ctrl+Enter


def open_page(driver, title: str) -> None:
    """Click a sidebar navigation link (keeps the session, unlike loading a new URL)."""
    from selenium.webdriver.common.by import By

    links = [a for a in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]') if title in a.text]
    assert links, f"no sidebar link {title!r}"
    links[0].click()


