"""The command line: thin. Each command parses options and calls one library function.

Heavy libraries are imported inside the commands, so `prefgen --help` is instant.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from prefgen.errors import PrefgenError

DB_OPTION = click.option("--db", "db", type=click.Path(dir_okay=False, path_type=Path), default="prefgen.duckdb",
                         show_default=True, help="DuckDB file holding every judgement, label, mix and run.")


class PrefgenGroup(click.Group):
    """Turns user errors into one clear line and a non-zero exit code, without a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PrefgenError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=PrefgenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="prefgen")
def cli() -> None:
    """prefgen: label response pairs with position-swapped LLM judges under a constitution, keep every
    judgement in DuckDB, mix AI and human preferences, and train reward models with TRL."""


# --- human data, agreement, mixes (issue 3) ---

# --- reward models (issue 4) ---


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
