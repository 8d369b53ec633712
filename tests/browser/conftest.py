"""Fixtures of the browser tier: Debian's headless Chromium (Selenium + chromedriver)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import chromium_missing, console_errors, start_chromium
from selenium import webdriver


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    why = chromium_missing()
    if why is not None:
        pytest.skip(why)
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def no_console_errors(browser: webdriver.Chrome) -> Iterator[None]:
    """Fail the test when the page logged an error (script error, failed request, CSP)."""
    yield
    errors = console_errors(browser)
    assert errors == [], errors
