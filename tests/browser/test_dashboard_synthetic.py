"""The dashboard against a real ``colopp serve`` whose database holds synthetic samples and
events (the sampler's shapes): fast, no lab. Serving, auth of the stream, several
protections, empty states, markers and live updates without a reload."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import READ, WRITE, ApiServer, panel_figures, screenshot, sign_in, text_of
from selenium import webdriver
from selenium.webdriver.support.ui import Select, WebDriverWait
from synthetic import SyntheticPair, seed_protection

from colopp.compare.counters import Counters
from colopp_api.db.store import Store, make_engine, migrate
from colopp_api.live.sampler import SamplerMemory, Tally, digest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


class Seeded:
    def __init__(self, api: ApiServer, store: Store, busy: str, idle: str, pair: SyntheticPair):
        self.api, self.store, self.busy, self.idle, self.pair = api, store, busy, idle, pair


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    engine = make_engine(url)
    migrate(engine, url)
    store = Store(engine)
    now = time.time()
    busy, pair = seed_protection(store, "web-1", now - 600, 598, failover_at=400)
    idle, _ = seed_protection(store, "db-1", now, 0, None)
    server = ApiServer(tmp_path / "state", url)
    server.start()
    try:
        yield Seeded(server, store, busy, idle, pair)
    finally:
        server.kill(signal.SIGTERM)
        engine.dispose()


def _stream_messages(
    api: ApiServer, token: str | None, count: int, **params: str
) -> list[tuple[str, dict]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    got: list[tuple[str, dict]] = []
    with httpx.stream(
        "GET", f"{api.url}/dashboard/stream", params=params, headers=headers, timeout=10
    ) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in r.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind is not None:
                got.append((kind, json.loads(line.split(":", 1)[1])))
                if len(got) == count:
                    return got
    return got


def test_page_assets_and_stream_auth(seeded: Seeded) -> None:
    api = seeded.api
    page = httpx.get(f"{api.url}/dashboard")
    assert page.status_code == 200 and "colopp dashboard" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset, kind in (("app.js", "javascript"), ("vendor/uplot/uPlot.iife.min.js", "javascript")):
        r = httpx.get(f"{api.url}/dashboard/static/{asset}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    assert "MIT" in httpx.get(f"{api.url}/dashboard/static/vendor/uplot/LICENSE").text
    assert httpx.get(f"{api.url}/dashboard/static/../app.py").status_code == 404
    assert httpx.get(f"{api.url}/dashboard/static/index.html").status_code == 404
    # The stream needs a token, like every GET of the API; a read-only one is enough.
    r = httpx.get(f"{api.url}/dashboard/stream")
    assert r.status_code == 401 and r.json()["detail"].startswith("missing bearer token")
    r = httpx.get(
        f"{api.url}/dashboard/stream",
        params={"protection": "0123456789ab"},
        headers={"Authorization": f"Bearer {READ}"},
    )
    assert r.status_code == 404 and "no protection" in r.json()["detail"]
    messages = _stream_messages(api, READ, 4, protection=seeded.busy, window="120")
    kinds = [k for k, _ in messages]
    assert kinds[:2] == ["hello", "protections"]
    hello = messages[0][1]
    assert hello["failovers"] == 1 and hello["switchovers"] == 0 and hello["counted_through"] > 0
    samples = next(d["samples"] for k, d in messages if k == "samples")
    assert samples and min(s["t"] for s in samples) > time.time() - 125
    # Dashboard routes stay out of the OpenAPI document (and out of schemathesis' reach).
    with api.client(WRITE) as c:
        paths = c.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/dashboard")]


def _api_checkpoints(api: ApiServer, pid: str, until: float) -> int:
    with api.client(READ) as c:
        samples = c.get(f"/v1/protections/{pid}/metrics", params={"since": 0}).json()["samples"]
    return sum(s["new_checkpoints"] for s in samples if s["t"] <= until)


def test_dashboard_renders_and_follows_live(
    seeded: Seeded, browser: webdriver.Chrome, no_console_errors: None
) -> None:
    api, wait = seeded.api, WebDriverWait(browser, 30, poll_frequency=0.2)
    browser.get(f"{api.url}/dashboard")
    browser.find_element("id", "token").send_keys("not-the-token")
    browser.find_element("css selector", "#login button[type=submit]").click()
    wait.until(lambda d: "refused" in text_of(d, "#login-error"))
    browser.get_log("browser")  # the refused token's 401 is expected: start the log afresh

    sign_in(browser, api.url, READ, f"#p={seeded.busy}")
    options = Select(browser.find_element("id", "protection")).options
    assert len(options) == 2 and {o.get_attribute("value") for o in options} == {
        seeded.busy,
        seeded.idle,
    }
    wait.until(lambda d: text_of(d, "#tile-state .value") == "protected")
    assert text_of(browser, "#tile-primary .value") == "hostb"
    # Uncompared frames by EtherType: ARP's and IPv6 link control, never IPv6 itself.
    wait.until(lambda d: text_of(d, "#tile-passthrough .value") == "4")
    assert text_of(browser, "#tile-passthrough .tile-sub") == "0x0806: 4 · IPv6 ND/MLD: 2"
    figures = wait.until(lambda d: (f := panel_figures(d))["samples"] >= 590 and f)
    assert figures["checkpoints"] == _api_checkpoints(api, seeded.busy, figures["last_t"])
    assert figures["positive"] > 0 and set(figures["labels"]) >= {"periodic", "payload"}
    # One failover in the data: one marker on each of the six charts, one incident (the
    # stream sends events after samples: wait for them too).
    wait.until(lambda d: len(d.find_elements("css selector", ".marker-failover")) == 6, "markers")
    assert text_of(browser, "#tile-failovers .value") == "1"
    assert "failover: hosta lost" in text_of(browser, "#incidents")
    for panel in ("checkpoints", "pauses", "divergences", "hold", "packets", "cpu"):
        assert not browser.find_element("css selector", f"#panel-{panel} .empty").is_displayed()

    # Live: new samples and a switchover reach the page without a reload.
    browser.execute_script("window.__same_page = true")
    t, _, data = seeded.pair.failover()
    seeded.store.add_events(seeded.busy, [(t, "switchover", data)])
    for _ in range(3):
        sample, events = seeded.pair.step()
        seeded.store.add_sample(seeded.busy, sample["t"], sample)
        seeded.store.add_events(seeded.busy, events)
    newest = sample["t"]
    wait.until(lambda d: panel_figures(d)["last_t"] == newest)
    wait.until(lambda d: len(d.find_elements("css selector", ".marker-switchover")) == 6)
    assert "1 switchover" in text_of(browser, "#tile-failovers .tile-sub")
    assert browser.execute_script("return window.__same_page") is True
    screenshot(browser, "synthetic")

    # The other protection: nothing sampled yet, every chart says so.
    Select(browser.find_element("id", "protection")).select_by_value(seeded.idle)
    wait.until(lambda d: d.find_element("css selector", "#panel-checkpoints .empty").is_displayed())
    assert "no samples" in text_of(browser, "#panel-checkpoints .empty")
    assert text_of(browser, "#tile-checkpoint .tile-sub") == "no checkpoints yet"
    assert not browser.find_elements("css selector", ".marker")

    # The token went into headers only: never into a URL the page requested.
    urls = browser.execute_script(
        "return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]"
    )
    assert not [u for u in urls if READ in u]


def test_open_stream_does_not_hold_a_shutdown(seeded: Seeded) -> None:
    api = seeded.api
    headers = {"Authorization": f"Bearer {READ}"}
    with httpx.stream("GET", f"{api.url}/dashboard/stream", headers=headers, timeout=30) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        assert any(line.startswith("event: hello") for line in lines)
        assert api.proc is not None
        started = time.monotonic()
        api.proc.send_signal(signal.SIGTERM)
        api.proc.wait(timeout=20)  # uvicorn's graceful-shutdown timeout is 5 s
    assert time.monotonic() - started < 15


def _status(
    count: int, pauses: list[float], counters: dict[str, object] | None
) -> dict[str, object]:
    status: dict[str, object] = {"pid": 10, "vm_alive": True, "checkpoints": count}
    status |= {"checkpoint_pauses_ms": pauses, "last_checkpoint_at": 5.0}
    if counters is not None:
        status["comparator"] = {"counters": counters}
    return status


def test_samples_carry_checkpoint_reasons_and_hold_times() -> None:
    """What the dashboard's charts read from a sample beyond the README's basic fields."""
    counters = Counters()
    for held in (0.0002, 0.0002, 0.003, 2.0):
        counters.observe_hold(held)
    memory, tally = SamplerMemory(), Tally()
    digest(memory, tally, {"a": _status(2, [40, 41], counters.snapshot())}, ("a", "b"), 1.0, {})
    counters.divergences["payload"] += 1
    sample, _ = digest(
        memory, tally, {"a": _status(6, [45, 46], counters.snapshot())}, ("a", "b"), 2.0, {}
    )
    # 4 new checkpoints, 2 pauses reported: 1 payload, the rest periodic.
    assert sample["checkpoint_reasons"] == {"payload": 1, "periodic": 3}
    hold = sample["hold_time"]
    assert hold["buckets"][0] == 0.0001 and len(hold["counts"]) == len(hold["buckets"]) + 1
    assert sum(hold["counts"]) == 4 and hold["sum"] == pytest.approx(2.0034)
    builtin, _ = digest(SamplerMemory(), Tally(), {"a": _status(1, [], None)}, ("a", None), 3.0, {})
    assert builtin["hold_time"] is None and builtin["checkpoint_reasons"] == {}


def test_series_functions_in_the_browser(seeded: Seeded, browser: webdriver.Chrome) -> None:
    """series.js's pure functions, run by the browser that runs the page."""
    browser.get(f"{seeded.api.url}/dashboard")
    got = WebDriverWait(browser, 20).until(
        lambda d: d.execute_script(
            """
            if (!window.ColoppSeries) return null;
            const S = window.ColoppSeries;
            return {
              deltas: S.deltas([1, 3, 2, null, 5, 9]),
              rolling: S.rollingSum([0, 1, 2, 3, 70], [1, 1, 1, 1, 1], 60),
              p50: S.histogramQuantile([0.001, 0.01, 0.1], [0, 10, 0, 0], 0.5),
              p99: S.histogramQuantile([0.001, 0.01, 0.1], [0, 0, 0, 3], 0.99),
              none: S.histogramQuantile([0.001], [0, 0], 0.5),
              pct: S.percentile([1, 2, 3, 4, 100], 0.99),
              // A comparator restart (counts go down; none at all while failed over).
              hist: S.histogramDeltas([
                {counts: [1, 0], sum: 1}, {counts: [3, 1], sum: 4}, {counts: [1, 0], sum: 2},
                null, {counts: [2, 0], sum: 1}]),
            };
            """
        )
    )
    # A decrease (a restarted counter) or a gap is no rate: null, not a negative number.
    assert got["deltas"] == [None, 2, None, None, None, 4]
    assert got["rolling"] == [1, 2, 3, 4, 1]  # (10, 70]: only the last
    assert got["p50"] == pytest.approx(0.0055)
    assert got["p99"] == 0.1 and got["none"] is None and got["pct"] == 100
    assert got["hist"] == [
        None,
        {"counts": [2, 1], "sum": 3},
        {"counts": [1, 0], "sum": 2},
        None,
        {"counts": [2, 0], "sum": 1},
    ]
