"""A libvirt domain protected through the API on the lab: Debian 12's libvirtd (started
here, no systemd) runs both sides with the trixie-root QEMU; COLO state, vCPU pinning of the
semi-active secondary through libvirt, failover with the clients' connections kept,
re-protection, unprotect. Also the backend's clear errors (no libvirtd, no domain, vhost),
and (slow) the Debian server as a firmware-booting domain (no <kernel>)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from colopp.demo.harness import ClientWorkload
from colopp.domain import VmSpec
from colopp.errors import ConfigError, DomainNotFound, LibvirtUnavailable
from colopp.image.builder import build_image
from colopp.image.cmdline import kernel_cmdline
from colopp.lab import plan_lab
from colopp.lab.netlink import list_namespaces
from colopp.qemu.runtime import DEFAULT_ROOT
from tests.api.conftest import ApiServer, get_protection, in_state, lab_api_server, wait_until
from tests.integration.libvirt_lab import running_libvirtd, user_domain_xml

libvirt = pytest.importorskip("libvirt")
libvirt_qemu = pytest.importorskip("libvirt_qemu")

PREFIX = "clplv"
DOMAIN = "lvm"
URI = "qemu:///system"
pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def libvirtd() -> Iterator[None]:
    """Debian's libvirtd after `colopp libvirt setup`, started as a daemon (no systemd)."""
    root = Path(os.environ.get("COLOPP_QEMU_ROOT", DEFAULT_ROOT))
    if not (root / "usr/bin/qemu-system-x86_64").exists():
        pytest.skip(f"no QEMU runtime at {root}: run `colopp qemu install`")
    with running_libvirtd(root):
        conn = libvirt.open(URI)
        # Never the default network (virbr0, 192.168.122.0/24).
        assert conn.listNetworks() == []
        assert not Path("/sys/class/net/virbr0").exists()
        conn.close()
        yield


@pytest.fixture(scope="module")
def user_domain(libvirtd: None) -> Iterator[str]:
    """The VM as its operator defined it in libvirt (inactive; colopp runs the sides)."""
    image = build_image(None, console=Console(quiet=True))
    append = kernel_cmdline(plan_lab(PREFIX).guest_address.with_prefixlen)
    conn = libvirt.open(URI)
    for name in (DOMAIN, "lvm-vhost"):  # a previous run's leftover (a killed test run)
        with contextlib.suppress(libvirt.libvirtError):
            conn.lookupByName(name).undefine()
    domain = conn.defineXML(user_domain_xml(DOMAIN, image, append, f"{PREFIX}-tap"))
    vhost = conn.defineXML(
        user_domain_xml("lvm-vhost", image, append, f"{PREFIX}-tap", driver="vhost")
    )
    try:
        yield DOMAIN
    finally:
        for dom in (domain, vhost):
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefine()
        conn.close()


def _read(name: str, uri: str = URI) -> Any:
    from colopp.virt.libvirt_domain import read_domain

    return asyncio.run(read_domain(VmSpec(name, Path("/k"), Path("/i"), "x"), "hosta", uri))


def test_clear_errors_name_what_to_change(user_domain: str) -> None:
    with pytest.raises(LibvirtUnavailable, match="start it"):
        _read(user_domain, "qemu+unix:///system?socket=/nonexistent/libvirt-sock")
    with pytest.raises(DomainNotFound, match="virsh define"):
        _read("nosuchvm")
    with pytest.raises(ConfigError, match="add <driver name='qemu'/>"):
        _read("lvm-vhost")
    user = _read(user_domain)
    assert user.vm.memory_mb == 256 and user.disk is not None and user.disk.is_file()


@pytest.fixture
def lab_api(user_domain: str) -> Iterator[ApiServer]:
    root = Path(os.environ.get("COLOPP_QEMU_ROOT", DEFAULT_ROOT))
    try:
        with lab_api_server(PREFIX, root) as server:
            yield server
    finally:
        conn = libvirt.open(URI)
        for host in ("hosta", "hostb"):
            with contextlib.suppress(libvirt.libvirtError):
                dom = conn.lookupByName(f"colopp-{DOMAIN}-{host}")
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        conn.close()


def _colo_mode(conn: Any, host: str) -> str:
    dom = conn.lookupByName(f"colopp-{DOMAIN}-{host}")
    reply = libvirt_qemu.qemuMonitorCommand(dom, '{"execute":"query-colo-status"}', 0)
    return str(json.loads(reply)["return"]["mode"])


def _pinning(conn: Any, host: str) -> tuple[list[set[int]], int]:
    """Each vCPU's CPU set (the domain's vcpus()) and its vcpu_quota."""
    dom = conn.lookupByName(f"colopp-{DOMAIN}-{host}")
    _info, maps = dom.vcpus()
    quota = int(dom.schedulerParametersFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE)["vcpu_quota"])
    return [{i for i, on in enumerate(m) if on} for m in maps], quota


