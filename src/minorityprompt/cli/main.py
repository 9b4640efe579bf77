"""The `minorityprompt` command line."""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import MinorityPromptError
from . import evaluate, generate, sweep, tiny_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minorityprompt",
        description="Minority-focused text-to-image generation by online prompt optimization.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    generate.add_parser(commands)
    evaluate.add_parser(commands)
    sweep.add_parser(commands)
    tiny_model.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except MinorityPromptError as error:
        print(f"minorityprompt: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "minorityprompt: interrupted; images written so far are kept, and the same command "
            "resumes the run.",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
