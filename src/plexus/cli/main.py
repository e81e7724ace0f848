"""The ``plexus`` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand."""
    parser = argparse.ArgumentParser(prog="plexus", description="Plexus virtual network")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the lab with a demo topology and a reachability table")
    demo.add_argument("--lab-name", default="demo", help="name of the demo lab")
    demo.add_argument("--api-only", action="store_true",
                      help="no lab: the server on the embedded store and a CLI tour")
    demo.add_argument("--port", type=int, default=9696, help="(--api-only) server port")
    demo.add_argument("--workdir", default="var/demo", help="(--api-only) store and logs")
    demo.add_argument("--no-wait", action="store_true", help="(--api-only) stop after the tour")
    docs = sub.add_parser("docs", help="regenerate the generated parts of docs/")
    docs.add_argument("--check", action="store_true", help="fail if docs/ is out of date")
    from plexus.cli import lab as lab_cmd
    from plexus.cli import trace as trace_cmd
    lab_cmd.add_parser(sub)
    from plexus.cli import ops
    ops.add_parsers(sub)
    trace_cmd.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from plexus.cli import demo as demo_cmd
        return demo_cmd.run(args)
    if args.command == "docs":
        from plexus.tools import docs as docs_cmd
        return docs_cmd.run(args)
    if args.command == "lab":
        return lab_cmd.run(args)
    if args.command in ("status", "flows", "topology"):
        return ops.run(args)
    if args.command in ("trace", "verify"):
        return trace_cmd.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