def _shrunk(conn: Any, host: str) -> Any:
    def check() -> Any:
        cpus, quota = _pinning(conn, host)
        return (cpus, quota) if quota > 0 else None

    return check


def test_unprotectable_domain_is_refused_through_the_api(lab_api: ApiServer) -> None:
    with lab_api.client() as c:
        body = {"name": "lvm-vhost", "backend": "libvirt"}
        made = c.post("/v1/protections", json=body)
        assert made.status_code == 201, made.text
        pid = made.json()["id"]
        failed = wait_until(
            "error", lambda: (g := get_protection(c, pid))["state"] == "error" and g, 300
        )
        assert "add <driver name='qemu'/>" in failed["reason"], failed["reason"]
        assert "vhost" in failed["reason"]
        wait_until("torn down", lambda: get_protection(c, pid)["stopped"], 60)
    assert [n for n in list_namespaces() if n.startswith(f"{PREFIX}-")] == []


def test_protect_failover_reprotect_libvirt_domain(lab_api: ApiServer, user_domain: str) -> None:
    conn = libvirt.open(URI)
    host_cpus = len(os.sched_getaffinity(0))
    with lab_api.client() as c:
        body = {"name": user_domain, "comparator": "colopp", "backend": "libvirt"}
        made = c.post("/v1/protections", json=body | {"semiactive": True})
        assert made.status_code == 201, made.text
        pid = made.json()["id"]
        started = time.monotonic()
        got = wait_until("protected", in_state(c, pid, "protected"), 600, 1.0)
        protect_s = time.monotonic() - started
        assert (got["primary"]["host"], got["secondary"]["host"]) == ("hosta", "hostb")
        assert (_colo_mode(conn, "hosta"), _colo_mode(conn, "hostb")) == ("primary", "secondary")
        assert conn.lookupByName(f"colopp-{DOMAIN}-hosta").isActive()

        # The semi-active secondary, pinned and capped through libvirt.
        cpus, quota = wait_until("secondary shrunk", _shrunk(conn, "hostb"), 30, 0.2)
        assert len(cpus[0]) == max(1, host_cpus // 2) and quota > 0
        vcpuinfo = subprocess.run(
            ["virsh", "-c", URI, "vcpuinfo", f"colopp-{DOMAIN}-hostb"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        print(f"\n{vcpuinfo}")
        assert _pinning(conn, "hosta")[0][0] == set(range(host_cpus))

        workload = ClientWorkload(plan_lab(PREFIX))
        try:
            first = get_protection(c, pid)["checkpoints"]
            wait_until(
                "a checkpoint", lambda: get_protection(c, pid)["checkpoints"] > first + 1, 60
            )
            workload.mark()
            r = c.post(f"/v1/protections/{pid}/failover")
            assert r.status_code == 202, r.text
            wait_until("failed over", in_state(c, pid, "failed_over", "reprotecting"), 60, 0.1)
            failed_at = time.monotonic()
            back = wait_until("re-protected", in_state(c, pid, "protected"), 300, 0.5)
            reprotect_s = time.monotonic() - failed_at
            assert (back["primary"]["host"], back["secondary"]["host"]) == ("hostb", "hosta")
            summary = workload.finish()
        finally:
            workload.kill()
        assert summary["requests_ok"] > 0
        assert summary["requests_failed"] == 0, summary
        assert summary["connections_reset"] == 0, summary
        assert summary["writes_lost"] == 0, summary

        # Promoted: full CPUs again; the new secondary (hosta) is the one shrunk now.
        promoted_cpus, promoted_quota = _pinning(conn, "hostb")
        assert promoted_cpus == [set(range(host_cpus))] and promoted_quota <= 0
        cpus, quota = wait_until("new secondary shrunk", _shrunk(conn, "hosta"), 30, 0.2)
        assert len(cpus[0]) == max(1, host_cpus // 2)
        assert (_colo_mode(conn, "hostb"), _colo_mode(conn, "hosta")) == ("primary", "secondary")
        page = c.get(f"/v1/protections/{pid}/events", params={"limit": 1000}).json()
        incident = next(e for e in page["events"] if e["type"] == "failover")
        print(
            f"fence + failover {incident['data'].get('failover_ms', 0):.0f} ms,"
            f" protect {protect_s:.1f}s, failover request to protected again {reprotect_s:.1f}s,"
            f" workload {summary['requests_ok']} ok / {summary['requests_failed']} failed /"
            f" {summary['connections_reset']} reset / {summary['writes_lost']} lost of"
            f" {summary.get('writes_acked')}, outage {summary['failover_outage_ms']} ms"
        )

        r = c.delete(f"/v1/protections/{pid}", params={"stop": "true"})
        assert r.status_code == 202, r.text
        done = wait_until("stopped", lambda: (g := get_protection(c, pid))["stopped"] and g, 120)
        assert done["state"] == "unprotected"
    assert [n for n in list_namespaces() if n.startswith(f"{PREFIX}-")] == []
    assert not [d for d in conn.listAllDomains() if d.name().startswith(f"colopp-{DOMAIN}-")]
    conn.close()


DEBIAN_DOMAIN = "lvdeb"


def _firmware_domain_xml(name: str, disk: Path) -> str:
    """The Debian server as an operator defines it: no <kernel>, SeaBIOS boots its disk."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <devices>
    <emulator>/usr/local/bin/colopp-qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='ethernet'>
      <mac address='52:54:00:c0:10:01'/><target dev='{PREFIX}-tap' managed='no'/>
      <model type='virtio'/><driver name='qemu'/>
    </interface>
  </devices>
</domain>"""


@pytest.fixture
def debian_api(libvirtd: None) -> Iterator[ApiServer]:
    """The Debian guest defined in libvirt (firmware boot) and a lab API to protect it."""
    from colopp.image.debian import build_debian_image
    from colopp.qemu.runtime import runtime_from

    root = Path(os.environ.get("COLOPP_QEMU_ROOT", DEFAULT_ROOT))
    image = build_debian_image(
        None,
        console=Console(quiet=True),
        qemu_img=runtime_from(root).tool_argv("qemu-img"),
        guest_address=plan_lab(PREFIX).guest_address.with_prefixlen,
    )
    conn = libvirt.open(URI)
    domain = conn.defineXML(_firmware_domain_xml(DEBIAN_DOMAIN, image.disk))
    try:
        with lab_api_server(PREFIX, root) as server:
            yield server
    finally:
        for host in ("hosta", "hostb"):
            with contextlib.suppress(libvirt.libvirtError):
                dom = conn.lookupByName(f"colopp-{DEBIAN_DOMAIN}-{host}")
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        with contextlib.suppress(libvirt.libvirtError):
            domain.undefine()
        conn.close()


@pytest.mark.slow
def test_protect_firmware_booting_debian_domain(debian_api: ApiServer) -> None:
    """A domain without <kernel> (the Debian server: SeaBIOS, extlinux, systemd, 2 vCPUs)
    protected through libvirt: COLO on both sides, failover with the clients' connections
    kept, re-protection."""
    conn = libvirt.open(URI)
    with debian_api.client() as c:
        body = {
            "name": DEBIAN_DOMAIN,
            "comparator": "colopp",
            "backend": "libvirt",
            "guest": "debian",
            "semiactive": True,
        }
        made = c.post("/v1/protections", json=body)
        assert made.status_code == 201, made.text
        pid = made.json()["id"]
        wait_until("protected", in_state(c, pid, "protected"), 900, 1.0)
        for host, mode in (("hosta", "primary"), ("hostb", "secondary")):
            dom = conn.lookupByName(f"colopp-{DEBIAN_DOMAIN}-{host}")
            reply = libvirt_qemu.qemuMonitorCommand(dom, '{"execute":"query-colo-status"}', 0)
            assert json.loads(reply)["return"]["mode"] == mode
            root = ET.fromstring(dom.XMLDesc(0))
            assert root.find("os/kernel") is None, "the firmware boots the disk"
            assert root.findtext("vcpu") == "2" and root.findtext("memory") == str(1024 * 1024)

        workload = ClientWorkload(plan_lab(PREFIX))
        try:
            first = get_protection(c, pid)["checkpoints"]
            wait_until(
                "a checkpoint", lambda: get_protection(c, pid)["checkpoints"] > first + 1, 120
            )
            workload.mark()
            r = c.post(f"/v1/protections/{pid}/failover")
            assert r.status_code == 202, r.text
            wait_until("failed over", in_state(c, pid, "failed_over", "reprotecting"), 120, 0.1)
            back = wait_until("re-protected", in_state(c, pid, "protected"), 600, 0.5)
            assert (back["primary"]["host"], back["secondary"]["host"]) == ("hostb", "hosta")
            summary = workload.finish()
        finally:
            workload.kill()
        assert summary["requests_ok"] > 0
        for key in ("requests_failed", "connections_reset", "writes_lost"):
            assert summary[key] == 0, (key, summary)
        print(f"\nDebian libvirt domain: outage {summary['failover_outage_ms']} ms")
        r = c.delete(f"/v1/protections/{pid}", params={"stop": "true"})
        assert r.status_code == 202, r.text
        wait_until("stopped", lambda: get_protection(c, pid)["stopped"], 120)
    assert not [d for d in conn.listAllDomains() if d.name().startswith(f"colopp-{DEBIAN_DOMAIN}-")]
    conn.close()
