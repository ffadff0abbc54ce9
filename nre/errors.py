"""Input errors: bad data or configuration a user must fix. ``nre`` prints their message as one line naming the file
(no traceback; ``nre -v`` shows it) and exits with status 2. A light module: importing it loads nothing."""

from __future__ import annotations


class InputError(ValueError):
    """A file, option or configuration value is missing, corrupt or invalid; the message names it."""
