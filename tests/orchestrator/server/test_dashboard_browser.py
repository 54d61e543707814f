"""The dashboard in a real headless browser: Debian's Chromium driven by Selenium through
Debian's chromedriver (both paths given: Selenium Manager downloads nothing), against a real
server on a farm holding jobs, artifacts, results and workers.

Screenshots of every page go to ``$ORCHESTRATE_SCREENSHOT_DIR`` (default: a ``screenshots``
folder under pytest's temporary directory, printed at the end of the module)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator import models as m
from orchestrator import tokens
from orchestrator.server import create_app, dashboard
from orchestrator.server.testing import ServerThread
from orchestrator.services import Farm
from orchestrator.testing import embedded_settings
from tests.orchestrator.server.dashboard_farm import BUILDS, HOSTILE, MODEL, Seeded, seed

CHROMIUM = os.environ.get("ORCHESTRATE_CHROMIUM") or shutil.which("chromium")
CHROMEDRIVER = os.environ.get("ORCHESTRATE_CHROMEDRIVER") or shutil.which("chromedriver")
# Read at import: the suite's fixtures clear ORCHESTRATE_* variables around every test.
SCREENSHOT_DIR = os.environ.get("ORCHESTRATE_SCREENSHOT_DIR")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs Debian's chromium and chromium-driver (scripts/setup.sh installs them)",
    ),
]

webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (requirements-dev.txt)")
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

#: The tables' refresh interval here (the default is 3 s): the live test waits for one.
REFRESH_MS = 300


@dataclass
class Dash:
    url: str
    farm: Farm
    seeded: Seeded
    reader: str
    browser: Any
    shots: Path

    def get(self, path: str) -> None:
        self.browser.get(self.url + path)

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        # The whole page, not only the window: tall tables and the plots below them.
        size = self.browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}
        shot = self.browser.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def click(self, css: str) -> None:
        """Click what loads a new page, and wait until it has."""
        from selenium.webdriver.support import expected_conditions

        old = self.one("html")
        self.one(css).click()
        # Asked about while its page is being replaced, the old element can also answer
        # chromedriver's "unhandled inspector error" (seen on a loaded machine); the next poll
        # finds it stale. A page that never loads still times out.
        WebDriverWait(self.browser, 10, ignored_exceptions=(WebDriverException,)).until(
            expected_conditions.staleness_of(old)
        )

    def pause(self) -> None:
        """Untick "live": heartbeat ages change every second, and the rows with them."""
        self.one("#live").click()
        assert not self.one("#live").is_selected()

    def all(self, css: str) -> list[Any]:
        return list(self.browser.find_elements(By.CSS_SELECTOR, css))

    def one(self, css: str) -> Any:
        return self.browser.find_element(By.CSS_SELECTOR, css)


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    from selenium.webdriver.chrome.service import Service

    home = tmp_path_factory.mktemp("dashboard-farm")
    farm = Farm(embedded_settings(home, api_rate_limit=0, api_token_cache_seconds=0))
    seeded = seed(farm)
    reader = tokens.create_token(farm, "rita", "read").secret
    shots = Path(SCREENSHOT_DIR or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,900", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dashboard, "REFRESH_MS", REFRESH_MS)
        app = create_app(farm)
    with ServerThread(app) as server:
        browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        browser.set_page_load_timeout(30)
        try:
            yield Dash(server.url, farm, seeded, reader, browser, shots)
        finally:
            browser.quit()
    print(f"\ndashboard screenshots: {shots}")


@pytest.fixture
def signed_in(dash: Dash) -> Dash:
    """The browser holds the token's cookie (signing in through ``?token=`` once)."""
    if dash.browser.get_cookie(dashboard.COOKIE) is None:
        dash.get(f"/dashboard/workers?token={dash.reader}")
    return dash


