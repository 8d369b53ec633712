"""The Ansible playbook, for real: ansible-playbook over SSH deploys colopp onto two lab
hosts (sshd in network namespaces) and the API onto the controller (the root namespace),
and protects colopp's guest; a client on the lab's service network then reaches the guest,
and a second run changes nothing. Also: --syntax-check and ansible-lint (production)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import secrets
import shutil
import ssl
import stat
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ansible_harness import (
    ANSIBLE_DIR,
    GUEST_TAP,
    VENV_BIN,
    VM_NAME,
    AnsibleSite,
    ansible_env,
    wait_until,
)

from colopp.controller.agent_client import AgentClient
from colopp.errors import AgentError
from colopp.lab import Network, Node, netns_argv
from colopp.qemu.runtime import DEFAULT_ROOT
from colopp.tls import TlsFiles, client_context

PREFIX = "clpans"


def test_syntax_check() -> None:
    with tempfile.TemporaryDirectory(prefix="clpans-") as tmp:
        done = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "--syntax-check", "site.yml"],
            cwd=ANSIBLE_DIR,
            env=ansible_env(Path(tmp)),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ansible_lint_production_profile() -> None:
    with tempfile.TemporaryDirectory(prefix="clpans-") as tmp:
        done = subprocess.run(
            [str(VENV_BIN / "ansible-lint"), "--profile", "production", "--nocolor"],
            cwd=ANSIBLE_DIR,
            env=ansible_env(Path(tmp)),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr


_RENDER_UNITS = """
- name: Render colopp's systemd units as the agent and API roles do
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Render the units
      ansible.builtin.template:
        src: "{{ roles }}/{{ item.role }}/templates/{{ item.name }}.service.j2"
        dest: "{{ out }}/{{ item.name }}.service"
        mode: "0644"
      loop:
        - {role: colopp_agent, name: colopp-agent}
        - {role: colopp_api, name: colopp-api}
        - {role: colopp_etcd, name: colopp-etcd}
      vars:
        colopp_host_name: hosta
        colopp_log_dir: "{{ out }}"
        colopp_agent_service: colopp-agent
        colopp_agent_launcher: "{{ out }}/colopp-agent.sh"
        colopp_api_service: colopp-api
        colopp_api_launcher: "{{ out }}/colopp-api.sh"
        colopp_api_state_dir: "{{ out }}/api-state"
        colopp_api_lab: false
        colopp_etcd_name: hosta
        colopp_etcd_launcher: "{{ out }}/colopp-etcd.sh"
"""


def test_systemd_units_verify(tmp_path: Path) -> None:
    """The systemd path cannot run here (no systemd as PID 1); its units are still checked."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze")
    (tmp_path / "render.yml").write_text(_RENDER_UNITS)
    for name in ("colopp-agent", "colopp-api", "colopp-etcd"):
        launcher = tmp_path / f"{name}.sh"
        launcher.write_text("#!/bin/sh\nexit 0\n")
        launcher.chmod(0o700)
    extra = json.dumps({"roles": str(ANSIBLE_DIR / "roles"), "out": str(tmp_path)})
    done = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-e", extra, str(tmp_path / "render.yml")],
        cwd=ANSIBLE_DIR,
        env=ansible_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    names = ("colopp-agent", "colopp-api", "colopp-etcd")
    units = [str(tmp_path / f"{name}.service") for name in names]
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    agent = (tmp_path / "colopp-agent.service").read_text()
    api = (tmp_path / "colopp-api.service").read_text()
    for unit in (agent, api):
        assert "StandardOutput=journal" in unit and "append:" not in unit
        assert "LimitNOFILE=65536" in unit and "NoNewPrivileges=yes" in unit
    assert "Delegate=yes" in agent
    # Off for QEMU: /dev/kvm and /dev/net/tun, TCG's JIT, the cgroup writes.
    for option in ("PrivateDevices", "MemoryDenyWriteExecute", "ProtectControlGroups"):
        assert option not in agent
    assert "ProtectSystem=strict" in api and "ReadWritePaths=" in api


_SETTINGS = """
- name: Check colopp's settings as every play does
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Check the settings
      ansible.builtin.include_role:
        name: colopp
        tasks_from: settings
"""


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ({}, False),
        ({"colopp_tls": False}, True),
        ({"colopp_api_tls": False}, True),
        ({"colopp_tls": False, "colopp_plaintext_lab": True}, False),
    ],
)
def test_plain_tcp_or_http_only_for_a_lab(
    tmp_path: Path, extra: dict[str, bool], refused: bool
) -> None:
    (tmp_path / "settings.yml").write_text(_SETTINGS)
    env = ansible_env(tmp_path) | {"ANSIBLE_ROLES_PATH": str(ANSIBLE_DIR / "roles")}
    done = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-e", json.dumps(extra), "settings.yml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode != 0) == refused, done.stdout + done.stderr
    assert ("for a local lab only" in done.stdout) == refused, done.stdout


