"""Output options every command shares: -q / -v (how much is said on stderr), --max-width (tables), --json.

They are click options with callbacks that set `prefgen.pipelines.reporting.output.OUTPUT` and the `prefgen` logger,
so commands do not take them as arguments; `reset_output` restores the defaults before each invocation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import click

from prefgen.pipelines.reporting.output import OUTPUT, OutputSettings
from prefgen.redact import redact
from prefgen.terminal import inert


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: int) -> None:
    """-q / -v on the group or any command: how much besides the results is said (stderr)."""
    if not value:
        return
    if param.name == "quiet":
        OUTPUT.quiet = True
        level = logging.ERROR
    else:
        level = logging.INFO if value == 1 else logging.DEBUG
    logging.getLogger("prefgen").setLevel(level)


def _set_max_width(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    if value is not None:
        OUTPUT.max_width = value


# Options every command takes, and the group too (`prefgen -q label ...` = `prefgen label -q ...`).
# They set how output looks and never reach the command's function.
SHARED_OPTIONS = (
    click.Option(["-q", "--quiet"], count=True, expose_value=False, callback=_set_verbosity,
                 help="Results and errors only: no progress bar, notes or warnings."),
    click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_set_verbosity,
                 help="Say more on stderr (-vv: debug)."),
    click.Option(["--max-width"], type=click.IntRange(min=20), default=None, expose_value=False,
                 callback=_set_max_width, help="Print tables at most this many columns wide (default: the "
                 "terminal's width, 80 when not a terminal)."),
)

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (for scripts).")


def emit(result: object, as_json: bool, show: Callable[[], None]) -> None:
    """The command's result as JSON (--json), or shown for people."""
    if as_json:
        from prefgen.pipelines.reporting.console import to_json

        click.echo(to_json(result))
    else:
        show()


def say(text: str) -> None:
    """A command's result for people (stdout), its data made inert for the terminal (`prefgen.terminal`)."""
    click.echo(inert(text))


class _EchoHandler(logging.Handler):
    """prefgen's log records as `warning: ...` lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelname.lower()
        click.secho(f"{level}: {inert(redact(record.getMessage()))}", err=True,
                    fg={"warning": "yellow", "error": "red"}.get(level))


def reset_output() -> None:
    """Defaults for one invocation (before its options are read): tests invoke the CLI many times a process."""
    vars(OUTPUT).update(vars(OutputSettings()))
    logger = logging.getLogger("prefgen")
    if not any(isinstance(h, _EchoHandler) for h in logger.handlers):
        logger.addHandler(_EchoHandler())
    logger.setLevel(logging.WARNING)
