"""``colopp protect --running-qmp``: refusals before the API, and the create body."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from colopp import cli_api
from colopp.cli import app
from colopp.cli_exit import Exit
from colopp.cli_running import running_body
from tests.unit.qemu.test_running_vm import GOOD

HOSTS = {
    "primary": {"name": "hosta", "agent": "198.18.2.10:7400", "tap": "t0", "repl_ip": "10.0.0.1"},
    "secondary": {"name": "hostb", "agent": "198.18.2.11:7400", "tap": "t0",
                  "repl_ip": "10.0.0.2"},
}  # fmt: skip

FAKE_QEMU = """#!{python}
import socket, sys, os
s = socket.socket(socket.AF_UNIX)
s.bind(os.environ["QMP"])
s.listen(4)
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def hosts_file(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps(HOSTS))
    return path


@pytest.fixture
def fake_vm(tmp_path: Path) -> Iterator[Callable[[list[str]], Path]]:
    """A process named qemu-system-x86_64 listening on a unix socket; its options are
    whatever the test passes through ``argv``."""
    binary = tmp_path / "qemu-system-x86_64"
    binary.write_text(FAKE_QEMU.format(python=sys.executable))
    binary.chmod(0o700)
    qmp = tmp_path / "vm.qmp"
    procs: list[subprocess.Popen[str]] = []

    def start(argv: list[str]) -> Path:
        proc = subprocess.Popen(
            [str(binary), *argv],
            env={"QMP": str(qmp)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        return qmp

    yield start
    for proc in procs:
        proc.kill()
        proc.communicate()


def _protect(*args: str) -> Any:
    return CliRunner().invoke(app, ["protect", *args], env={"COLUMNS": "200"})


def test_without_hosts_or_with_a_relative_socket_it_says_what_to_give(hosts_file: Path) -> None:
    done = _protect("--running-qmp", "/run/vm.qmp")
    assert done.exit_code == Exit.USAGE and "--running-qmp needs --hosts" in done.output
    done = _protect("--running-qmp", "vm.qmp", "--hosts", str(hosts_file))
    assert done.exit_code == Exit.USAGE and "absolute path" in done.output


def test_a_hosts_file_lacking_a_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"primary": HOSTS["primary"], "secondary": {"name": "b"}}))
    done = _protect("--running-qmp", "/run/vm.qmp", "--hosts", str(path))
    assert done.exit_code == Exit.USAGE
    assert "the secondary host lacks agent, tap, repl_ip" in " ".join(done.output.split())


def test_a_local_vm_colopp_cannot_take_over_is_refused_naming_the_option(
    fake_vm: Any, hosts_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[dict[str, Any]] = []
    monkeypatch.setattr(cli_api, "protect", lambda body, *_: asked.append(body))
    vhost = [a.replace("vhost=off", "vhost=on") for a in GOOD]
    done = _protect("--running-qmp", str(fake_vm(vhost)), "--hosts", str(hosts_file))
    assert done.exit_code == Exit.USAGE, done.output
    assert "set vhost=off on the tap netdev" in " ".join(done.output.split())
    assert asked == []  # nothing reached the API


def test_a_good_local_vm_is_protected_through_the_api(
    fake_vm: Any, hosts_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[dict[str, Any]] = []
    monkeypatch.setattr(cli_api, "configured", lambda: True)
    monkeypatch.setattr(cli_api, "protect", lambda body, *_: asked.append(body))
    qmp = fake_vm(GOOD)
    done = _protect("--running-qmp", str(qmp), "--hosts", str(hosts_file), "--name", "web1")
    assert done.exit_code == 0, done.output
    assert asked == [running_body("web1", qmp, HOSTS, "builtin")]
    assert asked[0]["placement"] == "hosts" and asked[0]["running_qmp"] == str(qmp)


def test_without_the_api_it_says_how_to_reach_one(hosts_file: Path) -> None:
    done = _protect("--running-qmp", "/nonexistent/vm.qmp", "--hosts", str(hosts_file))
    assert done.exit_code == Exit.USAGE
    assert "COLOPP_API_URL" in done.output


def test_backend_libvirt_is_refused_naming_who_takes_the_vm_over(hosts_file: Path) -> None:
    done = _protect("--running-qmp", "/run/vm.qmp", "--hosts", str(hosts_file),
                    "--backend", "libvirt")  # fmt: skip
    assert done.exit_code == Exit.USAGE
    assert "colopp's QEMU takes the VM over (backend qemu" in " ".join(done.output.split())


def test_a_running_libvirt_domain_is_protected_by_name_through_the_api(
    hosts_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[dict[str, Any]] = []
    monkeypatch.setattr(cli_api, "configured", lambda: True)
    monkeypatch.setattr(cli_api, "protect", lambda body, *_: asked.append(body))
    done = _protect("--running-domain", "web1", "--hosts", str(hosts_file), "--name", "web1")
    assert done.exit_code == 0, done.output
    assert asked == [running_body("web1", None, HOSTS, "builtin", "web1")]
    assert asked[0]["running_domain"] == "web1" and "running_qmp" not in asked[0]
