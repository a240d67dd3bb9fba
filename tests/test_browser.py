"""End to end in a real browser: Data -> Model -> Train (a run on an uploaded zip) -> Results -> Compare.

Starts `streamlit run app.py` headless on a free local port and drives Debian's Chromium with
Playwright. Screenshots of each page land in test-artifacts/ for people to look at.
"""
from __future__ import annotations

import os
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


def assert_drawn(png: Path) -> None:
    """A screenshot of a page that rendered: many colours (charts, photos), not a blank or an error-only page."""
    from PIL import Image
    with Image.open(png) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 200, f"{png.name} looks blank ({len(colours)} colours)"
    assert max(n for n, _ in colours) < 0.97 * sum(n for n, _ in colours), f"{png.name} is one colour"


def _photo_zip(path: Path) -> Path:
    """A tiny upload: two classes of 24 px photos, in the layout the Data page asks for."""
    import io
    import zipfile

    from PIL import Image

    with zipfile.ZipFile(path, "w") as z:
        for c, cls in enumerate(("cats", "dogs")):
            for i in range(5):
                buf = io.BytesIO()
                Image.new("RGB", (24, 24), (30 * i, 220 * c, 120 - 20 * i)).save(buf, "PNG")
                z.writestr(f"{cls}/{i}.png", buf.getvalue())
    return path


