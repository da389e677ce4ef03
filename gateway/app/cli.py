"""``voice-gateway``: serve the gateway, show its configuration; ``call`` and ``loadtest`` run the QA client."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from gateway.config import ConfigError
from gateway.config.loader import ConfigSource, add_config_arguments, load_config

logger = logging.getLogger("gateway")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice-gateway", description="Real-time WebRTC voice gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    add_config_arguments(serve)
    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    show = config_commands.add_parser("show", help="print the effective configuration, secrets masked")
    add_config_arguments(show)
    show.add_argument("--format", choices=("toml", "json"), default="toml")
    _add_qa_commands(commands)
    return parser


def _add_qa_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``call`` and ``loadtest``: the QA client (:mod:`qa`), which talks to a gateway over HTTP and WebRTC
    like any caller and imports no server code; each command's ``run`` is its ``main``."""
    from qa import call_cmd, loadtest

    call = commands.add_parser("call", help="place a call and report what the caller heard")
    call_cmd.add_arguments(call)
    call.set_defaults(run=call_cmd.main)
    load = commands.add_parser("loadtest", help="run concurrent callers and report latency")
    loadtest.add_arguments(load)
    load.set_defaults(run=loadtest.main)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args, argv)
    if args.command == "config":
        return _config_show(args)
    if args.command in ("call", "loadtest"):
        run: Callable[[argparse.Namespace], int] = args.run
        return run(args)
    return 2


def _serve(args: argparse.Namespace, argv: Sequence[str]) -> int:
    try:
        config = load_config(ConfigSource.from_args(args))
    except ConfigError as exc:
        print(f"voice-gateway: invalid configuration: {exc}", file=sys.stderr)
        return 2
    from gateway.app.application import create_app
    from gateway.app.serve import serve
    from gateway.ops.logging_setup import configure_logging

    configure_logging(config.logging)

    async def run() -> int:
        if config.server.workers > 1:
            from gateway.app.front import serve_front

            return await serve_front(config, argv)  # workers get this command line, made single-process
        return await serve(create_app(config), config)

    return asyncio.run(run())


def _config_show(args: argparse.Namespace) -> int:
    try:
        config = load_config(ConfigSource.from_args(args))
    except ConfigError as exc:
        print(f"voice-gateway: invalid configuration: {exc}", file=sys.stderr)
        return 2
    from gateway.config.show import render_config

    sys.stdout.write(render_config(config, args.format))
    return 0


if __name__ == "__main__":
    sys.exit(main())