def test_an_unauthenticated_browser_gets_the_login_form_and_nothing_else(dash: Dash) -> None:
    dash.browser.delete_all_cookies()
    older = dash.seeded.older_fp32
    dash.get(f"/dashboard/artifacts/{older}")
    assert dash.browser.title.startswith("Sign in")
    # Only the address it asked for (to come back to after signing in), none of the artifact.
    source = dash.browser.page_source
    assert MODEL not in source and "onnxruntime" not in source and "sha256" not in source
    assert dash.one("input[name=next]").get_attribute("value") == f"/dashboard/artifacts/{older}"
    dash.shot("login")
    dash.one("#token").send_keys("orc_not-a-token")
    dash.click("#sign-in")
    assert "not valid" in dash.one("#login-problem").text
    dash.one("#token").send_keys(dash.reader)
    dash.click("#sign-in")
    # Back where the browser meant to go, signed in with a cookie scripts cannot read.
    assert dash.browser.current_url == f"{dash.url}/dashboard/artifacts/{older}"
    assert "rita (read)" in dash.one("#whoami").text
    cookie = dash.browser.get_cookie(dashboard.COOKIE)
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard"
    assert dashboard.COOKIE not in dash.browser.execute_script("return document.cookie")


def test_a_token_in_the_url_signs_in_once_and_leaves_the_address(dash: Dash) -> None:
    dash.browser.delete_all_cookies()
    dash.get(f"/dashboard/jobs?state=failed&token={dash.reader}")
    assert dash.browser.current_url == f"{dash.url}/dashboard/jobs?state=failed"
    assert len(dash.all("tr.job")) == 1
    dash.click("header .whoami button")
    assert dash.browser.title.startswith("Sign in")
    dash.get("/dashboard/jobs")
    assert dash.browser.title.startswith("Sign in") and not dash.all("tr.job")


def test_jobs_page_shows_every_job_with_its_state_and_phase_timeline(signed_in: Dash) -> None:
    dash = signed_in
    dash.get("/dashboard/jobs")
    rows = dash.all("tr.job")
    # 5 builds of the model, 1 of the hostile one, and a running, a queued and a failed job.
    assert len(rows) == 9
    states = [row.find_element(By.CSS_SELECTOR, ".badge.state").text for row in rows]
    assert sorted(states) == sorted(["succeeded"] * 6 + ["running", "queued", "failed"])
    # Newest first: the failed job was submitted last.
    assert states[0] == "failed" and "unsupported_op" in rows[0].text
    # A succeeded build ran five phases; the running job has closed two; the queued none.
    by_job = {row.get_attribute("data-job"): row for row in rows}
    assert len(by_job[dash.seeded.running_job].find_elements(By.CSS_SELECTOR, "svg.timeline rect.segment")) == 2
    assert not by_job[dash.seeded.queued_job].find_elements(By.CSS_SELECTOR, "svg.timeline")
    segments = dash.all("svg.timeline rect.segment")
    assert len(segments) == 6 * 5 + 2 + 2
    built = rows[-1].find_elements(By.CSS_SELECTOR, "rect.segment")
    assert [s.get_attribute("data-phase") for s in built] == ["fetch", "lowering", "conversion", "build", "validate"]
    # Phases end to end, widths in proportion: build (6 s) is four times lowering (1.5 s).
    widths = [float(s.get_attribute("width")) for s in built]
    assert widths[3] == pytest.approx(4 * widths[1], rel=0.01)
    xs = [float(s.get_attribute("x")) for s in built]
    assert all(xs[i + 1] == pytest.approx(xs[i] + widths[i], abs=0.02) for i in range(4))
    dash.shot("jobs")


def test_jobs_filters_narrow_the_rows(signed_in: Dash) -> None:
    dash = signed_in
    dash.get("/dashboard/jobs")
    Select(dash.one("#filter-state")).select_by_value("running")
    dash.click("#apply-filters")
    assert dash.browser.current_url.endswith("/dashboard/jobs?state=running&model=&target=&backend=&submitter=")
    (row,) = dash.all("tr.job")
    assert row.get_attribute("data-job") == dash.seeded.running_job
    dash.get("/dashboard/jobs?submitter=bob")
    assert {r.get_attribute("data-job") for r in dash.all("tr.job")} == {dash.seeded.running_job, dash.seeded.queued_job}
    dash.get("/dashboard/jobs?target=aarch64/orin")
    assert [r.find_element(By.CSS_SELECTOR, ".badge.state").text for r in dash.all("tr.job")] == ["queued", "succeeded"]
    dash.get("/dashboard/jobs?backend=tensorrt&state=succeeded")
    assert len(dash.all("tr.job")) == 1
    dash.get(f"/dashboard/jobs?model={MODEL}&target=x86_64")
    # The portable x86_64 target only: two fp32 builds, the int8 one and the running fp16 job.
    assert len(dash.all("tr.job")) == 4
    assert dash.one("#filter-target").get_attribute("value") == "x86_64"
    dash.get("/dashboard/jobs?model=no-such-model")
    assert not dash.all("tr.job") and "no jobs match" in dash.one("tr.empty").text
    dash.get("/dashboard/jobs?target=sparc")
    assert "target 'sparc'" in dash.one("#error-message").text
    dash.shot("jobs-filtered")


