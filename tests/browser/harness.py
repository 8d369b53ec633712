"""The browser tier's helpers: the API tier's server fixture code (tests/api/conftest.py,
loaded under its own name so the two ``conftest`` modules never shadow each other) and
Debian's Chromium driven by Selenium through Debian's chromedriver."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _api_conftest() -> ModuleType:
    name = "colopp_tests_api_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "tests/api/conftest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_api = _api_conftest()
ApiServer = _api.ApiServer
wait_until = _api.wait_until
lab_api_server = _api.lab_api_server
Postgres = _api.Postgres
READ: str = _api.READ
WRITE: str = _api.WRITE


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists() and shutil.which(path.name) is None:
            return f"no {path}: install Debian's chromium and chromium-driver (scripts/setup.sh)"
    return None


def start_chromium(width: int = 1400, height: int = 1400) -> webdriver.Chrome:
    """Headless Chromium with its console log readable through ``get_log("browser")``."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit chromedriver: Selenium Manager would try to download one.
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


def console_errors(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """Console messages of level SEVERE since the last call (errors, failed loads)."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Save ``artifacts/dashboard-NAME.png`` (the whole page)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return document.documentElement.scrollWidth")
    driver.set_window_size(max(1400, int(width)), int(height) + 20)
    path = ARTIFACTS / f"dashboard-{name}.png"
    driver.save_screenshot(str(path))
    return path


def sign_in(driver: webdriver.Chrome, url: str, token: str, fragment: str = "") -> None:
    """Open the dashboard and give it ``token`` through its sign-in form."""
    driver.get(f"{url}/dashboard{fragment}")
    field = WebDriverWait(driver, 20).until(
        lambda d: (
            d.find_element("id", "token") if d.find_element("id", "login").is_displayed() else None
        )
    )
    field.send_keys(token)
    driver.find_element("css selector", "#login button[type=submit]").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_element("id", "board").is_displayed())


def text_of(driver: webdriver.Chrome, selector: str) -> str:
    return str(
        driver.execute_script(f"return document.querySelector({selector!r})?.textContent ?? ''")
    )


def panel_figures(driver: webdriver.Chrome) -> dict[str, Any]:
    """What the checkpoint chart holds: the checkpoints summed over its samples, the number
    of samples, the newest sample's time, and the points in uPlot's own data."""
    figures: dict[str, Any] = driver.execute_script(
        """
        const panel = document.querySelector('#panel-checkpoints');
        const entry = window.coloppDashboard.state.charts.checkpoints;
        const data = entry ? entry.chart.data : [[]];
        let points = 0, positive = 0;
        for (const series of data.slice(1)) for (const v of series) {
          if (v != null) points++;
          if (v > 0) positive++;
        }
        return {checkpoints: Number(panel.dataset.checkpoints || 0),
                samples: Number(panel.dataset.samples || 0),
                last_t: Number(panel.dataset.lastT || 0),
                xs: data[0].length, points, positive,
                labels: entry ? entry.chart.series.slice(1).map(s => s.label) : []};
        """
    )
    return figures
