"""``python -m colopp.tls DIR NAME [--ip IP]... [--dns NAME]...``: make the CA in DIR if
missing, then NAME's certificate; prints ``changed`` or ``ok`` (for Ansible)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from colopp.errors import ColoppError
from colopp.tls.issue import issue, make_ca


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m colopp.tls", description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("names", nargs="*", help="certificates to issue")
    parser.add_argument("--ip", action="append", default=[], help="IP SAN (repeat)")
    parser.add_argument("--dns", action="append", default=[], help="DNS SAN (repeat)")
    args = parser.parse_args(argv)
    try:
        changed = make_ca(args.directory)
        for name in args.names:
            changed = issue(args.directory, name, args.ip, args.dns) or changed
    except ColoppError as exc:
        print(f"colopp tls: {exc}", file=sys.stderr)
        return 2
    print("changed" if changed else "ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
