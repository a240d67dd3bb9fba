"""Issue 28 in a real browser: what a new student tripped over, each checked where they met it.

Reuses test_browser.py's server fixture (a `streamlit run app.py` on a free port, with its own
TLCORE_HOME under the test's tmp_path) and drives Debian's Chromium with Playwright."""
from __future__ import annotations

import re

import pytest

from test_browser import ARTIFACTS, CHROMIUM, server  # noqa: F401  (server: the fixture, used by name)

pytestmark = pytest.mark.browser
LABS = ("Where to transfer", "Inside the CNN", "Domain adaptation", "Negative transfer", "Multi-task lab")
ARGS = ["--no-sandbox", "--disable-gpu", "--headless", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def _runs_in_the_servers_store(tmp_path, monkeypatch) -> tuple[str, str]:
    """Two finished digits runs in the server's store (its TLCORE_HOME): a gradual-unfreezing 4-epoch one
    and a feature extractor. Trained here, for real, at 32 px on 10 images per class (seconds)."""
    monkeypatch.setenv("TLCORE_HOME", str(tmp_path / "home"))
    from tlcore.runs import RunStore
    from tlcore.train.loop import train
    from tlcore.train.plan import Plan

    store = RunStore()
    ids = []
    for plan in (Plan(image_size=32, per_class=10, strategy="gradual_unfreeze", epochs=4, schedule="cosine"),
                 Plan(image_size=32, per_class=10, epochs=1)):
        run_id = store.create(plan, owner="a classmate")
        train(plan, lambda e, r=run_id: store.append(r, e), artifact_dir=store.artifact_dir(run_id))
        ids.append(run_id)
    return ids[0], ids[1]


def test_what_a_new_student_tripped_over(server, tmp_path, monkeypatch):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    gradual, digits_run = _runs_in_the_servers_store(tmp_path, monkeypatch)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)

        def settled(tab) -> None:
            tab.wait_for_function("() => document.querySelector('[data-test-script-state]')"
                                  "?.getAttribute('data-test-script-state') === 'notRunning'")

        failed: list[str] = []

        def item(name: str, check) -> None:
            """Each item checked on its own, so one report names every item that fails (on old code: all)."""
            try:
                check()
            except Exception as e:  # noqa: BLE001 - an expect() or a click that timed out: this item failed
                failed.append(f"{name}: {str(e).splitlines()[0]}")

        def home_lists_every_lab() -> None:
            """Item 8: every lab in sight in the sidebar (no "View 4 more"), in a Labs section, and on Home's path."""
            page.goto(server)
            expect(page.get_by_role("heading", name="Transfer Learning Lab")).to_be_visible(timeout=120_000)
            settled(page)
            sidebar = page.locator('[data-testid="stSidebarNav"]')
            main = page.locator('[data-testid="stMain"]')
            page.screenshot(path=str(ARTIFACTS / "trips-home.png"), full_page=True)
            expect(sidebar.get_by_text(re.compile(r"View \d+ more"))).to_have_count(0)
            expect(sidebar.get_by_text("Labs", exact=True)).to_be_visible()
            for lab in LABS:
                expect(sidebar.get_by_role("link", name=lab, exact=True)).to_be_visible()
                expect(main.get_by_role("link", name=re.compile(f"^{re.escape(lab)}: "))).to_be_visible()
            main.get_by_role("link", name=re.compile("^Negative transfer: ")).click()   # Home's link leads there
            expect(page.get_by_role("heading", name="Negative transfer").first).to_be_visible()

        def run_link_sets_the_controls() -> None:
            """Item 2: a run link opened in a second tab shows that run's settings, not the default plan's;
            item 4: no stray "None" under Start/Stop (a bare expression Streamlit wrote out)."""
            tab = context.new_page()
            tab.goto(f"{server}/train?run={gradual}")
            expect(tab.get_by_text("Run finished").first).to_be_visible(timeout=120_000)
            settled(tab)
            tab.screenshot(path=str(ARTIFACTS / "trips-train-run-link.png"), full_page=True)
            expect(tab.get_by_text("None", exact=True)).to_have_count(0)
            expect(tab.get_by_role("radio", name="Gradual unfreezing (ULMFiT)")).to_be_checked()
            expect(tab.get_by_label("Epochs", exact=True)).to_have_value("4")
            expect(tab.get_by_label("Schedule", exact=True)).to_have_value("cosine")

        def inside_offers_runs_of_this_dataset() -> None:
            """Item 1: on another dataset's images, Inside the CNN does not offer the digits run, and says why."""
            inside = context.new_page()
            inside.goto(f"{server}/inside?dataset=digits_m&image_size=32")
            expect(inside.get_by_text("The first convolution's kernels").first).to_be_visible(timeout=120_000)
            settled(inside)
            inside.get_by_label("A trained run to compare with the pretrained network").click()
            expect(inside.get_by_role("option", name=re.compile("none: the pretrained network only"))).to_be_visible()
            expect(inside.get_by_role("option", name=re.compile(digits_run[-6:]))).to_have_count(0)
            inside.keyboard.press("Escape")
            expect(inside.get_by_text(re.compile("Only runs trained on .* are offered")).first).to_be_visible()
            inside.screenshot(path=str(ARTIFACTS / "trips-inside.png"), full_page=True)

        item("item 8 (labs in sight, on Home's path)", home_lists_every_lab)
        item("items 2 and 4 (a run link's controls; no stray None)", run_link_sets_the_controls)
        item("item 1 (Inside the CNN: runs of this dataset)", inside_offers_runs_of_this_dataset)
        browser.close()
    assert not failed, "\n".join(failed)


