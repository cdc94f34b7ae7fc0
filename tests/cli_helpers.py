"""The command line's helpers, now in helpers.py: this name is kept only until test_cli_logs.py and
test_delete.py import them from there."""

from helpers import PATIENCE, TASK, assert_one_line_error, cli, command, default_sigint, start, wait_for

__all__ = [
    "PATIENCE",
    "TASK",
    "assert_one_line_error",
    "cli",
    "command",
    "default_sigint",
    "start",
    "wait_for",
]
