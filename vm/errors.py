"""Errors that zcfuzz reports to the user as one line, without a traceback."""


class UserError(Exception):
    """Bad input or a missing tool: the message says what to do. Exit status 2."""

    exit_status = 2
