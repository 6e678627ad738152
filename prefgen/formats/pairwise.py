"""Pairwise judgements: a prompt, two responses and the winner (PandaLM, LLMEval2, Chatbot Arena exports...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefgen.formats._base import SINGLE, ImportFormat, Votes
from prefgen.formats._columns import (FIRST_COLUMNS, PROMPT_COLUMNS, SECOND_COLUMNS, WINNER_COLUMNS,
                                      annotator_columns, column, metadata, parse_winner, prompt, responses)


class PairwiseFormat(ImportFormat):
    """Prompt, two responses and a winner: `a`/`b`/`tie`, `1`/`2`/`0`, `model1`/`model2`/`TIE` (see
    `prefgen.formats._columns` for the column names read)."""

    name = "pairwise"
    help = "prompt, two responses, winner"

    def detect(self, row: Mapping[str, Any]) -> bool:
        return (any(c in row for c in WINNER_COLUMNS) and not annotator_columns(row)
                and not ("chosen" in row and "rejected" in row))

    def read(self, row: Mapping[str, Any], path: str, line: int) -> Votes:
        asked = prompt(row, path, line)
        first, second = responses(row, path, line)
        name = column(row, WINNER_COLUMNS, path, line, "winner")
        winner = parse_winner(row[name], path, line, name)
        used = {*PROMPT_COLUMNS, "input", *FIRST_COLUMNS, *SECOND_COLUMNS, name}
        return Votes(asked, first, second, {SINGLE: winner}, metadata(row, used))
