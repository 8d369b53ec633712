"""Fixtures of the browser tier: Debian's headless Chromium (Selenium + chromedriver)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import chromium_missing, console_errors, screenshot, start_chromium
from selenium import webdriver

_failed = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_failed] = True
    return report


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[webdriver.Chrome]:
    why = chromium_missing()
    if why is not None:
        pytest.skip(why)
    driver = start_chromium()
    try:
        yield driver
        if request.node.stash.get(_failed, False):  # what the page showed when it failed
            screenshot(driver, f"failed-{request.node.name}")
            print(driver.get_log("browser"))
    finally:
        driver.quit()


@pytest.fixture
def no_console_errors(browser: webdriver.Chrome) -> Iterator[None]:
    """Fail the test when the page logged an error (script error, failed request, CSP)."""
    yield
    errors = console_errors(browser)
    assert errors == [], errors
