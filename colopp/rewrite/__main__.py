"""``python -m colopp.rewrite``: run one translator in front of one guest.

Example (the chardev paths the splice steps create, see :mod:`colopp.rewrite.splice`)::

    python -m colopp.rewrite --run-dir /run/colopp/vm1/primary

It connects to ``xlate-out-from.sock``, ``xlate-out-to.sock``, ``xlate-in-from.sock`` and
``xlate-in-to.sock`` in the run directory, listens for control requests on
``xlate-control.sock`` (0600) and keeps its table in ``xlate-table.json`` (0600).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from colopp.errors import ColoppError
from colopp.rewrite.relay import Relay
from colopp.rewrite.splice import relay_options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m colopp.rewrite", description=__doc__)
    parser.add_argument("--run-dir", required=True, type=Path, help="the side's run directory")
    parser.add_argument("--vnet-hdr", action="store_true", help="frames carry vnet headers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(Relay(relay_options(args.run_dir, vnet_hdr=args.vnet_hdr)).run())
    except ColoppError as exc:
        print(f"translator: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
