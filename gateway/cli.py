"""``voice-gateway``: serve the gateway."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from gateway.config_loader import ConfigSource, add_config_arguments, load_config
from gateway.config import ConfigError

logger = logging.getLogger("gateway")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice-gateway", description="Real-time WebRTC voice gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    add_config_arguments(serve)
    serve.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return 2


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(ConfigSource.from_args(args))
    except ConfigError as exc:
        print(f"voice-gateway: invalid configuration: {exc}", file=sys.stderr)
        return 2
    from gateway.app import create_app

    app = create_app(config)
    host, port = config.server.host, config.server.port
    logger.info("voice gateway: open http://%s:%d/ to talk to it", "localhost" if host in ("0.0.0.0", "::") else host,
                port)
    web.run_app(app, host=host, port=port, print=None, shutdown_timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
