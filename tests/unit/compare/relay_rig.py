"""Host B's relay between fake QEMU ends over unix sockets: the primary's ``mirror0`` and the
comparator's ``secondary_in`` (servers the relay connects to), the secondary QEMU's ``red0``
and ``red1`` (the relay's listeners, connected to here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compare_fakes import TIMEOUT, FakeQemuSide, connect_when_ready

from colopp.compare.addresses import parse_endpoint
from colopp.ingress.options import RelayOptions
from colopp.ingress.relay import Relay


@dataclass
class RelayRig:
    relay: Relay
    mirror: asyncio.StreamWriter  # client frames in, as the primary's filter-mirror sends
    comparator: asyncio.StreamReader  # what the relay sends the comparator
    red0: asyncio.StreamReader  # what the secondary guest is given
    red1: asyncio.StreamWriter  # the secondary guest's output


@asynccontextmanager
async def relay_rig(tmp: Path, **options: Any) -> AsyncIterator[RelayRig]:
    """A started relay (``options``: more :class:`RelayOptions`) with all four ends open."""
    mirror = FakeQemuSide(tmp / "mirror0.sock")
    comparator = FakeQemuSide(tmp / "secondary_in.sock")
    await mirror.start()
    await comparator.start()
    relay = Relay(
        RelayOptions(
            mirror_from=parse_endpoint(f"unix:{mirror.path}"),
            mirror_to=parse_endpoint(f"listen:unix:{tmp / 'red0.sock'}"),
            output_from=parse_endpoint(f"listen:unix:{tmp / 'red1.sock'}"),
            output_to=parse_endpoint(f"unix:{comparator.path}"),
            **options,
        )
    )
    await relay.start()
    red0 = await asyncio.open_unix_connection(str(tmp / "red0.sock"))
    red1 = await connect_when_ready(tmp / "red1.sock")
    try:
        _, m_writer = await asyncio.wait_for(mirror.conn, TIMEOUT)
        c_reader, _ = await asyncio.wait_for(comparator.conn, TIMEOUT)
        yield RelayRig(relay, m_writer, c_reader, red0[0], red1)
    finally:
        await relay.stop()
        red0[1].close()
        red1.close()
        await mirror.close()
        await comparator.close()
