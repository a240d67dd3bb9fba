"""End to end in a real browser: Data -> Model -> Train (a feature-extractor run on digits) -> Results.

Starts `streamlit run app.py` headless on a free local port and drives Debian's Chromium with
Playwright. Screenshots of each page land in test-artifacts/ for people to look at.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright")
    port = _free_port()
    env = {**os.environ, "TLCORE_HOME": str(tmp_path / "home"), "TLCORE_CACHE_DIR": str(tmp_path / "cache"),
           "TLCORE_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env,
                            stdout=open(tmp_path / "streamlit.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:  # the server needs a few seconds to import torch
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("streamlit did not start")
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(10)


def test_data_model_train_results_in_a_real_browser(server):
    from playwright.sync_api import expect, sync_playwright

    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--headless", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)

        def visit(name: str, wait_for: str) -> None:
            page.get_by_role("link", name=name, exact=True).first.click()
            expect(page.get_by_text(wait_for).first).to_be_visible()

        def shot(name: str) -> None:
            page.wait_for_timeout(500)  # let plotly finish drawing before the screenshot
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

        page.goto(server)
        # The first page waits for torch to import in a cold server process.
        expect(page.get_by_role("heading", name="Transfer Learning Lab")).to_be_visible(timeout=120_000)
        shot("1-home")
        visit("Data", "training and")
        expect(page.get_by_text("Training images per class").first).to_be_visible()
        shot("2-data")
        visit("Model", "Strategy now:")
        shot("3-model")
        visit("Train", "Discriminative factor")
        page.get_by_role("button", name="Start training").click()
        expect(page.get_by_text("Run finished").first).to_be_visible(timeout=240_000)
        expect(page.get_by_text("Confusion matrix").first).to_be_visible()
        shot("4-train")
        visit("Results", "Per class")
        expect(page.get_by_text("Confusion matrix").first).to_be_visible()
        expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible()
        expect(page.get_by_text("Validation accuracy").first).to_be_visible()
        shot("5-results")
        browser.close()
    assert sorted(f.name for f in ARTIFACTS.glob("*.png")) == ["1-home.png", "2-data.png", "3-model.png",
                                                                "4-train.png", "5-results.png"]
