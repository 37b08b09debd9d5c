"""Entry point of the ``usseg`` console script.

Sub-commands live in their own modules under :mod:`usseg_models.cli`; each defines ``add_parser(subparsers)``
(which registers the sub-command and sets ``func`` to its runner) and is imported lazily so that
``usseg info`` does not pay for importing torch networks it does not use.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from usseg_models.errors import UssegError

# sub-command name -> module under usseg_models.cli that defines add_parser()
COMMANDS = {
    "info": "info",
    "sample-data": "sample_data",
    "train": "train",
    "evaluate": "evaluate",
    "predict": "predict",
    "bench": "bench",
}

logger = logging.getLogger("usseg")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="usseg", description="Ultrasound segmentation tools (DSANet, IntraSense-Net)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    # Only import the module of the chosen command (plus all of them for --help).
    wanted = [a for a in (argv or []) if a in COMMANDS]
    names = wanted[:1] if wanted else list(COMMANDS)
    for name in names:
        importlib.import_module(f"usseg_models.cli.{COMMANDS[name]}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        result = args.func(args)
    except UssegError as exc:
        print(f"usseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"usseg {args.command}: error: file not found: {exc.filename or exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the user gave that cannot be used (a file where a folder goes, no permission)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"usseg {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"usseg {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
