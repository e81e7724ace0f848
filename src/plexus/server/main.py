"""``plexus-server``: run one API server."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from plexus.config import load_config
from plexus.server.app import build_app
from plexus.server.identity.keys import InvalidKeys


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="plexus-server", description=__doc__)
    parser.add_argument("--config", help="YAML configuration file (default: $PLEXUS_CONFIG)")
    parser.add_argument("--host", help="listen address (overrides the configuration)")
    parser.add_argument("--port", type=int, help="listen port (overrides the configuration)")
    parser.add_argument("--store", help="store URL, e.g. sqlite:///var/plexus.db")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--rotate-key", action="store_true",
                        help="add a new token signing key (it signs from now on; older keys "
                             "keep verifying until their tokens expire) and exit")
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
    if args.rotate_key:
        print(rotate_key(config))
        return
    try:
        app = build_app(config)
    except InvalidKeys as exc:
        parser.exit(2, f"plexus-server: refusing to start: {exc}\n")
    uvicorn.run(app, host=config.server.host, port=config.server.port,
                log_level=args.log_level, access_log=False)


def rotate_key(config) -> str:
    """Rotate the signing key where the configuration keeps it; a line saying which."""
    from pathlib import Path

    from plexus.server.identity.keys import rotate_key_file, rotate_store_key
    from plexus.store import open_store
    ident = config.identity
    if ident.token_secret is not None:
        raise SystemExit("plexus-server: identity.token_secret is one fixed key: to rotate, "
                         "move to identity.key_file (or to keys in the store)")
    if ident.key_file:
        key = rotate_key_file(Path(ident.key_file))
        return (f"added key {key.key_id} to {ident.key_file}: it signs once every server has "
                f"read the file (each re-reads it within a second)")
    store = open_store(config.store.url, ca_file=config.store.ca_file,
                       cert_file=config.store.cert_file, key_file=config.store.key_file)
    try:
        key = rotate_store_key(store, ident.token_ttl)
    finally:
        store.close()
    return (f"added key {key.key_id} (number {key.number}) to the store: every server "
            f"signs with it within a second")


if __name__ == "__main__":
    main()
