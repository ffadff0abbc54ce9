"""Input errors: bad data or configuration a user must fix. ``nre`` prints their message as one line naming the file
or option (no traceback; ``nre -v`` shows it) and exits with status 2. A light module: importing it loads nothing.

Library code raises these (never ``SystemExit`` or a bare ``KeyError``) so that every caller, the command line
included, can tell a user's mistake from a bug."""

from __future__ import annotations


class InputError(ValueError):
    """A file, option or configuration value is missing, corrupt or invalid; the message names it."""


class FileFormatError(InputError):
    """A file exists but is not what was asked for (another format, missing keys or columns); names the file."""


class OptionError(InputError):
    """An option value that cannot run: invalid JSON, a value of the wrong type, a bad combination of options."""


class UnknownNameError(OptionError, KeyError):
    """An unknown estimator, preset or other registered name; the message lists what is available."""

    __str__ = Exception.__str__  # KeyError would print the message in quotes
