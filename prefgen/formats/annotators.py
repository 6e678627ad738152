"""Several annotators per pair: a prompt, two responses and one `annotator*` column per annotator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefgen.errors import InputError
from prefgen.formats._base import ImportFormat, Votes
from prefgen.formats._columns import (ANNOTATOR_PREFIX, FIRST_COLUMNS, PROMPT_COLUMNS, SECOND_COLUMNS,
                                      annotator_columns, metadata, parse_winner, prompt, responses)


class AnnotatorsFormat(ImportFormat):
    """Every annotator's vote is stored, and the majority (more than half of the votes; a tie when no side has
    that) speaks for the pair. An empty cell is an annotator who did not label that pair."""

    name = "annotators"
    help = "several annotator* columns"

    def detect(self, row: Mapping[str, Any]) -> bool:
        return bool(annotator_columns(row))

    def read(self, row: Mapping[str, Any], path: str, line: int) -> Votes:
        asked = prompt(row, path, line)
        first, second = responses(row, path, line)
        columns = annotator_columns(row)
        votes = {c: parse_winner(row[c], path, line, c) for c in columns if row[c] not in (None, "")}
        if not votes:
            raise InputError(path, "no annotator labelled this pair", line=line,
                             hint=f"expected columns starting with {ANNOTATOR_PREFIX!r}")
        used = {*PROMPT_COLUMNS, "input", *FIRST_COLUMNS, *SECOND_COLUMNS, *columns}
        return Votes(asked, first, second, votes, metadata(row, used))
