"""The agent's part of colopp's sequence translation (see ``docs/rewrite.md``).

Per side it keeps:

- on a secondary: the young offsets the comparator sends (a listener on the replication
  network, :func:`~colopp.rewrite.young_link.serve_young`), or, with QEMU's
  ``colo-compare``, those learned on this host from the replication streams
  (:class:`~colopp.agent.rewriter_relay.RewriterRelay`);
- the side's *table of record*: every connection whose sequence space in this guest differs
  from its client's. Empty until a failover promotes a secondary that had young
  connections; then inherited by every later secondary and promoted side;
- a translator process (``python -m colopp.rewrite``) spliced onto the guest's netdev when
  the part of the record that ``filter-rewriter`` does not translate is non-empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from colopp.agent.rewriter_relay import RewriterRelay
from colopp.agent.side import Side
from colopp.colo.sequence import QmpStep
from colopp.compare.young_send import YOUNG_PORT_OFFSET
from colopp.domain import ComparatorKind, SideSpec
from colopp.errors import ColoppError, ConfigError
from colopp.rewrite.control_client import load_table, wait_ready
from colopp.rewrite.relay import load_state, save_state
from colopp.rewrite.splice import (
    CONTROL_SOCKET,
    FILTERS,
    TABLE_FILE,
    chardev_steps,
    filter_steps,
    rewriter_off_steps,
    splice_steps,
)
from colopp.rewrite.table import OffsetTable
from colopp.rewrite.young import YoungOffsets
from colopp.rewrite.young_link import serve_young

log = logging.getLogger(__name__)

RunSteps = Callable[[list[QmpStep]], Awaitable[None]]
RECORD_FILE = "xlate-record.json"
#: How long a promotion waits for its translator to take the record over.
TAKE_OVER_TIMEOUT_S = 5.0


def young_port(spec: SideSpec) -> int:
    """Where a secondary listens for the comparator's young offsets."""
    return spec.ports.compare + YOUNG_PORT_OFFSET


