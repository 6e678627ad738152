"""The formats human labels come in and annotation batches go out in: one class per format, one module each.

File formats (`ImportFormat`: the rows hold the pairs): hh, trl, pairwise, annotators. Annotation tools
(`ToolFormat`: `prefgen route` writes a batch of the store's pairs, the tool's export names them back):
label-studio, argilla. Every module of this package whose name does not start with `_` is loaded here, and a
class with a `name` registers itself; `import-human --format`, `eval --format`, `route --format` and the config
models' choices are read from the registry. So a new format is one new module here holding one class with
`name`, `help`, `detect` and `read` (and `write_batch` for a tool).

Auto-detection asks every format's `detect` about the first row: exactly one must claim it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from typing import Any

from prefgen.errors import InputError
from prefgen.formats._base import FORMATS, SINGLE, ImportFormat, RoutedVotes, ToolFormat, Votes
from prefgen.formats._columns import mapping_hint

__all__ = ["AUTO", "FORMATS", "SINGLE", "ImportFormat", "RoutedVotes", "ToolFormat", "Votes", "detect",
           "file_formats", "get", "help_text", "names", "tool_formats"]

AUTO = "auto"  # `--format auto`: detected from the first row


def _load_every_format() -> None:
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
        importlib.import_module(f"{__name__}.{module}")


def file_formats() -> list[ImportFormat]:
    """Formats whose rows hold the pairs (evaluation can read them without a store), file formats first."""
    return [f for f in FORMATS.values() if not isinstance(f, ToolFormat)]


def tool_formats() -> list[ToolFormat]:
    """Annotation tools: `prefgen route` writes batches for them, `import-human` reads their exports."""
    return [f for f in FORMATS.values() if isinstance(f, ToolFormat)]


def names(formats: Iterable[ImportFormat] | None = None) -> tuple[str, ...]:
    """The names of `formats` (every format, file formats first, when None)."""
    return tuple(f.name for f in (formats if formats is not None else [*file_formats(), *tool_formats()]))


def help_text(formats: Iterable[ImportFormat] | None = None, what: str = "help") -> str:
    """`name: help; ...` of `formats` (every format when None), for a `--format` option's help; `what` names the
    attribute to show (`batch_help`: what a tool's batch is)."""
    return "; ".join(f"{f.name}: {getattr(f, what)}" for f in (formats if formats is not None else
                                                                [*file_formats(), *tool_formats()]))


def get(name: str) -> ImportFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise InputError(name, f"unknown format {name!r}", hint=f"use one of {', '.join(names())}") from None


def detect(row: Mapping[str, Any], path: str, line: int,
           among: Iterable[ImportFormat] | None = None) -> ImportFormat:
    """The one format (of `among`, default every format) that claims `row`; an error with the `--column`
    mappings that would work when none does, and with the candidates when several do."""
    among = list(among) if among is not None else [*file_formats(), *tool_formats()]
    claimed = [f for f in among if f.detect(row)]
    if len(claimed) == 1:
        return claimed[0]
    if not claimed:
        raise InputError(path, f"cannot tell the format from the columns {sorted(row)}", line=line,
                         hint=f"{mapping_hint(row)}; or pass --format ({', '.join(names(among))})")
    raise InputError(path, f"the columns {sorted(row)} fit several formats ({', '.join(names(claimed))})",
                     line=line, hint="pass --format")


_load_every_format()
