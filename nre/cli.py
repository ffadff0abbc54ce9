"""The ``nre`` command. Each subcommand lives in ``nre/commands/<name>.py`` and defines ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``, which calls one library function; modules are discovered, so
adding a command touches one file."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys


def build_parser() -> argparse.ArgumentParser:
    import nre.commands as commands

    parser = argparse.ArgumentParser(prog="nre", description="NRE benchmark harness for absolute pose estimation")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks of input errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"nre.commands.{info.name}")
        name = getattr(mod, "NAME", info.name.replace("_", "-"))
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def error_message(e: BaseException) -> str:
    """One line naming the file or option: an OSError as ``<file>: <reason>``, anything else its message."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return " ".join(str(e).split())


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand. A user error (``nre.errors.InputError`` and its subclasses: a corrupt or wrong file, an
    unknown estimator, backend or option, invalid JSON; a missing file or folder, a file or folder where the other
    is expected, a permission denied) is one line ``nre <command>: <message>`` on stderr and exit status 2; ``-v``
    shows its traceback. Anything else is a bug and keeps its traceback."""
    from nre.errors import InputError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    try:
        return int(args._run(args) or 0)
    except (
        InputError,
        FileNotFoundError,
        FileExistsError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
    ) as e:
        if args.verbose:
            raise
        print(f"nre {args.command}: {error_message(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