def test_jobs_page_follows_state_changes_live(signed_in: Dash) -> None:
    dash = signed_in
    dash.get("/dashboard/jobs?state=")
    queued = dash.seeded.queued_job
    badge = f"tr[data-job='{queued}'] .badge.state"
    assert dash.one(badge).text == "queued"
    with dash.farm.session() as session:
        job = session.get(m.Job, queued)
        assert job is not None
        job.state, job.phase, job.worker_name = m.JobState.RUNNING, "conversion", "orin-7"
        job.phase_timings = {"fetch": 0.5}
    try:
        # No reload: the page's script fetches the rows again.
        # (A row read in the instant its table is swapped is stale: read it again.)
        WebDriverWait(dash.browser, 10, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda _: dash.one(badge).text == "running"
        )
        row = dash.one(f"tr[data-job='{queued}']")
        assert "conversion" in row.find_element(By.CSS_SELECTOR, ".phase").text
        assert len(row.find_elements(By.CSS_SELECTOR, "rect.segment")) == 1
        assert dash.one("#refreshed").text.startswith("updated")
    finally:
        with dash.farm.session() as session:
            job = session.get(m.Job, queued)
            assert job is not None
            job.state, job.phase, job.worker_name, job.phase_timings = m.JobState.QUEUED, None, None, {}


def test_workers_page_marks_the_stale_worker(signed_in: Dash) -> None:
    dash = signed_in
    dash.get("/dashboard/workers")
    dash.pause()
    rows = {row.get_attribute("data-worker"): row for row in dash.all("tr.worker")}
    assert set(rows) == {"cpu-box-1", "orin-7"}
    stale = rows["orin-7"]
    assert "status-stale" in stale.get_attribute("class").split()
    assert stale.find_element(By.CSS_SELECTOR, ".badge.status").text == "stale"
    assert "min ago" in stale.find_element(By.CSS_SELECTOR, ".heartbeat").text
    assert "NVIDIA Jetson AGX Orin" in stale.text and "L4T 36.3.0" in stale.text
    assert "compile.aarch64.orin" in stale.find_element(By.CSS_SELECTOR, ".queues").text
    live = rows["cpu-box-1"]
    assert live.find_element(By.CSS_SELECTOR, ".badge.status").text == "live"
    assert dash.seeded.running_job[:12] in live.find_element(By.CSS_SELECTOR, ".current").text
    assert "build" in live.find_element(By.CSS_SELECTOR, ".current").text
    assert "torch 2.13.0" in live.text and "onnxruntime 1.22.0" in live.text
    dash.shot("workers")
    dash.click("#show-offline")
    dash.pause()
    offline = dash.one("tr[data-worker='old-box']")
    assert offline.find_element(By.CSS_SELECTOR, ".badge.status").text == "offline"


def test_model_page_plots_every_target_and_precision_side_by_side(signed_in: Dash) -> None:
    dash = signed_in
    dash.get("/dashboard/jobs")
    dash.click("tr.job:last-child td.model a")
    assert dash.one("#model-name").text == MODEL
    assert dash.one("#model-summary").text.startswith("5 artifact(s) over 4 ")
    groups = dash.all("#groups tr.group")
    assert len(groups) == len(BUILDS) == 4
    cells = {tuple(g.text.split()[:3]): g for g in groups}
    # The newest of the two fp32 builds stands for its group.
    fp32 = cells[("x86_64", "onnxruntime", "fp32")]
    assert fp32.find_element(By.CSS_SELECTOR, "a").get_attribute("title") == dash.seeded.artifacts[("x86_64", None, "onnxruntime", "fp32")]
    assert fp32.find_element(By.CSS_SELECTOR, ".speedup").text == "2.00×"
    # Built before workers recorded speed: a dash, not a zero.
    sm90 = cells[("x86_64/sm90", "aotinductor", "fp16")]
    assert sm90.find_element(By.CSS_SELECTOR, ".speedup").text == "–"
    assert sm90.find_element(By.CSS_SELECTOR, ".compiled").text == "–"
    # Latency: compiled and eager bars for the three groups with numbers; speedup: one each.
    assert len(dash.all("#latency-chart rect.bar-compiled")) == 3
    assert len(dash.all("#latency-chart rect.bar-eager")) == 3
    speedups = dash.all("#speedup-chart rect.bar-speedup")
    assert sorted(float(b.get_attribute("data-value")) for b in speedups) == [2.0, 4.0, 9.0]
    widths = {float(b.get_attribute("data-value")): float(b.get_attribute("width")) for b in speedups}
    assert widths[9.0] == pytest.approx(4.5 * widths[2.0], rel=0.01)
    assert len(dash.all("#speedup-chart text.missing")) == 1 and len(dash.all("#latency-chart text.missing")) == 1
    assert len(dash.all("#speedup-chart line.reference")) == 1
    assert "rejected" in cells[("x86_64", "onnxruntime", "int8")].text
    assert len(dash.all("#artifacts tr.artifact")) == 5
    dash.shot("model")


