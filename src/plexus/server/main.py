"""``plexus-server``: run one API server."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from plexus.config import load_config
from plexus.server.app import build_app


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="plexus-server", description=__doc__)
    parser.add_argument("--config", help="YAML configuration file (default: $PLEXUS_CONFIG)")
    parser.add_argument("--host", help="listen address (overrides the configuration)")
    parser.add_argument("--port", type=int, help="listen port (overrides the configuration)")
    parser.add_argument("--store", help="store URL, e.g. sqlite:///var/plexus.db")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    if args.host:
        config.server.host = args.host
    if args.port:
        config.server.port = args.port
    if args.store:
        config.store.url = args.store
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = build_app(config)
    uvicorn.run(app, host=config.server.host, port=config.server.port,
                log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
