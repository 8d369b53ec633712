"""The API over HTTP against a real uvicorn server, on SQLite and on PostgreSQL:
auth on every route, reasons on every 4xx, states and 409s, events, metrics, migrations."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import sqlalchemy as sa

from tests.api.conftest import READ, WRITE, ApiServer, wait_until

MUTATING = [
    ("POST", "/v1/protections"),
    ("POST", "/v1/protections/abc/failover"),
    ("POST", "/v1/protections/abc/switchover"),
    ("POST", "/v1/protections/abc/reprotect"),
    ("DELETE", "/v1/protections/abc"),
]
READING = [
    ("GET", "/v1/protections"),
    ("GET", "/v1/protections/abc"),
    ("GET", "/v1/protections/abc/events"),
    ("GET", "/v1/protections/abc/metrics"),
    ("GET", "/metrics"),
]

HOSTS_BODY = {
    "name": "web-1",
    "placement": "hosts",
    "hosts": {
        "primary": {
            "name": "hosta",
            "agent": "127.0.0.1:1",
            "tap": "tap0",
            "repl_ip": "198.18.1.2",
        },
        "secondary": {
            "name": "hostb",
            "agent": "127.0.0.1:2",
            "tap": "tap0",
            "repl_ip": "198.18.1.3",
        },
    },
    "base_disk": "/var/lib/colopp/disk.qcow2",
    "vm": {"kernel": "/boot/vmlinuz", "initrd": "/boot/initrd", "append": "console=ttyS0"},
    "prerelease": True,
    "semiactive": True,
}


def _reason(response: object) -> str:
    detail = response.json()["detail"]  # type: ignore[attr-defined]
    assert isinstance(detail, str) and detail, response
    return detail


def test_healthz_is_open(api: ApiServer) -> None:
    with api.client(None) as c:
        assert c.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize(("method", "path"), MUTATING + READING)
def test_missing_or_wrong_token_is_401(api: ApiServer, method: str, path: str) -> None:
    for token in (None, "not-a-token"):
        with api.client(token) as c:
            r = c.request(method, path, json=HOSTS_BODY if method == "POST" else None)
        assert r.status_code == 401, (token, r.text)
        assert "token" in _reason(r)
        assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), MUTATING)
def test_read_only_token_cannot_write(api: ApiServer, method: str, path: str) -> None:
    with api.client(READ) as c:
        r = c.request(method, path, json=HOSTS_BODY if method == "POST" else None)
    assert r.status_code == 403
    assert _reason(r) == "this token is read-only"


@pytest.mark.parametrize(("method", "path"), READING)
def test_read_only_token_can_read(api: ApiServer, method: str, path: str) -> None:
    with api.client(READ) as c:
        r = c.request(method, path)
    assert r.status_code in (200, 404)
    if r.status_code == 404:
        assert "abc" in _reason(r)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"name": "Bad_Name"}, "name"),
        ({"name": "x" * 33}, "name"),
        ({"backend": "xen"}, "backend"),
        ({"checkpoint_delay_ms": 5}, "checkpoint_delay_ms"),
        ({"placement": "moon"}, "placement"),
        ({"base_disk": None}, "base_disk"),
        ({"hosts": None}, "hosts"),
        ({"unknown": 1}, "unknown"),
        ({"guest": "windows"}, "guest"),
        ({"guest": "debian"}, "placement hosts brings its own VM"),
        ({"vm": {"kernel": "/boot/vmlinuz"}}, "vm.initrd, vm.append"),
    ],
)
def test_bad_input_is_422_with_a_reason(
    api: ApiServer, change: dict[str, object], needle: str
) -> None:
    with api.client() as c:
        r = c.post("/v1/protections", json=HOSTS_BODY | change)
    assert r.status_code == 422, r.text
    assert needle in _reason(r)


def test_same_hosts_agent_outside_networks_and_lab_disabled(api: ApiServer) -> None:
    with api.client() as c:
        hosts = HOSTS_BODY["hosts"]
        same = {"hosts": {"primary": hosts["primary"], "secondary": hosts["primary"]}}  # type: ignore[index]
        assert "different hosts" in _reason(c.post("/v1/protections", json=HOSTS_BODY | same))
        far = {**hosts["primary"], "agent": "8.8.8.8:53"}  # type: ignore[index]
        r = c.post("/v1/protections", json=HOSTS_BODY | {"hosts": {**hosts, "primary": far}})  # type: ignore[dict-item]
        assert r.status_code == 422 and "COLOPP_API_AGENT_NETWORKS" in _reason(r)
        r = c.post("/v1/protections", json={"name": "lab-1"})
        assert r.status_code == 409 and "lab placement is disabled" in _reason(r)


def test_hosts_protection_with_unreachable_agents_ends_in_error(api: ApiServer) -> None:
    with api.client() as c:
        r = c.post("/v1/protections", json=HOSTS_BODY)
        assert r.status_code == 201, r.text
        made = r.json()
        assert made["state"] == "starting" and made["options"]["prerelease"] is True
        pid = made["id"]
        duplicate = c.post("/v1/protections", json=HOSTS_BODY)
        assert duplicate.status_code == 409 and "web-1" in _reason(duplicate)
        done = wait_until(
            "error state",
            lambda: (p := c.get(f"/v1/protections/{pid}").json())["state"] == "error" and p,
            30,
        )
        assert "unreachable" in done["reason"] and done["stopped"] is True
        for action in ("failover", "switchover", "reprotect"):
            r = c.post(f"/v1/protections/{pid}/{action}")
            assert r.status_code == 409 and "is error" in _reason(r), r.text
        # An errored protection is already stopped: DELETE is refused and keeps the reason.
        r = c.delete(f"/v1/protections/{pid}")
        assert r.status_code == 409 and "stopped" in _reason(r)
        assert c.get(f"/v1/protections/{pid}").json()["reason"] == done["reason"]
        events = c.get(f"/v1/protections/{pid}/events", params={"limit": 1}).json()
        assert events["events"][0]["type"] == "state" and events["next"] is not None
        rest = c.get(f"/v1/protections/{pid}/events", params={"after": events["next"]}).json()
        types = {e["type"] for e in rest["events"]}
        assert "error" in types
        assert c.get(f"/v1/protections/{pid}/metrics", params={"since": 0}).json() == {
            "samples": []
        }
        listed = c.get("/v1/protections").json()["protections"]
        assert pid in [p["id"] for p in listed]


def test_prometheus_exposition_passes_promtool(api: ApiServer) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing (Debian's prometheus package; scripts/setup.sh)")
    with api.client(READ) as c:
        c.post("/v1/protections", json=HOSTS_BODY)  # 403, but metrics exist regardless
        text = c.get("/metrics").text
    assert "colopp_protections{" in text
    result = subprocess.run(
        [promtool, "check", "metrics"], check=False, input=text, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_migrations_ran_from_empty(api: ApiServer) -> None:
    engine = sa.create_engine(api.env["COLOPP_DATABASE_URL"])
    with engine.connect() as conn:
        assert conn.execute(sa.text("select version_num from alembic_version")).scalar() == "0002"
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert {"protections", "events", "metric_samples", "webhooks", "webhook_deliveries"} <= tables


def test_state_survives_a_restart(api: ApiServer) -> None:
    with api.client() as c:
        pid = c.post("/v1/protections", json=HOSTS_BODY).json()["id"]
        wait_until("error", lambda: c.get(f"/v1/protections/{pid}").json()["state"] == "error", 30)
    api.kill()
    api.start()
    with api.client(WRITE) as c:
        got = c.get(f"/v1/protections/{pid}").json()
    assert got["state"] == "error" and got["name"] == "web-1"


def test_lab_placement_takes_the_debian_guest() -> None:
    from colopp_api.schemas import ProtectionCreate

    assert ProtectionCreate.model_validate({"name": "lab-1", "guest": "debian"}).guest == "debian"
    assert ProtectionCreate.model_validate({"name": "lab-1"}).guest == "kvd"


def test_hosts_placement_boots_its_disk_without_a_kernel() -> None:
    from colopp_api.live.placement import DISK_BOOT_TIMEOUT_S, hosts_vm
    from colopp_api.schemas import ProtectionCreate

    body = HOSTS_BODY | {"vm": {"memory_mb": 1024, "vcpus": 2}}
    spec = ProtectionCreate.model_validate(body)
    vm = hosts_vm(spec)
    assert (vm.kernel, vm.initrd, vm.append) == (None, None, "")
    assert (vm.memory_mb, vm.vcpus) == (1024, 2)
    vm.validate()
    direct = hosts_vm(ProtectionCreate.model_validate(HOSTS_BODY))
    assert direct.kernel is not None and direct.append == "console=ttyS0"
    assert DISK_BOOT_TIMEOUT_S >= 300


def test_a_running_vm_is_named_by_its_qmp_socket() -> None:
    import pytest
    from pydantic import ValidationError

    from colopp_api.schemas import ProtectionCreate

    body = {k: v for k, v in HOSTS_BODY.items() if k not in ("base_disk", "vm")}
    spec = ProtectionCreate.model_validate(body | {"running_qmp": "/run/vms/web1.qmp"})
    assert spec.running_qmp == "/run/vms/web1.qmp" and spec.base_disk is None
    with pytest.raises(ValidationError, match="placement hosts needs base_disk"):
        ProtectionCreate.model_validate(body)
    with pytest.raises(ValidationError, match="running_qmp needs placement hosts"):
        ProtectionCreate.model_validate({"name": "lab-1", "running_qmp": "/run/x.qmp"})
    with pytest.raises(ValidationError, match="running_qmp"):
        ProtectionCreate.model_validate(body | {"running_qmp": "relative/x.qmp"})
    # A running libvirt domain, by name (taken over by colopp's QEMU: backend qemu).
    spec = ProtectionCreate.model_validate(body | {"running_domain": "web_1.prod"})
    assert spec.running_domain == "web_1.prod" and spec.base_disk is None
    with pytest.raises(ValidationError, match="running_domain needs placement hosts"):
        ProtectionCreate.model_validate({"name": "lab-1", "running_domain": "web1"})
    with pytest.raises(ValidationError, match="not both"):
        ProtectionCreate.model_validate(
            body | {"running_domain": "web1", "running_qmp": "/run/vms/web1.qmp"}
        )
    with pytest.raises(ValidationError, match="running_domain"):
        ProtectionCreate.model_validate(body | {"running_domain": "web 1; rm"})
