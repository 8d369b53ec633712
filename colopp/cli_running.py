"""``colopp protect --running-qmp``: protect a VM that already runs, without a restart.

The protection goes through the API (``placement: hosts``, ``backend: qemu``,
``running_qmp``): the primary host's agent takes the VM over (colopp.agent.takeover).
When the QMP socket is on this machine (the CLI runs on the primary host), the VM's
command line is checked here first, so a VM colopp cannot take over is refused before
anything is asked of the API, with the option to change named (colopp.qemu.running).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from colopp.errors import ConfigError

HOST_KEYS = ("name", "agent", "tap", "repl_ip")


def read_hosts(path: Path) -> dict[str, Any]:
    """The ``hosts`` of the API's create body from a JSON file: ``{"primary": {name, agent,
    tap, repl_ip}, "secondary": {...}}`` (the primary is the host the VM runs on).

    Raises:
        ConfigError: unreadable, not JSON, or a host lacks a key (named).
    """
    try:
        hosts = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read --hosts {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"--hosts {path} is not JSON: {exc}") from exc
    if not isinstance(hosts, dict) or set(hosts) != {"primary", "secondary"}:
        raise ConfigError(f"--hosts {path}: give exactly a primary and a secondary host")
    for role, host in hosts.items():
        missing = [key for key in HOST_KEYS if not isinstance(host, dict) or key not in host]
        if missing:
            raise ConfigError(f"--hosts {path}: the {role} host lacks {', '.join(missing)}")
    return hosts


def running_body(
    name: str,
    running_qmp: Path | None,
    hosts: dict[str, Any],
    comparator: str,
    domain: str | None = None,
) -> dict[str, Any]:
    """POST /v1/protections for the VM behind ``running_qmp``, or the running libvirt
    ``domain`` on the primary host (pure).

    Raises:
        ConfigError: the socket path is not absolute (the agent opens it on its host).
    """
    if domain is not None:
        return {
            "name": name,
            "placement": "hosts",
            "backend": "qemu",
            "comparator": comparator,
            "hosts": hosts,
            "running_domain": domain,
        }
    assert running_qmp is not None
    if not running_qmp.is_absolute():
        raise ConfigError(
            f"--running-qmp {running_qmp}: give the absolute path of the VM's QMP socket "
            "on the primary host"
        )
    return {
        "name": name,
        "placement": "hosts",
        "backend": "qemu",
        "comparator": comparator,
        "hosts": hosts,
        "running_qmp": str(running_qmp),
    }


def precheck(running_qmp: Path) -> str | None:
    """When the VM's QMP socket is on this machine: refuse a VM colopp cannot take over
    (reads its command line only; QMP is left to the agent). Returns what was checked,
    or None when the socket is not here.

    Raises:
        ConfigError: the VM is not shaped as colopp needs; the message names the option.
    """
    if not running_qmp.is_socket():
        return None
    from colopp.agent.takeover import peer_pid, read_cmdline
    from colopp.qemu.running import inspect_argv, qemu_options

    pid = peer_pid(running_qmp)
    vm = inspect_argv(qemu_options(read_cmdline(pid)))
    return f"pid {pid}: {vm.memory_mb} MiB, {vm.vcpus} vCPU(s), tap {vm.tap}, mac {vm.mac}"
