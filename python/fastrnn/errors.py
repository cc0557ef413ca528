"""The error every ``fastrnn`` command reports the same way (imported by the CLI and by the
commands' modules, so that neither imports the other)."""

from __future__ import annotations


class UserError(Exception):
    """Something wrong with the command line or its files: reported in one line, exit 2."""
