"""A real pair on the lab, protected, failed over and unprotected through the API, with the
API process SIGKILLed and restarted while it is protected (SQLite only: a lab protect takes
60-90 s on the 2-core TCG machine; the HTTP suite covers PostgreSQL)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_webhooks import SECRET, Receiver

from colopp.demo.harness import ClientWorkload, WorkloadStuck
from colopp.lab import plan_lab
from colopp.lab.netlink import list_namespaces
from colopp.qemu.runtime import DEFAULT_ROOT
from colopp_api.webhooks.signing import verify
from tests.api.conftest import READ, ApiServer, get_protection, in_state, lab_api_server, wait_until

PREFIX = "clpapi"
pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture
def qemu_root() -> Path:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("lab tests need root and iproute2")
    root = Path(os.environ.get("COLOPP_QEMU_ROOT", DEFAULT_ROOT))
    if not (root / "usr/bin/qemu-system-x86_64").exists():
        pytest.skip(f"no QEMU runtime at {root}: run `colopp qemu install` (make test does)")
    return root


@pytest.fixture
def lab_api(qemu_root: Path) -> Iterator[ApiServer]:
    with lab_api_server(PREFIX, qemu_root) as server:
        yield server


def _event_types(c: httpx.Client, pid: str) -> list[str]:
    types, after = [], 0
    while True:
        page = c.get(f"/v1/protections/{pid}/events", params={"after": after, "limit": 1000}).json()
        types += [e["type"] for e in page["events"]]
        if page["next"] is None:
            return types
        after = page["next"]


def _events(c: httpx.Client, pid: str, kind: str) -> list[dict[str, Any]]:
    page = c.get(f"/v1/protections/{pid}/events", params={"type": kind, "limit": 1000}).json()
    events: list[dict[str, Any]] = page["events"]
    return events


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_protect_kill_api_failover_unprotect(lab_api: ApiServer) -> None:
    receiver = Receiver(fail_first=1)  # the failover's first delivery gets a 500
    try:
        with lab_api.client() as c:
            _protect_kill_api_failover_unprotect(lab_api, c, receiver)
    finally:
        receiver.close()


def _protect_kill_api_failover_unprotect(
    lab_api: ApiServer, c: httpx.Client, receiver: Receiver
) -> None:
    hook = c.post(
        "/v1/webhooks",
        json={"url": receiver.url, "kinds": ["failover", "switchover"], "secret": SECRET},
    )
    assert hook.status_code == 201, hook.text
    made = c.post("/v1/protections", json={"name": "lab-vm", "comparator": "colopp"})
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    second = c.post("/v1/protections", json={"name": "lab-vm2"})
    assert second.status_code == 409 and "only one lab" in second.json()["detail"]

    started = time.monotonic()
    wait_until("protected", in_state(c, pid, "protected"), 600, 1.0)
    protect_s = time.monotonic() - started
    got = wait_until(
        "pids",
        lambda: (g := get_protection(c, pid))["primary"]["pid"] and g["secondary"]["pid"] and g,
        30,
    )
    assert got["service"] == {"address": "198.18.0.100", "client_netns": f"{PREFIX}-client"}
    assert (got["primary"]["host"], got["secondary"]["host"]) == ("hosta", "hostb")
    qemu_pids = (got["primary"]["pid"], got["secondary"]["pid"])

    workload = ClientWorkload(plan_lab(PREFIX))
    try:
        # Connections opened now must live across a checkpoint before the failover.
        first = got["checkpoints"]
        wait_until("a checkpoint", lambda: get_protection(c, pid)["checkpoints"] > first + 1, 60)

        lab_api.kill()  # SIGKILL: the agents and both QEMUs keep the pair serving
        assert all(_alive(p) for p in qemu_pids)
        killed = time.monotonic()
        lab_api.start()
        again = wait_until(
            "re-attached pids", lambda: (g := get_protection(c, pid))["primary"]["pid"] and g, 30
        )
        assert again["state"] == "protected"
        assert (again["primary"]["pid"], again["secondary"]["pid"]) == qemu_pids
        assert "reattached" in _event_types(c, pid)
        reattach_s = time.monotonic() - killed

        workload.mark()
        r = c.post(f"/v1/protections/{pid}/failover")
        assert r.status_code == 202 and r.json()["state"] == "failing_over", r.text
        busy = c.post(f"/v1/protections/{pid}/switchover")
        assert busy.status_code == 409 and "switchover" in busy.json()["detail"]
        wait_until("failed over", in_state(c, pid, "failed_over", "reprotecting"), 60, 0.1)
        arrived, headers, body = receiver.wait_for(1, 10)[0]
        failover_t = next(
            e["t"]
            for e in c.get(f"/v1/protections/{pid}/events", params={"type": "failover"}).json()[
                "events"
            ]
        )
        webhook_s = arrived - failover_t
        assert headers["X-Colopp-Event"] == "failover" and webhook_s < 2.0, webhook_s
        assert verify(SECRET, body, headers["X-Colopp-Signature"])
        # answered 500: the same notification comes again, signed
        _again_t, again_headers, again_body = receiver.wait_for(2, 30)[1]
        assert again_headers["X-Colopp-Event"] == "failover" and again_body == body
        assert verify(SECRET, again_body, again_headers["X-Colopp-Signature"])
        failed_at = time.monotonic()
        back = wait_until("re-protected", in_state(c, pid, "protected"), 300, 0.5)
        reprotected_s = time.monotonic() - failed_at
        assert (back["primary"]["host"], back["secondary"]["host"]) == ("hostb", "hosta")
        # A planned switchover hands the service back to hosta, then re-protects.
        wait_until(
            "a checkpoint", lambda: get_protection(c, pid)["checkpoints"] > back["checkpoints"], 60
        )
        r = c.post(f"/v1/protections/{pid}/switchover")
        assert r.status_code == 202, r.text
        wait_until(
            "switched over",
            lambda: (g := in_state(c, pid, "protected")()) and g["primary"]["host"] == "hosta",
            300,
            0.5,
        )
        try:
            summary = workload.finish()
        except WorkloadStuck as exc:  # say what the pair was doing meanwhile
            got = get_protection(c, pid)
            events = c.get(f"/v1/protections/{pid}/events").json()["events"][-8:]
            raise AssertionError(
                f"{exc}; protection: state {got['state']}, {got['checkpoints']} checkpoints,"
                f" last events {events}"
            ) from exc
    finally:
        workload.kill()
    assert summary["requests_ok"] > 0
    assert summary["requests_failed"] == 0, summary
    assert summary["connections_reset"] == 0, summary
    assert summary["writes_lost"] == 0, summary

    print(  # the figures quoted in the README
        f"\nprotect {protect_s:.1f}s (incl. waiting for the lab lock), API restart to"
        f" re-attached {reattach_s:.1f}s, failover request to protected again"
        f" {reprotected_s:.1f}s, workload {summary['requests_ok']} ok /"
        f" {summary['requests_failed']} failed / {summary['connections_reset']} reset /"
        f" {summary['writes_lost']} lost of {summary.get('writes_acked')}, outage"
        f" {summary['failover_outage_ms']} ms, read back in {summary['finish_s']} s,"
        f" failover webhook {webhook_s * 1000:.0f} ms"
        " after the failover event"
    )
    types = _event_types(c, pid)
    assert {"state", "checkpoint", "failover", "reattached", "switchover"} <= set(types)
    samples = c.get(f"/v1/protections/{pid}/metrics", params={"since": 0}).json()["samples"]
    assert samples and samples[-1]["cpu_seconds"] and samples[-1]["comparator"] is not None
    with lab_api.client(READ) as reader:
        text = reader.get("/metrics").text
    assert f'colopp_checkpoints_total{{protection="{pid}"' in text
    # Counted apart: the requested failover and every failure the supervisor detected on its
    # own (a loaded machine can stall a checkpoint past stall_after: the secondary is then
    # dropped and re-protected, which is a failover too), and one switchover.
    failovers = _events(c, pid, "failover")
    assert [e["data"]["health"] for e in failovers].count("manual") == 1, failovers
    counted = f'colopp_failovers_total{{protection="{pid}"}} {float(len(failovers))}'
    assert counted in text, (counted, [line for line in text.splitlines() if "overs_" in line])
    assert len(_events(c, pid, "switchover")) == 1
    assert f'colopp_switchovers_total{{protection="{pid}"}} 1.0' in text
    assert f'colopp_agent_up{{host="hostb",protection="{pid}"}} 1.0' in text
    # the failover twice (answered 500, then retried), then the switchover (after any
    # failover the supervisor detected on its own)
    kinds = [h["X-Colopp-Event"] for _, h, _ in receiver.wait_for(len(failovers) + 2, 10)]
    assert kinds[:2] == ["failover", "failover"] and "switchover" in kinds[2:], kinds
    promtool = shutil.which("promtool")
    if promtool is not None:
        checked = subprocess.run(
            [promtool, "check", "metrics"], check=False, input=text, capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr

    # Unprotect: the primary goes on serving alone; then stop it too.
    r = c.delete(f"/v1/protections/{pid}")
    assert r.status_code == 202, r.text
    alone = wait_until("unprotected", in_state(c, pid, "unprotected"), 120, 0.5)
    assert not alone["stopped"] and alone["primary"]["host"] == "hosta"
    r = c.delete(f"/v1/protections/{pid}", params={"stop": "true"})
    assert r.status_code == 202, r.text
    done = wait_until("stopped", lambda: (g := get_protection(c, pid))["stopped"] and g, 120)
    assert done["state"] == "unprotected"
    assert [n for n in list_namespaces() if n.startswith(f"{PREFIX}-")] == []
    assert not any(_alive(p) for p in qemu_pids)
    gone = c.delete(f"/v1/protections/{pid}")
    assert gone.status_code == 409 and "stopped" in gone.json()["detail"]
