"""The dashboard against a real ``colopp serve`` protecting a real pair on the lab: the page
shows ``protected``, its checkpoint chart holds the API's checkpoints, and a failover through
the API reaches the page (new primary, failover marker) without a reload. Screenshots go to
``artifacts/dashboard-*.png``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import (
    READ,
    ApiServer,
    Postgres,
    console_errors,
    lab_api_server,
    panel_figures,
    screenshot,
    sign_in,
    text_of,
    wait_until,
)
from selenium import webdriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from colopp.demo.harness import ClientWorkload
from colopp.lab import plan_lab
from colopp.qemu.runtime import DEFAULT_ROOT

PREFIX = "clpdash"
#: Protect takes 60-90 s here, plus however long other runs hold the host's lab.
LAB_WAIT = 1500
pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(LAB_WAIT + 400)]


@pytest.fixture
def lab_api() -> Iterator[ApiServer]:
    """``colopp serve`` (state in PostgreSQL) allowed to build the lab under ``clpdash``."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("lab tests need root and iproute2")
    root = Path(os.environ.get("COLOPP_QEMU_ROOT", DEFAULT_ROOT))
    if not (root / "usr/bin/qemu-system-x86_64").exists():
        pytest.skip(f"no QEMU runtime at {root}: run `colopp qemu install` (make test does)")
    # The API's state in PostgreSQL here (the API tier's real pair runs on SQLite), so a
    # real pair is protected and failed over through the API on both databases.
    pg = Postgres()
    pg.start()
    try:
        with lab_api_server(PREFIX, root, pg.new_database()) as server:
            yield server
    finally:
        pg.stop()


def _get(c: httpx.Client, pid: str) -> dict[str, Any]:
    got: dict[str, Any] = c.get(f"/v1/protections/{pid}").json()
    assert got["state"] != "error", got["reason"]
    return got


def _api_checkpoints(c: httpx.Client, pid: str, until: float) -> int:
    samples = c.get(f"/v1/protections/{pid}/metrics", params={"since": 0}).json()["samples"]
    return sum(s["new_checkpoints"] for s in samples if s["t"] <= until)


def _unreachable_hosts_body() -> dict[str, Any]:
    """A second protection, on agents nobody runs: it ends in ``error`` at once."""
    return {
        "name": "far-away",
        "placement": "hosts",
        "hosts": {
            "primary": {
                "name": "h1",
                "agent": "127.0.0.1:9",
                "tap": "tap0",
                "repl_ip": "127.0.0.2",
            },
            "secondary": {
                "name": "h2",
                "agent": "127.0.0.1:9",
                "tap": "tap0",
                "repl_ip": "127.0.0.3",
            },
        },
        "base_disk": "/nonexistent/far-away.qcow2",
        "vm": {
            "kernel": "/nonexistent/vmlinuz",
            "initrd": "/nonexistent/initrd",
            "append": "quiet",
        },
    }


def test_dashboard_follows_a_lab_pair_through_a_failover(
    lab_api: ApiServer, browser: webdriver.Chrome
) -> None:
    wait = WebDriverWait(browser, 60, poll_frequency=0.2)
    sign_in(browser, lab_api.url, READ)
    Select(browser.find_element("id", "range")).select_by_value("60")  # a short test: zoom in
    wait.until(lambda d: d.find_element("id", "no-protection").is_displayed(), "empty board")

    with lab_api.client() as c:
        made = c.post(
            "/v1/protections",
            json={
                "name": "dash-vm",
                "comparator": "colopp",
                "prerelease": True,
                "auto_reprotect": False,
            },
        )
        assert made.status_code == 201, made.text
        pid = made.json()["id"]
        other = c.post("/v1/protections", json=_unreachable_hosts_body())
        assert other.status_code == 201, other.text
        # The selector lists both; the lab pair (the oldest at work) stays selected.
        wait.until(
            lambda d: len(d.find_elements("css selector", "#protection option")) == 2, "2 options"
        )
        selector = Select(browser.find_element("id", "protection"))
        assert selector.first_selected_option.get_attribute("value") == pid
        wait.until(lambda d: text_of(d, "#tile-state .value") in ("starting", "syncing"))
        # The other one fails (nobody listens there): its tiles and charts say so.
        selector.select_by_value(other.json()["id"])
        wait.until(lambda d: text_of(d, "#tile-state .value") == "error", "error tile")
        assert "agent" in text_of(browser, "#tile-state .tile-sub")
        assert browser.find_element("css selector", "#panel-checkpoints .empty").is_displayed()
        selector.select_by_value(pid)
        wait.until(
            lambda d: text_of(d, "#tile-state .value") in ("starting", "syncing", "protected")
        )

        # Another test run or benchmark may hold the host's lab: the protection waits for it.
        wait_until("protected", lambda: _get(c, pid)["state"] == "protected", LAB_WAIT, 1.0)
        wait.until(lambda d: text_of(d, "#tile-state .value") == "protected", "state tile")
        assert text_of(browser, "#tile-primary .value") == "hosta"
        workload = ClientWorkload(plan_lab(PREFIX), connections=2)
        try:
            figures = wait.until(lambda d: (f := panel_figures(d))["checkpoints"] >= 3 and f)
            assert figures["checkpoints"] == _api_checkpoints(c, pid, figures["last_t"])
            assert figures["positive"] > 0 and figures["xs"] == figures["samples"]
            assert not browser.find_element(
                "css selector", "#panel-checkpoints .empty"
            ).is_displayed()
            assert console_errors(browser) == []
            screenshot(browser, "protected")

            browser.execute_script("window.__same_page = true")
            r = c.post(f"/v1/protections/{pid}/failover")
            assert r.status_code == 202, r.text
            wait.until(lambda d: text_of(d, "#tile-primary .value") == "hostb", "new primary")
            wait.until(
                lambda d: d.find_elements("css selector", "#panel-checkpoints .marker-failover")
            )
            wait.until(lambda d: text_of(d, "#tile-failovers .value") == "1", "failover count")
            wait.until(lambda d: text_of(d, "#tile-state .value") == "failed_over")
            assert "failover: hosta lost (manual)" in text_of(browser, "#incidents")
            assert browser.execute_script("return window.__same_page") is True
            assert _get(c, pid)["primary"]["host"] == "hostb"
            # The new primary's samples keep coming in.
            seen = panel_figures(browser)["samples"]
            wait.until(lambda d: panel_figures(d)["samples"] > seen + 2)
            screenshot(browser, "failover")
        finally:
            workload.kill()
    assert console_errors(browser) == []