def test_artifact_page_shows_metrics_compile_report_and_downloads(signed_in: Dash) -> None:
    dash = signed_in
    rejected = dash.seeded.artifacts[("x86_64", None, "onnxruntime", "int8")]
    dash.get(f"/dashboard/models/{MODEL}")
    dash.click(f"#artifacts a[title='{rejected}']")
    assert dash.one("#gate").text == "rejected"
    metrics = dash.all("#metrics tr.metric")
    assert len(metrics) == 3 + 4  # accuracy rows, then the (performance) rows
    table = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in metrics]
    assert ["output_0", "max_abs_error", "0.002", "0.001", "fail"] in table
    assert ["output_0", "cosine_similarity", "0.9995", "0.999", "pass"] in table
    assert ["(performance)", "speedup", "4", "–", "pass"] in table
    assert len(dash.all("#metrics tr.fail")) == 1
    partitions = dash.all("#partitions tr.partition")
    assert [p.get_attribute("class").split()[-1] for p in partitions] == ["accelerated", "fallback"]
    assert "aten.sort.default: no converter" in partitions[1].text and "PyTorch" in partitions[1].text
    (fallback,) = dash.all("#fallback tr.fallback-op")
    assert fallback.text.startswith("aten.sort.default 2") and "no converter for aten.sort.default" in fallback.text
    assert "speedup 4.00×" in dash.one("#facts").text
    dash.shot("artifact")
    # The download link streams the engine package (the API's download, with the cookie).
    href = dash.one("#download").get_attribute("href")
    fetched = dash.browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(arguments[0], {credentials: "same-origin"}).then(async (r) => {
          const bytes = new Uint8Array(await r.arrayBuffer());
          const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
          done([r.status, r.headers.get("X-Orchestrate-SHA256"),
                Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""), bytes.length,
                r.headers.get("Content-Disposition")]);
        }).catch((e) => done([0, String(e)]));""",
        href,
    )
    expected = hashlib.sha256(dash.seeded.payload).hexdigest()
    assert fetched[:4] == [200, expected, expected, len(dash.seeded.payload)]
    assert fetched[4].startswith("attachment; filename=") and "resnet-tiny" in fetched[4]


def test_a_hostile_model_name_is_shown_as_text_and_runs_nothing(signed_in: Dash) -> None:
    dash = signed_in
    dash.get("/dashboard/jobs")
    links = [a.get_attribute("href") for a in dash.all("td.model a") if a.text == HOSTILE]
    assert len(links) == 1
    dash.browser.get(links[0])
    assert dash.one("#model-name").text == HOSTILE
    assert len(dash.all("#groups tr.group")) == 1
    artifact = dash.seeded.hostile_artifact
    dash.get(f"/dashboard/artifacts/{artifact}")
    assert dash.one("#model-link").text == HOSTILE
    dash.get(f"/dashboard/jobs?model={HOSTILE.replace('&', '%26')}")
    assert [a.text for a in dash.all("td.model a")] == [HOSTILE]
    # No element, script or handler of the name's made it into any of these pages.
    assert not dash.all("#pwned") and "pwned" not in dash.browser.title
    assert [s.get_attribute("src") for s in dash.all("script")] == [f"{dash.url}/dashboard/static/dashboard.js"]
    dash.shot("hostile-name")
