"""Command line entry point: ``pypbx serve [--config config.toml]`` / ``python -m pbx serve``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from pbx.config import Config, load
from pbx.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pypbx", description="pypbx voice-call media server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the call server")
    worker = sub.add_parser("worker", help=argparse.SUPPRESS)   # started by `serve` with workers > 1
    worker.add_argument("--channel-fd", type=int, required=True)
    for command in (serve, worker):
        command.add_argument("--config", help="TOML configuration file (default: embedded defaults)")
        command.add_argument("--http-addr", help="override http_addr, e.g. 127.0.0.1:8080")
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
    config_args = [*(["--config", args.config] if args.config else []),
                   *(["--http-addr", args.http_addr] if args.http_addr else [])]
    who = f"worker {os.getpid()} " if args.command == "worker" else ""
    from pbx.server.logcontext import configure as configure_logging
    configure_logging(config.log_level, config.log_format, who)   # every record with its call id
    # websockets logs every connection's open and close at INFO: a line per call, thousands on a busy host
    logging.getLogger("websockets").setLevel(max(logging.WARNING, logging.getLogger().level))
    from pbx.server.listener import DESCRIPTORS_PER_CONNECTION, raise_descriptor_limit
    soft, _ = raise_descriptor_limit()
    from pbx.memory import map_large_blocks
    map_large_blocks()     # a call's large buffers (decoded prompts) go back to the system at hangup
    if soft < DESCRIPTORS_PER_CONNECTION * config.max_connections and args.command == "serve":
        logging.getLogger("pbx").warning(
            "the descriptor limit (%d) is below what max_connections = %d may need (%d each): past it, new "
            "connections are closed at once", soft, config.max_connections, DESCRIPTORS_PER_CONNECTION)
    try:
        return asyncio.run(_run(args.command, config, config_args, getattr(args, "channel_fd", -1)))
    except OSError as exc:
        print(f"pypbx: {exc.strerror or exc}", file=sys.stderr)
        return 1


async def _run(command: str, config: Config, config_args: list[str], channel_fd: int) -> int:
    if command == "worker":
        from pbx.server.worker import run_worker
        return await run_worker(config, channel_fd)
    if config.worker_count > 1:
        from pbx.server.supervisor import Supervisor
        return await Supervisor(config, config_args).run()
    from pbx.server.app import CallServer
    await CallServer(config).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