class SideTranslation:
    """Young offsets, table of record and translator of the side in ``run_dir``."""

    def __init__(self, run_dir: Path, vnet_hdr: bool = False) -> None:
        self.run_dir = run_dir
        self.vnet_hdr = vnet_hdr  # the tap carries a virtio-net header (VmSpec.vnet_hdr)
        self.young = YoungOffsets()
        self.record = load_state(run_dir / RECORD_FILE)
        self._sink: asyncio.Server | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.relay: RewriterRelay | None = None  # QEMU's colo-compare: learning here
        #: How the last promotion sorted the young offsets (YoungOffsets.census).
        self.promotion: dict[str, int] = {}
        #: The promotion switched filter-rewriter off: the translator applies the record.
        self.rewriter_off = False

    @property
    def spliced(self) -> bool:
        return self._proc is not None

    async def as_secondary(self, spec: SideSpec, rows: object, run_steps: RunSteps) -> None:
        """A new secondary: adopt the serving side's record, translate it, listen for young
        offsets. Raises ConfigError for a bad record (nothing started)."""
        self.record = OffsetTable.from_snapshot(rows if rows is not None else [])
        save_state(self.run_dir / RECORD_FILE, self.record)
        if spec.options.comparator is ComparatorKind.COLOPP:
            self._sink = await serve_young(self.young, spec.local_repl_ip, young_port(spec))
        if self.record:
            await self._start_translator(self.record, run_steps)

    async def readopted_secondary(self, spec: SideSpec) -> None:
        """After an agent restart: listen for young offsets again (the record is reloaded
        from disk by the constructor; offsets sent while no agent listened are lost)."""
        if spec.options.comparator is ComparatorKind.COLOPP:
            self._sink = await serve_young(self.young, spec.local_repl_ip, young_port(spec))

    async def learn_here(self, side: Side) -> None:
        """QEMU's ``colo-compare`` (:attr:`SideSpec.rewriter_relay`): relay the secondary's
        replication streams and learn its young offsets from them, each checkpoint load
        (QEMU's RESUME stamp) voiding the older ones. Replaces a relay that runs.

        Raises:
            ColoppError: the relay's sockets cannot be listened on.
        """
        await self.stop_learning(side)
        relay = RewriterRelay(side.spec, self.young)
        await relay.start()
        self.relay = relay
        side.checkpoints.on_resume = lambda: relay.checkpoint_loaded(side.checkpoints.last_at)

    async def stop_learning(self, side: Side) -> None:
        """Stop the relay (promotion: the primary is gone); never raises."""
        relay, self.relay = self.relay, None
        if relay is not None:
            side.checkpoints.on_resume = None
            await relay.stop()

    def promoted(self, last_load: float | None) -> None:
        """This secondary serves now: its record gains the young connections that its
        ``filter-rewriter`` keeps translating (its translator keeps the rest).

        ``last_load``: QEMU's timestamp of this secondary's last checkpoint load (RESUME
        after STOP) before the failover began, None if none: young offsets that arrived
        before it are stale even when the comparator's "completed" message never came."""
        log.info(
            "promotion: %d young offsets live of %d (checkpoints loaded %d, last load %s, "
            "run %s; %d live by the comparator's count alone)",
            len(self.young.live(last_load)),
            len(self.young),
            self.young.loaded,
            last_load,
            self.young.run,
            len(self.young.live()),
        )
        self.promotion = self.young.census(last_load)
        # The translator's own table, when one runs: it has decided pending entries since.
        base = self.record
        if self.spliced:
            try:
                base = load_state(self.run_dir / TABLE_FILE)
            except ConfigError as exc:
                log.warning("translator table unreadable, using the record: %s", exc)
        self.record = self.young.table_of_record(base, time.time(), last_load)
        save_state(self.run_dir / RECORD_FILE, self.record)
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        log.info("promoted with %d translated connections of record", len(self.record))

    async def take_over(self, run_steps: RunSteps) -> None:
        """After :meth:`promoted`: the translator applies the whole table of record and
        ``filter-rewriter`` is switched off, so none of its garbage offsets (a handshake
        that straddled a checkpoint load, docs/rewrite.md "Limit (3)") survives the
        failover. A side without a translator gets one, connected before any frame is
        diverted to it. If the translator cannot take the record in time the rewriter
        stays on (young connections then keep its offsets, garbage ones included)."""
        control = self.run_dir / CONTROL_SOCKET
        undo = False  # a translator started here that no filter diverts to yet
        try:
            if self.record and self.spliced:
                await load_table(control, self.record.snapshot(), TAKE_OVER_TIMEOUT_S)
            elif self.record:
                save_state(self.run_dir / TABLE_FILE, self.record)
                await run_steps(chardev_steps(self.run_dir))
                await self._spawn()
                self._supervisor = asyncio.create_task(self._supervise())
                undo = True
                await wait_ready(control, TAKE_OVER_TIMEOUT_S)
                undo = False
                await run_steps(filter_steps(before="rew0", vnet_hdr=self.vnet_hdr))
        except ColoppError as exc:
            log.warning("translator did not take the record over, rewriter stays on: %s", exc)
            if undo:
                await self.stop()
            return
        await run_steps(rewriter_off_steps())
        self.rewriter_off = True
        log.info("filter-rewriter off; the translator applies %d connections", len(self.record))

    async def as_primary(self, run_steps: RunSteps) -> None:
        """After re-protection rebuilt the primary's filters (in front of ``rew0``): move the
        translator's filters back next to ``rew0``, behind the mirror, so the mirror copies
        the client's input in the client's sequence space."""
        if not self.spliced:
            return
        ids = [fid for fid, _, _ in FILTERS]
        steps = [QmpStep("object-del", {"id": fid}) for fid in ids]
        steps += [
            s
            for s in splice_steps(self.run_dir, before="rew0", vnet_hdr=self.vnet_hdr)
            if s.command == "object-add"
        ]
        await run_steps(steps)

    def record_rows(self) -> list[dict[str, Any]]:
        return self.record.snapshot()

    async def _start_translator(self, table: OffsetTable, run_steps: RunSteps) -> None:
        save_state(self.run_dir / TABLE_FILE, table)
        await run_steps(splice_steps(self.run_dir, before="rew0", vnet_hdr=self.vnet_hdr))
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise())

    async def _spawn(self) -> None:
        log_file = os.open(
            self.run_dir / "xlate.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "colopp.rewrite",
                "--run-dir",
                str(self.run_dir),
                *(["--vnet-hdr"] if self.vnet_hdr else []),
                stdout=log_file,
                stderr=log_file,
            )
        except OSError as exc:
            raise ConfigError(f"cannot start the translator: {exc}") from exc
        finally:
            os.close(log_file)

    async def _supervise(self) -> None:
        # Frames diverted to an unconnected chardev are dropped: restart at once (the
        # translator reloads its table from its state file).
        while self._proc is not None:
            code = await self._proc.wait()
            log.warning("translator exited with %s; restarting", code)
            await self._spawn()

    async def stop(self) -> None:
        """Stop the translator, the listener and the relay; never raises."""
        relay, self.relay = self.relay, None
        if relay is not None:
            await relay.stop()
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 3.0)


def describe(translation: SideTranslation | None) -> dict[str, Any]:
    """For the agent's status."""
    if translation is None:
        return {}
    out: dict[str, Any] = {
        "record": len(translation.record),
        "young": len(translation.young),
        "translator": translation.spliced,
        "promotion": dict(translation.promotion),
        "rewriter_off": translation.rewriter_off,
    }
    if translation.relay is not None:
        out["relay"] = translation.relay.describe()
    return out
