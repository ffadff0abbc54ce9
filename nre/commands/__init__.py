"""Subcommands of ``nre`` (one module each, see nre.cli)."""
