"""Where the tests find the repository and their own files, from whichever folder of tests/ they run in."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
