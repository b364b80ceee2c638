"""Real-browser test: `iclens explore` on a free port with tiny-llama, driven by headless Chromium.

Needs Debian's `chromium` and `chromium-driver` (scripts/setup.sh --browser installs
them) and selenium; skipped with the reason when any is missing. Screenshots go to
tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROME_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1500"]

pytestmark = pytest.mark.browser


def _require_browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("headless Chromium not installed: apt-get install chromium chromium-driver (scripts/setup.sh --browser)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium not installed: pip install -e '.[dev]'")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_explorer(port: int, runs: Path, out: Path, model: str = "tiny-llama") -> subprocess.Popen:
    """`iclens explore` (as `python -m apps.cli explore`) in its own process group; waits for /_stcore/health."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "apps.cli", "explore", "--model", model, "--port", str(port), "--headless",
         "--runs-dir", str(runs), "--out-dir", str(out), "--device", "cpu"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 40
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
    raise AssertionError("the explorer did not answer on /_stcore/health within 40 s")


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
        driver.save_screenshot(str(ARTIFACTS / "explorer_timeout.png"))
        raise AssertionError(f"{text!r} not shown within {timeout} s; page text: {body_text(driver)[:1500]}") from None


def type_prompt(driver, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.CSS_SELECTOR, 'textarea[aria-label="Prompt"]')
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


def test_explorer_in_chromium(tmp_path, tiny_model):
    _require_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from apps.report import Section, write_report
    from probes.results import write_json

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    runs, out = tmp_path / "runs", tmp_path / "out"
    write_json(out / "induction" / "result.json", {"model": "tiny-llama", "icl_score": -0.5})
    write_report(out / "induction" / "report.html", "Induction heads", [Section("Scores", "browser-visible sentence", [])])
    # the answer only a working app can show: tiny-llama's most likely token after the prompt
    ids = tiny_model.to_tokens("the cat saw the dog")
    with torch.inference_mode():
        top1 = tiny_model.tokenizer.convert_ids_to_tokens(int(tiny_model(ids)[0, -1].argmax()))

    port = free_port()
    t0 = time.monotonic()
    proc = start_explorer(port, runs, out)
    driver = None
    try:
        driver = chrome(tempfile.mkdtemp(prefix="iclens-chromium-", dir=tmp_path))
        driver.get(f"http://localhost:{port}/")
        wait_for(driver, "Next token after the prompt", timeout=40)
        assert "tiny-llama: 2 layers x 4 heads" in body_text(driver)

        type_prompt(driver, "the cat saw the dog")
        wait_for(driver, "Tokens (6)")
        wait_for(driver, f"'{top1}'")  # the top-k bar chart labels tokens as repr()
        driver.save_screenshot(str(ARTIFACTS / "explorer_model.png"))

        open_page(driver, "Attention & heads")
        wait_for(driver, "layer 0, head 0")
        text = body_text(driver)
        assert "2:cat" in text and "5:dog" in text  # the pattern's token labels are the typed prompt's
        driver.save_screenshot(str(ARTIFACTS / "explorer_attention.png"))

        type_prompt(driver, " ".join(["the"] * 140))
        wait_for(driver, "context is 128 tokens")  # one-line error, the app keeps running
        assert "Traceback" not in body_text(driver)

        open_page(driver, "Attribution")
        wait_for(driver, "Run patching")
        assert "activation" in body_text(driver)

        open_page(driver, "Toy models")
        wait_for(driver, "no training runs under")  # an empty runs folder: what to do, in one line

        open_page(driver, "Reports")
        wait_for(driver, "Results (1)")
        frame = WebDriverWait(driver, 20).until(lambda d: d.find_element(By.CSS_SELECTOR, "iframe"))
        driver.switch_to.frame(frame)
        assert "browser-visible sentence" in body_text(driver)
        driver.switch_to.default_content()
        driver.save_screenshot(str(ARTIFACTS / "explorer_reports.png"))
    finally:
        if driver is not None:
            driver.quit()
        stop_explorer(proc)
    assert proc.returncode is not None
    assert time.monotonic() - t0 < 90
