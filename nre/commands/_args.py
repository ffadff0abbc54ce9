"""Argument helpers shared by the ``nre`` subcommands (not a subcommand: nre.cli skips modules starting with ``_``)."""

from __future__ import annotations

import json


def json_arg(text: str | None, flag: str, command: str):
    """Parse a JSON command-line value; ``None`` stays ``None``; invalid JSON exits naming the command and flag."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"{command}: {flag} is not valid JSON ({e}): {text!r}") from e
