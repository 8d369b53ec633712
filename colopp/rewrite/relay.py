"""The translator process's asyncio shell: frames in from QEMU, translated, frames back.

It sits on a guest's netdev through two ``filter-redirector`` pairs (see
:mod:`colopp.rewrite.splice`): the guest's output arrives on ``guest_out_from`` and goes
back, translated, to ``guest_out_to``; the client's input arrives on ``client_in_from`` and
goes back to ``client_in_to``. All four are QEMU server chardevs (unix sockets) this
process connects to. One asyncio loop owns the table, so a control request (``set``,
``load``) and the frames are applied in one order.

The table is written to ``state_file`` (0600) after every change and read back at start:
a restarted translator translates exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from colopp.compare.framing import FrameDecoder, encode_frames
from colopp.errors import ConfigError
from colopp.rewrite.control import MAX_REQUEST_BYTES, READY_REQUEST, handle_request
from colopp.rewrite.segment import translate_client_input, translate_guest_output
from colopp.rewrite.table import OffsetTable

log = logging.getLogger(__name__)

#: How often ended and idle entries are dropped.
EXPIRE_EVERY_S = 60.0


@dataclass(frozen=True)
class RelayOptions:
    guest_out_from: Path
    guest_out_to: Path
    client_in_from: Path
    client_in_to: Path
    control: Path
    state_file: Path
    vnet_hdr: bool = False
    connect_timeout_s: float = 30.0


def load_state(path: Path) -> OffsetTable:
    """The table saved in ``path`` (empty when there is none).

    Raises:
        ConfigError: the file exists but does not hold a table.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return OffsetTable()
    except OSError as exc:
        raise ConfigError(f"cannot read offset table {path}: {exc}") from exc
    try:
        return OffsetTable.from_snapshot(json.loads(text))
    except ValueError as exc:
        raise ConfigError(f"offset table {path} is not JSON: {exc}") from exc


def save_state(path: Path, table: OffsetTable) -> None:
    """Write ``table`` to ``path`` atomically, mode 0600."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(table.snapshot(), out)
    os.replace(tmp, path)


class Relay:
    """Runs one translator until cancelled."""

    def __init__(self, options: RelayOptions, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.clock = clock
        # Wall-clock seconds: entry times move between hosts with the table.
        self.table = load_state(options.state_file)
        self.frames = 0
        self.translated = 0
        #: Connected to all four chardevs: frames diverted to it from now on are relayed.
        self.ready = False

    async def run(self) -> None:
        """Connect to QEMU's four chardevs, serve control requests, relay frames.

        Raises:
            ConfigError: a chardev socket did not accept a connection in time.
        """
        opts = self.options
        server = await asyncio.start_unix_server(
            self._serve_control, path=str(opts.control), limit=MAX_REQUEST_BYTES
        )
        os.chmod(opts.control, 0o600)
        writers: list[asyncio.StreamWriter] = []
        try:
            async with server:
                out_reader, writer = await self._connect(opts.guest_out_from)
                writers.append(writer)
                _, out_writer = await self._connect(opts.guest_out_to)
                writers.append(out_writer)
                in_reader, writer = await self._connect(opts.client_in_from)
                writers.append(writer)
                _, in_writer = await self._connect(opts.client_in_to)
                writers.append(in_writer)
                self.ready = True
                await asyncio.gather(
                    self._pump(out_reader, out_writer, translate_guest_output),
                    self._pump(in_reader, in_writer, translate_client_input),
                    self._expire_forever(),
                )
        finally:
            for writer in writers:
                writer.close()

    async def _connect(self, path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        deadline = self.clock() + self.options.connect_timeout_s
        while True:
            try:
                return await asyncio.open_unix_connection(str(path))
            except OSError as exc:
                if self.clock() > deadline:
                    raise ConfigError(f"translator cannot connect to {path}: {exc}") from exc
            await asyncio.sleep(0.05)  # QEMU creates its server chardev at object-add

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        translate: Callable[[bytes, OffsetTable, float, int], bytes],
    ) -> None:
        decoder = FrameDecoder(vnet_hdr=self.options.vnet_hdr)
        vnet = self.options.vnet_hdr
        while chunk := await reader.read(65536):
            frames = decoder.feed(chunk)
            if not frames:
                continue
            now = self.clock()
            out = []
            vlen = 0
            for data, vlen in frames:
                moved = translate(data, self.table, now, vlen)
                self.translated += moved is not data
                out.append(moved)
            self.frames += len(frames)
            if self.table.decided:  # a pending entry was decided: the record must say so
                self.table.decided = False
                save_state(self.options.state_file, self.table)
            # One vnet header length per batch: QEMU uses the netdev's, the same for all.
            writer.write(encode_frames(out, vlen, vnet_hdr=vnet))
            await writer.drain()
        raise ConfigError("QEMU closed a translator chardev")

    async def _serve_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while line := await reader.readline():
                if line.strip() == READY_REQUEST.strip():
                    writer.write(b'{"ok":true,"ready":%s}\n' % str(self.ready).lower().encode())
                    await writer.drain()
                    continue
                self.table, reply, changed = handle_request(self.table, line, self.clock())
                if changed:
                    save_state(self.options.state_file, self.table)
                writer.write(reply)
                await writer.drain()
        except (ValueError, ConnectionError) as exc:  # over-long line, peer gone
            log.warning("translator control connection dropped: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(EXPIRE_EVERY_S)
            if self.table.expire(self.clock()):
                save_state(self.options.state_file, self.table)
