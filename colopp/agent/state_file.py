"""What an agent owns, on disk: the record a restarted agent re-adopts from.

An agent restart (an upgrade, a crash) must not stop the VM it runs. Everything the next
agent needs to take over is in one 0600 JSON file, ``STATE_DIR/agent-state.json``: the
side's spec (role, ports, run directory, options: the QMP and chardev socket paths follow
from it), whether it failed over, its checkpoint period, the semi-active shrink in force,
and the identity of each process it owns (QEMU, the comparator): pid, the kernel's start
time of that pid and the boot it belongs to, and a digest of its command line. A pid alone
proves nothing after a restart: the kernel reuses pids.

The record is plain data in and out (:func:`side_record`, :func:`parse_record`); only
:func:`save` and :func:`load` touch the disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colopp.arbiter.token import TokenGate
from colopp.domain import Role, SideSpec, VmSpec
from colopp.errors import ConfigError
from colopp.files import write_private
from colopp.side_request import SideRequest

STATE_FILE = "agent-state.json"
VERSION = 1
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessIdentity:
    """Who a pid was when it was recorded (see :func:`identity_of`)."""

    pid: int
    start_ticks: int  # /proc/PID/stat field 22: start time since boot, in clock ticks
    boot_id: str
    cmdline_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "boot_id": self.boot_id,
            "cmdline_sha256": self.cmdline_sha256,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ProcessIdentity:
        """Raises ConfigError: a field is missing or of the wrong type."""
        if not isinstance(data, dict):
            raise ConfigError("process identity must be an object")
        try:
            pid, ticks = data["pid"], data["start_ticks"]
            boot, digest = data["boot_id"], data["cmdline_sha256"]
        except KeyError as exc:
            raise ConfigError(f"process identity lacks {exc}") from exc
        if not (isinstance(pid, int) and isinstance(ticks, int) and pid > 0):
            raise ConfigError("process identity: pid and start_ticks must be integers")
        if not (isinstance(boot, str) and isinstance(digest, str)):
            raise ConfigError("process identity: boot_id and cmdline_sha256 must be strings")
        return cls(pid, ticks, boot, digest)


def parse_start_ticks(stat: str) -> int:
    """Field 22 of a ``/proc/PID/stat`` line (pure; the command name may hold spaces and
    parentheses, so fields are counted from the last ``)``).

    Raises:
        ValueError: not a stat line.
    """
    rest = stat[stat.rindex(")") + 2 :].split()
    return int(rest[19])  # rest[0] is field 3 (state)


def identity_of(pid: int, proc: Path = PROC) -> ProcessIdentity | None:
    """The identity of the live process ``pid`` (None: no such process, or a zombie)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        cmdline = (proc / str(pid) / "cmdline").read_bytes()
        boot = (proc / "sys/kernel/random/boot_id").read_text().strip()
        ticks = parse_start_ticks(stat)
    except (OSError, ValueError):
        return None
    if stat[stat.rindex(")") + 2 :].startswith("Z"):
        return None
    return ProcessIdentity(pid, ticks, boot, hashlib.sha256(cmdline).hexdigest())


def still_running(recorded: ProcessIdentity, proc: Path = PROC) -> bool:
    """Is the process recorded still the one with that pid (same start, boot, command)?"""
    return identity_of(recorded.pid, proc) == recorded


@dataclass(frozen=True)
class SideRecord:
    """What a restarted agent needs to re-adopt its side."""

    host: str
    vm: VmSpec
    spec: SideSpec
    qemu: ProcessIdentity | None  # a libvirt domain's too: libvirt owns it, we check it
    comparator: ProcessIdentity | None
    comparator_restarts: int
    failed_over: bool
    checkpoint_delay_ms: int
    vcpu: dict[str, Any] | None  # VcpuState.to_status() of the shrink in force
    saved_at: float


