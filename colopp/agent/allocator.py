"""Per-protection resources of one agent: ports, tap, run directory (fleet mode).

A host may run sides of several protections at once: each gets its own slot ``k`` and from
it a block of four TCP ports (``base + 4k`` .. ``base + 4k + 3``: mirror, compare, nbd,
migration), a tap name (``<prefix><k>``) and a run directory (``<state>/protections/<name>``)
under which its QEMU sockets, pidfile, disks and comparator files live. A slot is released
at the end of the protection, its run directory removed, and the slot reused.

The table is pure (:class:`SlotTable`); :class:`Allocator` keeps it in a 0600 JSON file so a
restarted agent hands out the same slots. The default single-protection mode uses none of
this (its fixed ports 9003/9004/9998/9999 lie below the default base 9100).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colopp.domain import Ports
from colopp.errors import ConfigError
from colopp.files import write_json_atomic

PROTECTION_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
DEFAULT_BASE_PORT = 9100
DEFAULT_SLOTS = 64
DEFAULT_TAP_PREFIX = "cpp"
PORTS_PER_SLOT = 4
_IFNAMSIZ = 15


@dataclass(frozen=True)
class Allocation:
    """What one protection holds on this host."""

    protection: str
    slot: int
    ports: Ports
    tap: str
    run_dir: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "protection": self.protection,
            "slot": self.slot,
            "ports": self.ports.to_dict(),
            "tap": self.tap,
            "run_dir": str(self.run_dir),
        }


@dataclass
class SlotTable:
    """Slots by protection (pure)."""

    state_dir: Path
    base_port: int = DEFAULT_BASE_PORT
    slots: int = DEFAULT_SLOTS
    tap_prefix: str = DEFAULT_TAP_PREFIX
    taken: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        last = self.base_port + PORTS_PER_SLOT * self.slots - 1
        if self.base_port < 1024 or last > 65535 or self.slots < 1:
            raise ConfigError(f"port block {self.base_port}..{last} must lie in 1024..65535")
        if (
            not re.fullmatch(r"[a-z][a-z0-9-]*", self.tap_prefix)
            or len(f"{self.tap_prefix}{self.slots - 1}") > _IFNAMSIZ
        ):
            raise ConfigError(f"tap prefix {self.tap_prefix!r} is not a short interface name")

    def allocation(self, protection: str, slot: int) -> Allocation:
        base = self.base_port + PORTS_PER_SLOT * slot
        return Allocation(
            protection=protection,
            slot=slot,
            ports=Ports(mirror=base, compare=base + 1, nbd=base + 2, migration=base + 3),
            tap=f"{self.tap_prefix}{slot}",
            run_dir=self.state_dir / "protections" / protection,
        )

    def allocate(self, protection: str, slot: int | None = None) -> Allocation:
        """The protection's slot: the one it holds, else ``slot`` when given (a fleet
        controller numbers protections fleet-wide, so a protection has the same ports and
        tap on every host), else the lowest free one.

        Raises:
            ConfigError: a bad protection name or slot, a slot held by another protection
                or differing from the one this protection holds, or every slot is taken.
        """
        if not isinstance(protection, str) or not PROTECTION_RE.match(protection):
            raise ConfigError(f"protection name {protection!r} must match {PROTECTION_RE.pattern}")
        if slot is not None and (
            isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < self.slots
        ):
            raise ConfigError(f"slot {slot!r} must be an integer in 0..{self.slots - 1}")
        if protection in self.taken:
            held = self.taken[protection]
            if slot is not None and slot != held:
                raise ConfigError(f"protection {protection} holds slot {held} here, not {slot}")
            return self.allocation(protection, held)
        used = set(self.taken.values())
        if slot is not None:
            if slot in used:
                owner = next(p for p, k in self.taken.items() if k == slot)
                raise ConfigError(f"slot {slot} is held by protection {owner} on this host")
            self.taken[protection] = slot
            return self.allocation(protection, slot)
        free = next((k for k in range(self.slots) if k not in used), None)
        if free is None:
            raise ConfigError(f"all {self.slots} protection slots of this host are taken")
        self.taken[protection] = free
        return self.allocation(protection, free)

    def release(self, protection: str) -> Allocation | None:
        """Free the protection's slot; the allocation it had, or None."""
        slot = self.taken.pop(protection, None)
        return None if slot is None else self.allocation(protection, slot)

    def all(self) -> list[Allocation]:
        return [self.allocation(p, k) for p, k in sorted(self.taken.items(), key=lambda i: i[1])]


class Allocator:
    """:class:`SlotTable` kept in ``<state>/allocations.json`` (0600), plus run directories."""

    def __init__(self, state_dir: Path, **options: Any) -> None:
        self.path = state_dir / "allocations.json"
        self.table = SlotTable(state_dir, **options)
        if self.path.exists():
            self.table.taken = _load(self.path, self.table)

    def allocate(self, protection: str, slot: int | None = None) -> Allocation:
        """Allocate (idempotent; ``slot`` as in :meth:`SlotTable.allocate`), persist, and
        create the run directory (0700).

        Raises:
            ConfigError: bad name, no free slot.
            OSError: the state directory cannot be written.
        """
        allocation = self.table.allocate(protection, slot)
        write_json_atomic(self.path, self.table.taken)
        allocation.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return allocation

    def release(self, protection: str) -> Allocation | None:
        """Free the slot and remove the run directory (nothing left behind)."""
        allocation = self.table.release(protection)
        write_json_atomic(self.path, self.table.taken)
        if allocation is not None:
            shutil.rmtree(allocation.run_dir, ignore_errors=True)
        return allocation


def _load(path: Path, table: SlotTable) -> dict[str, int]:
    """The persisted table; refuses a file whose content is not what this module writes."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable allocations: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: allocations must be an object")
    taken: dict[str, int] = {}
    for name, slot in data.items():
        ok = PROTECTION_RE.match(name) and isinstance(slot, int) and 0 <= slot < table.slots
        if not ok or slot in taken.values():
            raise ConfigError(f"{path}: bad allocation {name!r}: {slot!r}")
        taken[name] = slot
    return taken
