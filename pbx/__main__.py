"""Command line entry point: ``pypbx serve`` / ``python -m pbx serve``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pypbx", description="pypbx voice-call media server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the call server")
    serve.add_argument("--config", help="TOML configuration file")
    args = parser.parse_args(argv)
    if args.command == "serve":
        print("pypbx: server not built yet (the media core is; see README)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
