"""The ops dashboards in a real browser: ``evidently ui`` on a populated workspace, driven by headless Chromium.

The workspace holds real snapshots (drift reports of the demo catalogue's demand, forecast error by
pattern from a real backtest, bandit splits) at three monitoring dates, stored by
:mod:`monitoring.workspace`; the UI is started the way ``stockml dashboards --background`` starts it.
Selenium drives Debian's ``chromium`` with its ``chromium-driver`` (Playwright's browser download cannot
work here): from the project list it opens the ``stockml`` project and checks that each panel's title
is there and that the panel plotted data (its legend names the series and its chart has drawn marks;
an empty panel renders an empty chart with neither). A screenshot lands in ``$STOCKML_TEST_ARTIFACTS``
(default ``tests/artifacts/``) for the CI run's artifacts.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from dashboards_data import populate

from bench.serving_stack import free_port
from monitoring import workspace as ws
from stockml import dashboards as dash

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("STOCKML_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("STOCKML_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("STOCKML_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))
WAIT_S = 60
# The series each panel must show in its legend once it has data.
SERIES = {
    ws.DRIFT_TITLE: ["drift share"],
    ws.ERROR_TITLES["mase"]: None,  # the patterns present in the catalogue (filled in by the test)
    ws.ERROR_TITLES["mae"]: None,
    ws.BANDIT_TITLE: list(ws.ALIASES),
}
# Marks MUI X Charts draws for a plotted series: line paths, point marks, bars.
MARKS = ".MuiLineElement-root, .MuiMarkElement-root, .MuiBarElement-root"


def _browser():
    """Headless Chromium through Selenium; skips (a failure in CI) when the Debian packages are missing."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    for exe in (CHROMIUM, CHROMEDRIVER):
        if not (Path(exe).exists() or shutil.which(exe)):
            pytest.skip(f"{exe} missing: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1700"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def ui(router_data, tmp_path_factory):
    """``evidently ui`` (as ``stockml dashboards --background`` starts it) on a populated workspace."""
    root = tmp_path_factory.mktemp("dashboards")
    workspace = root / "evidently"
    dates = populate(workspace, router_data)
    port = free_port()
    files = dash.Background(root / "dashboards.pid", root / "dashboards.log")
    dash.start_background(workspace, "127.0.0.1", port, files)
    try:
        yield {"url": dash.ui_url("127.0.0.1", port), "dates": dates, "router_data": router_data}
    finally:
        assert dash.stop_background(files.pid_file)


def test_project_panels_render_with_data(ui):
    from dashboards_data import patterns_of
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    patterns = sorted(set(patterns_of(ui["router_data"]["demand"])))
    series = {title: names or patterns for title, names in SERIES.items()}
    driver = _browser()
    try:
        wait = WebDriverWait(driver, WAIT_S)
        driver.get(ui["url"])
        wait.until(ec.element_to_be_clickable((By.LINK_TEXT, ws.PROJECT_NAME))).click()
        wait.until(ec.url_contains("/projects/"))
        for title, names in series.items():
            heading = wait.until(ec.presence_of_element_located((By.XPATH, f"//h5[normalize-space()='{title}']")))
            card = heading.find_element(By.XPATH, "./ancestor::div[contains(@class,'MuiCard-root')][1]")
            wait.until(lambda _d, c=card: len(c.find_elements(By.CSS_SELECTOR, MARKS)) > 0)
            text = card.text
            missing = [n for n in names if n not in text]
            assert not missing, f"panel {title!r} shows no series {missing}: {text[:400]}"
            # every monitoring date is on the x axis
            for when in ui["dates"]:
                assert f"{when:%Y-%m-%d}" in text, f"panel {title!r} lacks the point of {when:%Y-%m-%d}"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "dashboards.png"
        driver.set_window_size(1400, driver.execute_script("return document.body.scrollHeight") + 100)
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()
