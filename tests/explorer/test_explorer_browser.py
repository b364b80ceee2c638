"""Real-browser test: `iclens explore` on a free port with tiny-llama, driven by headless Chromium.

Needs Debian's `chromium` and `chromium-driver` (scripts/setup.sh --browser installs
them) and selenium; skipped with the reason when any is missing. Screenshots go to
tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import tempfile
import time

import pytest
import torch

from explorer_browser import (ARTIFACTS, body_text, browser_missing, chrome, free_port, open_page, start_explorer,
                              stop_explorer, type_prompt, wait_for)

pytestmark = pytest.mark.browser


def test_explorer_in_chromium(tmp_path, tiny_model):
    if browser_missing():
        pytest.skip(browser_missing())
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

        open_page(driver, "Function tokens")
        wait_for(driver, "no function-tokens result under")  # only an induction result in the output folder

        open_page(driver, "Toy models")
        wait_for(driver, "no training runs under")  # an empty runs folder: what to do, in one line

        open_page(driver, "ICL vs IWL")
        wait_for(driver, "no icl-classification, pos-forgetting or sweep runs under")

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
