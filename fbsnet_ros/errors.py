"""Errors that are the user's to fix: the command line reports them in one line, exit status 2.

Kept free of torch and ROS imports so every module, and the command line, can import it cheaply.
"""

from __future__ import annotations


class UserError(Exception):
    """A missing or unusable file, folder or option value; the one-line message names it.

    Validation code raises it (or a subclass); `fbsnet-ros` prints it as one line and exits
    with status 2. Anything else that escapes a command is a bug and keeps its traceback.
    """


class InvalidValue(UserError, ValueError):
    """An option or parameter value out of range. Also a ValueError, so callers that validate
    parameters with `except ValueError` (the node's start-up) keep working."""
