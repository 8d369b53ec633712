"""``python -m colopp_api --host H --port P [--tls-cert C --tls-key K]`` (``colopp serve``)."""

from __future__ import annotations

import argparse
import os
import sys

from colopp.errors import ColoppError
from colopp_api.app import serve
from colopp_api.tls import tls_files


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m colopp_api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=8470)
    parser.add_argument("--tls-cert", help="PEM certificate (chain): serve HTTPS")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert (mode 0600)")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    os.umask(0o077)
    try:
        serve(args.host, args.port, tls=tls_files(args.tls_cert, args.tls_key))
    except ColoppError as exc:
        print(f"colopp serve: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
