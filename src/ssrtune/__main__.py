"""`python -m ssrtune ...`: the same as the `ssrtune` command."""

from ssrtune.cli import entry

entry()
