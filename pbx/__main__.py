"""Command line entry point: ``pypbx serve [--config config.toml]`` / ``python -m pbx serve``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pbx.config import load
from pbx.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pypbx", description="pypbx voice-call media server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the call server")
    serve.add_argument("--config", help="TOML configuration file (default: embedded defaults)")
    serve.add_argument("--http-addr", help="override http_addr, e.g. 127.0.0.1:8080")
    args = parser.parse_args(argv)
    try:
        config = load(args.config)
        if args.http_addr:
            from dataclasses import replace

            from pbx.config import from_mapping
            from_mapping({"http_addr": args.http_addr})  # validates the value
            config = replace(config, http_addr=args.http_addr)
    except ConfigError as exc:
        print(f"pypbx: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # websockets logs every connection's open and close at INFO: a line per call, thousands on a busy host
    logging.getLogger("websockets").setLevel(max(logging.WARNING, logging.getLogger().level))
    from pbx.server.app import CallServer
    from pbx.server.listener import DESCRIPTORS_PER_CONNECTION, raise_descriptor_limit
    soft, _ = raise_descriptor_limit()
    from pbx.memory import map_large_blocks
    map_large_blocks()     # a call's large buffers (decoded prompts) go back to the system at hangup
    if soft < DESCRIPTORS_PER_CONNECTION * config.max_connections:
        logging.getLogger("pbx").warning(
            "the descriptor limit (%d) is below what max_connections = %d may need (%d each): past it, new "
            "connections are closed at once", soft, config.max_connections, DESCRIPTORS_PER_CONNECTION)
    try:
        asyncio.run(CallServer(config).serve_forever())
    except OSError as exc:
        print(f"pypbx: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
