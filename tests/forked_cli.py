"""`prefgen` commands in child processes that start in milliseconds, for tests that signal a hundred of them.

A fresh `python -m prefgen.cli label` spends a second or more importing (the judge SDKs, pyarrow, DuckDB) before
it does anything; signalling a hundred of them would spend minutes on imports alone. `ForkedCli` starts the
standard library's fork server with prefgen's command modules imported once (`multiprocessing` "forkserver"
with a preload), and each `start` forks a child from it: a real process running the real command line, with
its own pid for signals, its output in a file, and its exit status (negative: the signal that ended it).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

# What the children need imported before they start: the command line and everything `label` and
# `import-human` import lazily (the modules are imported, nothing is run, no thread or database is opened).
PRELOAD = ["tests.forked_cli", "prefgen.cli", "prefgen.pipelines.labelling.local", "prefgen.pipelines.humans.imports",
           "prefgen.pipelines.reporting.console", "prefgen.judge.openai_backend", "prefgen.storage.db", "aiohttp",
           "pyarrow", "duckdb", "filelock"]


def run_cli(argv: list[str], output: str) -> None:
    """The child: `prefgen ARGV` with stdout and stderr in the file `output`; exits with the command's code."""
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115 - lives as the process
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
    from prefgen.cli import cli

    cli.main(args=argv, prog_name="prefgen")  # raises SystemExit with the command's exit code


class ForkedCli:
    """Start `prefgen` commands as forked children (see the module docstring)."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(PRELOAD)

    def start(self, argv: list[str], output: Path) -> multiprocessing.Process:
        process = self._context.Process(target=run_cli, args=(argv, str(output)), daemon=True)
        process.start()
        return process
