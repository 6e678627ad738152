"""TRL's preference layout: `prompt`, `chosen`, `rejected`, as text or as lists of {role, content} messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefgen.errors import InputError
from prefgen.formats._base import SINGLE, ImportFormat, Votes
from prefgen.formats._columns import chosen_and_rejected, message_list, metadata, text
from prefgen.records import parse_prompt


def assistant_text(value: Any, path: str, line: int, column: str) -> str:
    if message_list(value):
        if len(value) != 1 or value[0]["role"] != "assistant":
            raise InputError(path, "a conversational response must be one assistant message", line=line,
                             field=column, hint="put the earlier turns in the prompt")
        return text(value[0]["content"], path, line, column)
    return text(value, path, line, column)


def implicit_prompt(chosen: list[dict], rejected: list[dict], path: str, line: int) -> Votes:
    """Conversational `chosen`/`rejected` without a `prompt`: the shared turns are the prompt."""
    if not chosen or not rejected or chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise InputError(path, "conversations must end with an assistant message", line=line, field="chosen")
    if chosen[:-1] != rejected[:-1]:
        raise InputError(path, "chosen and rejected conversations differ before the last assistant message",
                         line=line, field="rejected", hint="fix the row or drop it with --skip-bad")
    prompt = parse_prompt(chosen[:-1], path, line)
    return Votes(prompt, text(chosen[-1]["content"], path, line, "chosen"),
                 text(rejected[-1]["content"], path, line, "rejected"), {SINGLE: "a"})


class TrlFormat(ImportFormat):
    """`prompt`, `chosen`, `rejected`; without `prompt`, conversational `chosen`/`rejected` share their prefix
    (TRL's implicit prompt)."""

    name = "trl"
    help = "prompt/chosen/rejected (text or messages)"

    def detect(self, row: Mapping[str, Any]) -> bool:
        return chosen_and_rejected(row) and ("prompt" in row or message_list(row["chosen"]))

    def read(self, row: Mapping[str, Any], path: str, line: int) -> Votes:
        chosen, rejected = row.get("chosen"), row.get("rejected")
        if "prompt" not in row and message_list(chosen) and message_list(rejected):
            votes = implicit_prompt(chosen, rejected, path, line)
            return Votes(votes.prompt, votes.first, votes.second, votes.votes,
                         metadata(row, {"chosen", "rejected"}))
        prompt = parse_prompt(row.get("prompt"), path, line)
        first = assistant_text(chosen, path, line, "chosen")
        second = assistant_text(rejected, path, line, "rejected")
        return Votes(prompt, first, second, {SINGLE: "a"}, metadata(row, {"prompt", "chosen", "rejected"}))
