"""How results are printed, set once per invocation by the command line (`--max-width`, `-q`). Light to import:
the CLI sets it before any command loads the renderers (`pipelines.report`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class OutputSettings:
    max_width: int | None = None  # columns; None: the terminal's width (80 when not a terminal)
    quiet: bool = False  # results only: no notes or warnings besides errors


OUTPUT = OutputSettings()
