"""HH-RLHF: `{"chosen": transcript, "rejected": transcript}`, Anthropic's helpful/harmless preference layout."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from prefgen.errors import InputError
from prefgen.formats._base import SINGLE, ImportFormat, Votes
from prefgen.formats._columns import chosen_and_rejected, metadata, text

HH_TURN = re.compile(r"\n\n(?=(?:Human|Assistant):)")
HH_ASSISTANT = "\n\nAssistant:"


def split_transcript(transcript: str, path: str, line: int, column: str) -> tuple[str, str]:
    """An HH transcript -> (conversation before the last Assistant turn, that turn's text)."""
    cut = transcript.rfind(HH_ASSISTANT)
    if cut < 0:
        raise InputError(path, "no Assistant turn in the transcript", line=line, field=column,
                         hint="HH lines are '\\n\\nHuman: ...\\n\\nAssistant: ...' transcripts")
    return transcript[:cut], transcript[cut + len(HH_ASSISTANT):]


def first_difference(a: str, b: str) -> int:
    """The (1-based) turn where two conversations part."""
    turns_a, turns_b = HH_TURN.split(a.strip()), HH_TURN.split(b.strip())
    return next((i for i, (x, y) in enumerate(zip(turns_a, turns_b)) if x.strip() != y.strip()),
                min(len(turns_a), len(turns_b))) + 1


class HHFormat(ImportFormat):
    """The shared conversation before the last "Assistant:" turn is the prompt (kept as text, the form HH pools
    use, so ids match); the last turns are the responses, chosen first. A line whose two conversations differ
    before that turn is reported, never guessed."""

    name = "hh"
    help = "HH-RLHF chosen/rejected transcripts"

    def detect(self, row: Mapping[str, Any]) -> bool:
        return chosen_and_rejected(row) and "prompt" not in row and isinstance(row["chosen"], str)

    def read(self, row: Mapping[str, Any], path: str, line: int) -> Votes:
        chosen = text(row.get("chosen"), path, line, "chosen")
        rejected = text(row.get("rejected"), path, line, "rejected")
        prompt, first = split_transcript(chosen, path, line, "chosen")
        other, second = split_transcript(rejected, path, line, "rejected")
        if prompt.strip() != other.strip():
            turn = first_difference(prompt, other)
            raise InputError(path, f"chosen and rejected conversations differ before the last Assistant turn "
                             f"(first at turn {turn})", line=line, field="rejected",
                             hint="fix the line or drop it with --skip-bad")
        return Votes(prompt, first, second, {SINGLE: "a"}, metadata(row, {"chosen", "rejected"}))