@pytest.fixture
def site() -> Iterator[AnsibleSite]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("the playbook test needs root and iproute2 (network namespaces)")
    if not Path("/usr/sbin/sshd").exists():
        pytest.skip("no /usr/sbin/sshd: install openssh-server (scripts/setup.sh does)")
    if not (DEFAULT_ROOT / "usr/bin/qemu-system-x86_64").exists():
        pytest.skip(f"no QEMU runtime at {DEFAULT_ROOT}: run `colopp qemu install`")
    made = AnsibleSite(PREFIX)
    try:
        made.start()
        yield made
    finally:
        made.close()


def _curl(site: AnsibleSite, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    """curl from the lab's client namespace; stdout is the body, a newline, the status."""
    argv = ["curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}", *args]
    return subprocess.run(
        netns_argv(site.client_netns(), [*argv, f"http://{site.guest_ip()}{path}"]),
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# Run inside a host's namespace: every frame on its interfaces for a few seconds (AF_PACKET,
# the capture tcpdump makes); prints how many TCP segments had the agent's port and whether
# any frame held the token.
_CAPTURE = """
import socket, sys, time
needle, port, seconds = sys.argv[1].encode(), int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.settimeout(0.2)
print("ready", flush=True)
end, on_port, found = time.monotonic() + seconds, 0, 0
while time.monotonic() < end:
    try:
        frame = s.recv(65535)
    except TimeoutError:
        continue
    found += needle in frame
    if frame[12:14] == b"\\x08\\x00" and frame[23] == 6:
        ihl = (frame[14] & 15) * 4
        ports = frame[14 + ihl : 14 + ihl + 4]
        on_port += port in (int.from_bytes(ports[:2], "big"), int.from_bytes(ports[2:], "big"))
print(on_port, found)
"""


def _collect_refused_transports() -> None:
    """asyncio leaves the socket of a refused TLS handshake to the garbage collector, which
    warns (ResourceWarning, an error under pytest): collect it here, quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _check_mutual_tls(site: AnsibleSite) -> None:
    """The agents serve mutual TLS only: a client without a valid certificate is refused,
    the API's heartbeats cross encrypted (a packet capture on host A finds no token)."""
    assert site.plan is not None
    host = site.root_of("hosta")
    assert "--tls-ca" in (host / "etc" / "colopp" / "colopp-agent.sh").read_text()
    assert _mode(host / "etc" / "colopp" / "tls" / "agent.key") == 0o600
    pki = site.tmp / "secrets" / "pki"
    assert _mode(pki / "ca.key") == 0o600
    address = str(site.plan.address(Node.HOST_A, Network.MANAGEMENT))
    token = (site.tmp / "secrets" / "agent.token").read_text().strip()
    good = client_context(TlsFiles(pki / "controller.pem", pki / "controller.key", pki / "ca.pem"))
    no_cert = ssl.create_default_context(cafile=str(pki / "ca.pem"))

    async def ping(tls: ssl.SSLContext | None) -> object:
        client = AgentClient("hosta", address, 7400, token, tls=tls)
        try:
            return await client.call("ping", timeout=5)
        except AgentError as exc:
            return exc
        finally:
            await client.close()

    assert isinstance(asyncio.run(ping(good)), dict)
    assert isinstance(asyncio.run(ping(no_cert)), AgentError)  # no client certificate
    assert isinstance(asyncio.run(ping(None)), AgentError)  # plain TCP
    _collect_refused_transports()
    capture = subprocess.run(
        netns_argv(f"{PREFIX}-hosta", [sys.executable, "-c", _CAPTURE, token, "7400", "3"]),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    on_port, found = (int(n) for n in capture.stdout.split()[-2:])
    assert on_port > 20, capture.stdout  # the API's heartbeats (every 50 ms) were captured
    assert found == 0, "the agent token crossed the network in clear text"


def _check_api_https(site: AnsibleSite) -> None:
    """The API serves HTTPS only, with a certificate from the playbook's CA: a client that
    does not trust that CA is refused, plain HTTP gets no answer, and a packet capture on
    the controller (the root namespace, every interface) while a client uses the token sees
    the API port's traffic and never the token. The playbook's own API calls (the rolling
    waits, the protect role) went to the same port: over HTTPS, or they would have failed."""
    etc = site.root_of("controller") / "etc" / "colopp"
    launcher = (etc / "colopp-api.sh").read_text()
    assert "--tls-cert" in launcher and "--tls-key" in launcher
    assert _mode(etc / "tls" / "api.key") == 0o600
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{site.api_url}/healthz", timeout=5)  # the system's CAs do not know it
    with pytest.raises(httpx.HTTPError):  # no plain HTTP on that port (and no token sent)
        httpx.get(f"http://127.0.0.1:{site.api_port}/healthz", timeout=5)
    token = site.api_token()
    capture = subprocess.Popen(
        [sys.executable, "-c", _CAPTURE, token, str(site.api_port), "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert capture.stdout is not None and capture.stdout.readline() == "ready\n"
        with site.api() as api:
            for _ in range(10):
                assert api.get("/v1/protections").status_code == 200
        out, _ = capture.communicate(timeout=30)
    finally:
        if capture.poll() is None:
            capture.kill()
            capture.communicate()
    on_port, found = (int(n) for n in out.split()[-2:])
    assert on_port > 20, out  # ten authenticated requests were captured
    assert found == 0, "the API token crossed the network in clear text"


@pytest.mark.integration
@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_playbook_protects_a_vm_and_is_idempotent(site: AnsibleSite) -> None:
    first = site.playbook()
    print(f"first run: {first.seconds:.0f} s, recap {first.recap}")
    assert first.returncode == 0, first.tail()
    assert set(first.recap) >= {"hosta", "hostb", "controller", "localhost"}, first.tail()
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in first.recap.values())

    # protected, as the API reports it
    with site.api() as api:
        protections = api.get("/v1/protections").json()["protections"]
    assert [p["name"] for p in protections] == [VM_NAME]
    protection = protections[0]
    assert protection["state"] == "protected", protection
    assert protection["placement"] == "hosts"
    assert (protection["primary"]["host"], protection["secondary"]["host"]) == ("hosta", "hostb")

    # a client on the service network reaches the guest's service (kvd on port 80)
    health = wait_until(
        "guest answers the client",
        lambda: (r := _curl(site, "/health")).stdout.endswith("\n200") and r,
        30,
        period=0.5,
    )
    assert health.returncode == 0
    put = _curl(site, "/kv/ansible", "-X", "PUT", "--data-binary", "deployed")
    assert put.stdout.endswith("\n200"), put.stdout + put.stderr
    got = _curl(site, "/kv/ansible")
    assert got.stdout == "deployed\n200", got.stdout + got.stderr

    # tokens are 0600 everywhere; each host has its own root, agent and guest tap
    for host in ("hosta", "hostb"):
        etc = site.root_of(host) / "etc" / "colopp"
        assert _mode(etc / "agent.token") == 0o600
        assert _mode(etc) == 0o700
        assert (site.root_of(host) / "run" / "colopp" / "colopp-agent.pid").exists()
        links = subprocess.run(
            netns_argv(f"{PREFIX}-{host}", ["ip", "-o", "link", "show", GUEST_TAP]),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "master br0" in links and ",UP" in links, links
    _check_mutual_tls(site)
    _check_api_https(site)
    controller_etc = site.root_of("controller") / "etc" / "colopp"
    assert _mode(controller_etc / "api.token") == 0o600
    assert _mode(controller_etc / "agent.token") == 0o600
    assert _mode(site.tmp / "secrets" / "agent.token") == 0o600

    second = site.playbook()
    print(f"second run: {second.seconds:.0f} s, recap {second.recap}")
    assert second.returncode == 0, second.tail()
    assert {h: c["changed"] for h, c in second.recap.items()} == dict.fromkeys(second.recap, 0), (
        second.tail(200)
    )
    with site.api() as api:
        after = api.get(f"/v1/protections/{protection['id']}").json()
    assert after["state"] == "protected", after
    assert after["primary"]["pid"] == protection["primary"]["pid"]

    # a changed setting restarts only what it concerns: a read token for the API restarts the
    # API (its handler), which re-attaches to the running pair; the hosts stay untouched
    api_pidfile = site.root_of("controller") / "run" / "colopp" / "colopp-api.pid"
    api_pid = api_pidfile.read_text().strip()
    read_token = secrets.token_urlsafe(24)
    third = site.playbook("-e", json.dumps({"colopp_api_read_token": read_token}))
    print(f"third run (API read token added): {third.seconds:.0f} s, recap {third.recap}")
    assert third.returncode == 0, third.tail()
    assert third.recap["hosta"]["changed"] == third.recap["hostb"]["changed"] == 0, third.tail()
    assert third.recap["controller"]["changed"] >= 2, third.tail()
    assert api_pidfile.read_text().strip() != api_pid
    assert _mode(controller_etc / "api-read.token") == 0o600
    with site.api(read_token) as reader:
        again = reader.get(f"/v1/protections/{protection['id']}").json()
        assert reader.delete(f"/v1/protections/{protection['id']}").status_code == 403
    assert again["state"] == "protected", again
    assert again["primary"]["pid"] == protection["primary"]["pid"]