def test_data_model_train_results_in_a_real_browser(server, tmp_path):
    """Every control changed twice in a row keeps its value; an upload is called by its file name;
    one click downloads the model; the identity survives a reload without ever being in the address;
    and the page fetches nothing from anywhere but this server."""
    import re

    import torch
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):   # its own screenshots only: the lessons table lives beside them
        old.unlink()
    upload = _photo_zip(tmp_path / "holiday_cats.zip")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--headless", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)   # a loaded 2-core machine: data loads and reruns take a while
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))

        def settled() -> None:
            page.wait_for_function("() => document.querySelector('[data-test-script-state]')"
                                   "?.getAttribute('data-test-script-state') === 'notRunning'")

        def in_address(param: str) -> None:
            """The plan took the change (the page writes it into the address bar), and the rerun ended."""
            expect(page).to_have_url(re.compile(rf"[?&]{param}(&|$)"), timeout=20_000)
            settled()

        def visit(name: str, wait_for: str) -> None:
            page.get_by_role("link", name=name, exact=True).first.click()
            expect(page.get_by_text(wait_for).first).to_be_visible()
            settled()

        def shot(name: str) -> None:
            page.wait_for_timeout(300)  # let plotly finish drawing before the screenshot
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            assert_drawn(ARTIFACTS / f"{name}.png")   # this very screenshot, not a file left by an earlier run

        def number(label: str, value: str, param: str) -> None:
            box = page.get_by_label(label, exact=True)
            box.fill(value)
            box.press("Enter")
            in_address(param)

        def choose(label: str, option: str, param: str) -> None:
            page.get_by_label(label, exact=True).click()
            page.get_by_role("option", name=option, exact=True).click()
            in_address(param)

        def pick(option: str, param: str) -> None:
            page.get_by_text(option, exact=True).click()
            in_address(param)

        page.goto(server)
        # The first page waits for torch to import in a cold server process.
        expect(page.get_by_role("heading", name="Transfer Learning Lab")).to_be_visible(timeout=120_000)
        settled()
        shot("1-home")
        visit("Data", "training and")
        expect(page.get_by_text("Training images per class").first).to_be_visible()
        # Each control twice in a row: the second change used to snap back to the first.
        per_class = "Images per class for training (0 = all)"
        number(per_class, "50", "per_class=50")
        number(per_class, "100", "per_class=100")
        expect(page.get_by_label(per_class, exact=True)).to_have_value("100")
        size = "Image size fed to the model (px)"
        choose(size, "64 px", "image_size=64")
        choose(size, "128 px", "image_size=128")
        expect(page.get_by_label(size, exact=True)).to_have_value("128 px")
        choose(size, "32 px", "image_size=32")   # small images for a quick run
        # Your own images: an empty state first, then the upload is called by its file name.
        choose("Dataset", "Your images", "image_size=32")
        expect(page.get_by_text("No images yet").first).to_be_visible()
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(upload))
        expect(page.get_by_text("holiday_cats.zip: 8 training").first).to_be_visible()
        in_address("upload=zip-[0-9a-f]+")
        shot("2-data")
        visit("Model", "Strategy now:")
        weights = page.locator('[data-testid="stMetric"]').filter(has_text="Weights")
        value = weights.locator('[data-testid="stMetricValue"]')
        assert value.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "the weights status is cut off"
        shot("3-model")
        visit("Train", "Discriminative factor")
        pick("Fine-tune everything", "strategy=fine_tune_all")
        pick("Train from scratch (random weights)", "strategy=scratch")
        expect(page.get_by_role("radio", name="Train from scratch (random weights)")).to_be_checked()
        number("Epochs", "5", "epochs=5")
        number("Epochs", "7", "epochs=7")
        expect(page.get_by_label("Epochs", exact=True)).to_have_value("7")
        choose("Schedule", "cosine", "schedule=cosine")
        choose("Schedule", "one-cycle", "schedule=one_cycle")
        expect(page.get_by_label("Schedule", exact=True)).to_have_value("one-cycle")
        # A quick run to finish on: the frozen backbone's features once, then only the head trains.
        page.get_by_text("Feature extractor (frozen backbone, new head)", exact=True).click()
        expect(page).not_to_have_url(re.compile("strategy="))
        settled()
        page.get_by_role("button", name="Start training").click()
        expect(page.get_by_text("Run finished").first).to_be_visible(timeout=240_000)
        expect(page.get_by_text(re.compile(r"Run feature_extractor · efficientnet_lite0 · holiday_cats\.zip")).first).to_be_visible()
        expect(page.get_by_text("Confusion matrix").first).to_be_visible()
        shot("4-train")
        visit("Results", "Per class")
        expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible()
        # Each click downloads: a click that also reran the page left the next one a dead link.
        for attempt in range(2):
            with page.expect_download(timeout=30_000) as download:
                page.get_by_role("button", name=re.compile("Download the whole network")).click()
            saved = tmp_path / f"model-{attempt}.pt"
            download.value.save_as(saved)
            assert torch.load(saved, weights_only=True), "the downloaded model file is empty"
            settled()
        shot("5-results")
        visit("Compare", "Runs to compare")
        expect(page.get_by_text("holiday_cats.zip").first).to_be_visible()
        # A reload keeps who you are (a cookie), although the address never says it.
        page.reload()
        expect(page.get_by_text("Runs to compare").first).to_be_visible()
        settled()
        page.get_by_text("Delete runs").click()
        expect(page.get_by_placeholder("Choose any of your runs")).to_be_visible()
        assert "me=" not in page.url
        browser.close()
    outside = sorted({u for u in requests if not u.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:"))})
    assert not outside, f"the page fetched from outside this server: {outside}"


def test_where_to_transfer_runs_a_probe_and_inside_the_cnn_opens_in_a_real_browser(server):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--headless", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)

        def settled() -> None:
            page.wait_for_function("() => document.querySelector('[data-test-script-state]')"
                                   "?.getAttribute('data-test-script-state') === 'notRunning'")

        page.goto(f"{server}/where_to_transfer?image_size=32&per_class=8")
        expect(page.get_by_role("heading", name="Where to transfer")).to_be_visible(timeout=120_000)
        settled()
        page.get_by_role("button", name="Run the probe").click()
        try:
            expect(page.get_by_text("best features come from").first).to_be_visible(timeout=400_000)
        finally:
            page.screenshot(path=str(ARTIFACTS / "where-to-transfer-probe.png"), full_page=True)
        settled()
        expect(page.get_by_role("button", name="Train with this cut")).to_be_visible()
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / "where-to-transfer.png"), full_page=True)
        page.get_by_role("link", name="Inside the CNN", exact=True).first.click()
        expect(page.get_by_text("The first convolution's kernels").first).to_be_visible()
        settled()
        page.get_by_role("tab", name="Activations").click()
        expect(page.get_by_text("Validation image").first).to_be_visible()
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / "inside-the-cnn.png"), full_page=True)
        browser.close()