def test_webcam_classes_to_training_to_a_live_prediction(server):  # noqa: F811
    """Teachable Machine's one screen: record frames of two classes from the camera (Chromium's fake one),
    train, then the camera keeps sending frames and the page names each one, live."""
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            *ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        context.grant_permissions(["camera"])
        page = context.new_page()
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)
        page.goto(f"{server}/webcam")
        expect(page.get_by_role("heading", name="Webcam classifier")).to_be_visible(timeout=120_000)
        cam = page.frame_locator('iframe[title*="webcam"]')
        for name in ("hand up", "hand down"):
            button = cam.get_by_role("button", name=f"Record 10 frames of {name}")
            expect(button).to_be_enabled()   # enabled once the camera gives frames
            button.click()
            expect(page.locator('[data-testid="stMetric"]').filter(has_text=name)
                   .get_by_text("10 frames")).to_be_visible()
        page.get_by_role("button", name="Train on these frames").click()
        expect(page.get_by_text(re.compile("Validation accuracy")).first).to_be_visible(timeout=300_000)
        seen = page.locator('[data-testid="stMetric"]').filter(has_text="The network sees")
        expect(seen).to_be_visible(timeout=120_000)
        expect(seen.get_by_text(re.compile(r"^hand (up|down) \(\d+%\)$"))).to_be_visible()
        counter = page.get_by_text(re.compile(r"^Frame \d+ predicted live"))
        first = int(re.search(r"\d+", counter.inner_text()).group())
        expect(counter).not_to_have_text(re.compile(rf"^Frame {first} "), timeout=30_000)   # the next frame came
        later = int(re.search(r"\d+", counter.inner_text()).group())
        assert later > first
        page.screenshot(path=str(ARTIFACTS / "trips-webcam.png"), full_page=True)
        browser.close()


def test_train_with_the_suggestion_beside_the_rate_in_use(server):  # noqa: F811
    """fastai's habit after lr_find, in one click: the finder's sweep, then both runs queued from the Train
    page and their curves drawn on one chart, each labelled by its rate."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        expect.set_options(timeout=300_000)      # a loaded 2-core machine: two runs train one after another
        page.goto(f"{server}/train?image_size=32&per_class=8&batch_size=16&epochs=1&lr=0.001")
        page.get_by_text("Find a learning rate").click()
        page.get_by_role("button", name="Run the learning-rate finder").click()
        default = page.get_by_role("button", name=re.compile(r"\(default\)$"))
        expect(default).to_be_visible()
        suggested = re.search(r": ([0-9.e-]+) \(default\)", default.inner_text()).group(1)
        page.get_by_role("button", name=re.compile(r"^Train both")).click()
        # both runs finish and the page names each on the chart and in the result line
        expect(page.get_by_text(re.compile(r"suggested lr .*validation accuracy")).first).to_be_visible()
        text = page.get_by_text(re.compile(r"suggested lr .*validation accuracy")).first.inner_text()
        assert f"suggested lr {float(suggested):g}" in text and "your lr 0.001" in text, text
        charts = page.locator(".js-plotly-plot").all_inner_texts()
        assert any("suggested lr" in c and "your lr 0.001" in c for c in charts), charts
        page.screenshot(path=str(ARTIFACTS / "train-both.png"), full_page=True)
        browser.close()
