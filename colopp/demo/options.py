"""The demo's options (its CLI flags)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from colopp.qemu.argv import ComparatorKind

DEFAULT_STATE_DIR = Path("/var/lib/colopp/demo")
#: The guest's read path: kvd's GET /kv/KEY answers only from stored state.
READ_PREFIXES = ("/kv/",)


@dataclass
class DemoOptions:
    """Knobs of the demo (CLI flags)."""

    state_dir: Path = DEFAULT_STATE_DIR
    qemu_root: Path | None = None
    comparator: ComparatorKind = ComparatorKind.COLOPP
    before_kill_s: float = 8.0
    after_failover_s: float = 8.0
    connections: int = 4
    # Read-mostly load (each connection PUTs SEED keys, then GETs them) when pre-release
    # is on: reads are what pre-release lets out early. Mixed PUT/GET/POST otherwise.
    seed_keys: int = 16
    checkpoint_delay_ms: int = 2000
    reprotect_timeout_s: float = 180.0
    hold: bool = False
    # Serve the API and its dashboard in this process; the pair is an API protection.
    dashboard: bool = False
    dashboard_port: int | None = None
    json_path: Path | None = None
    guest: str = "kvd"  # or "debian" (colopp.controller.setup.GUESTS)

    @property
    def colo_plus(self) -> bool:
        """Pre-release and the semi-active secondary (colopp's comparator only)."""
        return self.comparator is ComparatorKind.COLOPP
