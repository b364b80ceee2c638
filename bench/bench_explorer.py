"""Explorer speed: first page interactive after `iclens explore`, and page switches re-running no forward pass.

1. Start `iclens explore --model MODEL` (embedded model, conversion cache present) and
   load it in headless Chromium; time from the command's start until the first page
   shows the top-k of the default prompt and has finished running (target < 15 s on
   gemma-3-270m). Needs chromium + chromium-driver + selenium; skipped otherwise.
2. In-process (Streamlit AppTest, same code): visit Model & prompt, Attention & heads,
   then switch back and forth; count the model's forward passes (a forward pre-hook on
   the cached model) and time first visits against revisits. Revisits must run 0
   forward passes; the printed ratio is first-visit time / revisit time.

3. With --long: the wall time of the head scan and of the patching study at the
   pages' default settings.

Usage: python bench/bench_explorer.py [--model gemma-3-270m] [--switches 4] [--screenshot docs/explorer.png] [--long]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "explorer")]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants so far (Linux /proc)."""
    total, todo = 0.0, [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


def first_page_interactive(model: str, screenshot: str | None) -> float | None:
    from explorer_browser import (browser_missing, chrome, free_port, start_explorer, stop_explorer, wait_for)

    from apps.explorer.state import DEFAULT_PROMPT

    if browser_missing():
        print(f"first page interactive: skipped ({browser_missing()})")
        return None
    tmp = Path(tempfile.mkdtemp(prefix="iclens-bench-"))
    port = free_port()
    t0 = time.perf_counter()
    proc = start_explorer(port, tmp / "runs", tmp / "out", model=model, timeout=60)
    t_server = time.perf_counter() - t0
    driver = chrome(str(tmp / "chromium"))
    try:
        driver.get(f"http://localhost:{port}/")
        wait_for(driver, "Next token after the prompt", timeout=120)
        wait_for(driver, "mean loss (nats)", timeout=60)
        t_ready = time.perf_counter() - t0
        cpu_ready = cpu_seconds(proc.pid)
        if screenshot:
            time.sleep(1.0)  # let plotly finish drawing
            driver.save_screenshot(screenshot)
    finally:
        driver.quit()
        stop_explorer(proc)
    print(f"server answering /_stcore/health: {t_server:.1f} s after `iclens explore`")
    print(f"first page interactive ({model}, prompt {DEFAULT_PROMPT!r}): {t_ready:.1f} s wall (target < 15 s), "
          f"{cpu_ready:.1f} CPU s in the explorer's processes; machine load {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    return t_ready


def page_switches(model: str, switches: int) -> None:
    import torch
    from streamlit.testing.v1 import AppTest

    os.environ.update(ICLENS_EXPLORER_MODEL=model, ICLENS_EXPLORER_DEVICE="cpu")
    from apps.explorer import state

    at = AppTest.from_file(str(REPO / "apps" / "explorer" / "app.py"), default_timeout=600)
    t = time.perf_counter()
    at.run()
    t_first_load = time.perf_counter() - t
    net = state._load(model, "cpu")
    calls: list[int] = []
    handle = net.register_forward_pre_hook(lambda mod, args: calls.append(1))
    pages = ["views/attention.py", "views/model.py"]
    try:
        firsts, revisits, fwd_first, fwd_revisit = [], [], 0, 0
        # first visit of page 2 (page 1 was run above, before the counter: its forward pass is cached)
        n0 = len(calls)
        t = time.perf_counter()
        at.switch_page(pages[0]).run()
        firsts.append(time.perf_counter() - t)
        fwd_first = len(calls) - n0
        n0 = len(calls)
        for i in range(switches):
            t = time.perf_counter()
            at.switch_page(pages[(i + 1) % 2]).run()
            revisits.append(time.perf_counter() - t)
        fwd_revisit = len(calls) - n0
        assert not at.exception and not at.error, [e.value for e in at.error]
    finally:
        handle.remove()
    torch_threads = torch.get_num_threads()
    first, rev = firsts[0], sorted(revisits)[len(revisits) // 2]
    print(f"AppTest first page incl. model load: {t_first_load:.1f} s (torch threads {torch_threads}, "
          f"load {os.getloadavg()[0]:.1f})")
    print(f"first visit of Attention & heads: {first:.2f} s, {fwd_first} forward pass(es)")
    print(f"{switches} page switches back and forth: median {rev:.2f} s each, {fwd_revisit} forward passes "
          f"(must be 0); first visit / revisit = {first / rev:.1f}x")


def long_computations(model: str) -> None:
    """Wall time of the two Run buttons' computations with the page defaults (no Streamlit involved)."""
    from apps.explorer import state

    t = time.perf_counter()
    state.induction_scan(model, "cpu", 8, 32, 0)
    print(f"Attention & heads, Run head scan (8 prompts, repeated length 32): {time.perf_counter() - t:.1f} s")
    task = (("task", "induction"), ("n_prompts", 4), ("seed", 0))
    for method in ("attribution", "both"):
        t = time.perf_counter()
        res = state.patching_study(model, "cpu", task, method, 0.8, "resample")
        extra = f"; heads Spearman {res['agreement']['heads']['spearman']:.2f}" if res["agreement"] else ""
        print(f"Attribution, Run patching (induction task, 4 pairs, {method}, circuit): "
              f"{time.perf_counter() - t:.1f} s{extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--switches", type=int, default=4)
    ap.add_argument("--screenshot", default=None, help="save the first page as this PNG (e.g. docs/explorer.png)")
    ap.add_argument("--skip-browser", action="store_true")
    ap.add_argument("--long", action="store_true", help="also time the head scan and the patching study")
    args = ap.parse_args()
    if not args.skip_browser:
        first_page_interactive(args.model, args.screenshot)
    page_switches(args.model, args.switches)
    if args.long:
        long_computations(args.model)


if __name__ == "__main__":
    main()
