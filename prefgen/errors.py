"""Errors a user can fix. The CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Every exit status prefgen gives, in one place (docs/exit-codes.md lists them for scripts).

    1 is left to Python: a traceback, that is a bug to report.
    """

    OK = 0
    BAD_INPUT = 2  # a bad option, value or input file; nothing was done (click's usage errors use 2 too)
    CALLS_FAILED = 3  # the run finished, but some judge calls failed after their retries (re-run to retry them)
    ALL_CALLS_FAILED = 4  # no call of the run got an answer (or it stopped early: auth, 404, connection)
    BUDGET_REACHED = 5  # --max-cost stopped the run before it could pass the job's budget
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, the shell's convention); everything answered is stored
    HANGUP = 129  # SIGHUP (a closed ssh session), handled as Ctrl-C is
    TERMINATED = 143  # SIGTERM (`timeout`, systemd, Kubernetes, Slurm), handled as Ctrl-C is

    @classmethod
    def for_signal(cls, name: str | None) -> ExitCode:
        """The exit code of a run stopped by the signal of that name (Ctrl-C when None)."""
        return {"SIGHUP": cls.HANGUP, "SIGTERM": cls.TERMINATED}.get(name or "", cls.INTERRUPTED)


class PrefgenError(Exception):
    """Base for errors caused by input or configuration rather than by a bug."""

    exit_code: int = ExitCode.BAD_INPUT


class InputError(PrefgenError):
    """Bad input in a file: names the file, the line and the field, and says how to fix it."""

    def __init__(
        self,
        path: str | Path | None,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.message = message
        self.hint = hint
        super().__init__(self.render())

    def or_skip(self) -> InputError:
        """The same error, its hint ending with the way past it that a file of many rows needs."""
        if self.hint and "--skip-bad" in self.hint:
            return self
        hint = f"{self.hint}; or skip such rows with --skip-bad" if self.hint else "or skip such rows with --skip-bad"
        return InputError(self.path, self.message, line=self.line, field=self.field, hint=hint)

    def render(self) -> str:
        where = self.path or "<input>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where} {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


