"""Translator hot path: frames per CPU-second through :mod:`colopp.rewrite.segment`.

``python -m bench.rewrite [--json FILE]``

- ``untouched_*``: a table holding other connections (the frame's has offset 0): the common
  case of a side that translates only a few inherited connections.
- ``translated_*``: the frame's connection has an offset (parse, rewrite, checksum update).
- ``empty_table``: nothing to translate at all (the side is not spliced in practice).
Figures are frames per CPU-second of this process, for 1500-byte guest output frames and
for client ACKs carrying a SACK option.
"""

from __future__ import annotations

import argparse
import json
import struct
import time
from collections.abc import Callable
from pathlib import Path

from colopp.rewrite.segment import translate_client_input, translate_guest_output
from colopp.rewrite.table import OffsetTable

GUEST = 0xC6120A0A
CLIENT = 0xC6120002
N = 200_000


def _frame(src: int, dst: int, sport: int, dport: int, payload: bytes, options: bytes) -> bytes:
    doff = (20 + len(options)) // 4
    tcp = struct.pack(">HHIIBBHHH", sport, dport, 1, 2, doff << 4, 0x18, 65535, 0, 0)
    ip = struct.pack(
        ">BBHHHBBHII",
        0x45,
        0,
        20 + len(tcp) + len(options) + len(payload),
        0,
        0,
        64,
        6,
        0,
        src,
        dst,
    )
    return b"\x52\x54\0\0\0\1\x52\x54\0\0\0\2\x08\x00" + ip + tcp + options + payload


def _rate(
    fn: Callable[[bytes, OffsetTable, float, int], bytes], frame: bytes, table: OffsetTable
) -> float:
    start = time.process_time()
    for _ in range(N):
        fn(frame, table, 0.0, 0)
    return N / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out_frame = _frame(GUEST, CLIENT, 80, 40000, b"x" * 1446, b"")
    sack = b"\x01\x01\x05\x0a" + struct.pack(">II", 100, 200)
    in_frame = _frame(CLIENT, GUEST, 40000, 80, b"", sack)
    others = OffsetTable()
    for port in range(1000, 1064):
        others.set_delta((GUEST, 80, CLIENT, port), 12345, 0.0)
    mine = others.copy()
    mine.set_delta((GUEST, 80, CLIENT, 40000), 12345, 0.0)
    result = {
        "empty_table_out": _rate(translate_guest_output, out_frame, OffsetTable()),
        "untouched_out_1500": _rate(translate_guest_output, out_frame, others),
        "untouched_in_ack": _rate(translate_client_input, in_frame, others),
        "translated_out_1500": _rate(translate_guest_output, out_frame, mine),
        "translated_in_ack_sack": _rate(translate_client_input, in_frame, mine),
    }
    text = json.dumps({k: round(v) for k, v in result.items()}, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