def side_record(record: SideRecord) -> dict[str, Any]:
    """The JSON form of ``record`` (pure)."""
    spec = record.spec
    request = SideRequest(
        spec.role,
        spec.tap,
        spec.local_repl_ip,
        spec.peer_repl_ip,
        spec.ports,
        spec.options,
        spec.standalone,
    )
    return {
        "version": VERSION,
        "host": record.host,
        "vm": record.vm.to_dict(),
        "side": request.to_dict(),
        "run_dir": str(spec.run_dir),
        "qemu": record.qemu.to_dict() if record.qemu else None,
        "comparator": record.comparator.to_dict() if record.comparator else None,
        "comparator_restarts": record.comparator_restarts,
        "failed_over": record.failed_over,
        "checkpoint_delay_ms": record.checkpoint_delay_ms,
        "vcpu": record.vcpu,
        "saved_at": record.saved_at,
    }


def parse_record(data: Any) -> SideRecord:
    """The record in ``data`` (pure).

    Raises:
        ConfigError: another version, a missing field, or a bad spec.
    """
    if not isinstance(data, dict):
        raise ConfigError("agent state must be a JSON object")
    if data.get("version") != VERSION:
        raise ConfigError(f"agent state version {data.get('version')!r}, expected {VERSION}")
    try:
        run_dir = Path(str(data["run_dir"]))
        spec = SideRequest.from_dict(data["side"]).spec(run_dir)
        vm = VmSpec.from_dict(data["vm"])
        qemu = data["qemu"]
        comparator = data["comparator"]
        vcpu = data.get("vcpu")
        record = SideRecord(
            host=str(data["host"]),
            vm=vm,
            spec=spec,
            qemu=ProcessIdentity.from_dict(qemu) if qemu is not None else None,
            comparator=ProcessIdentity.from_dict(comparator) if comparator is not None else None,
            comparator_restarts=int(data.get("comparator_restarts", 0)),
            failed_over=bool(data["failed_over"]),
            checkpoint_delay_ms=int(data["checkpoint_delay_ms"]),
            vcpu=vcpu if isinstance(vcpu, dict) else None,
            saved_at=float(data.get("saved_at", 0.0)),
        )
    except KeyError as exc:
        raise ConfigError(f"agent state lacks {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"agent state: {exc}") from exc
    if record.spec.role not in (Role.PRIMARY, Role.SECONDARY):
        raise ConfigError(f"agent state: bad role {record.spec.role!r}")
    return record


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def save(state_dir: Path, record: SideRecord) -> None:
    """Write the record (atomically, 0600 from the first byte).

    Raises:
        OSError: the state directory cannot be written.
    """
    write_private(state_path(state_dir), json.dumps(side_record(record), indent=2))


def load(state_dir: Path) -> SideRecord | None:
    """The saved record, or None when there is none.

    Raises:
        ConfigError: the file is readable by others (not 0600), not JSON, or not a record.
    """
    path = state_path(state_dir)
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read agent state {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise ConfigError(f"agent state {path} must be mode 0600 (is {mode & 0o777:o})")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"agent state {path} is not JSON: {exc}") from exc
    return parse_record(data)


def forget(state_dir: Path) -> None:
    """Remove the record (the side was stopped on purpose); never raises."""
    with contextlib.suppress(OSError):
        state_path(state_dir).unlink(missing_ok=True)


def set_aside(state_dir: Path) -> Path | None:
    """Keep an unusable record under another name (for the operator); never raises."""
    path = state_path(state_dir)
    kept = path.with_name(f"{STATE_FILE}.unusable-{int(time.time())}")
    try:
        os.replace(path, kept)
    except OSError:
        return None
    return kept


TOKENS_FILE = "fencing-tokens.json"


class PersistentTokenGate(TokenGate):
    """A :class:`TokenGate` whose newest tokens survive an agent restart: a restarted agent
    must still refuse a stale controller. Saved (0600) whenever a token grows."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__()
        self._path = state_dir / TOKENS_FILE
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"fencing tokens {self._path} unreadable: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"fencing tokens {self._path} must be a JSON object")
        for protection, token in data.items():
            if isinstance(token, int) and not isinstance(token, bool) and token > 0:
                self._newest[str(protection)] = token

    def admit(self, protection: str, token: object) -> None:
        before = self.newest(protection)
        super().admit(protection, token)
        if self.newest(protection) != before:
            write_private(self._path, json.dumps(self._newest))
