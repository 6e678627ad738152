"""Column conventions the file formats share: the names a prompt, the two responses and a winner go by, the
spellings of a winner, and the `--column` hints of a row none of them fits.

The prompt is `prompt`, `query`, `question`, or `instruction` (+ `input`); the responses are
`response_a`/`response_b` or `response1`/`response2`; the winner is `winner`, `human`, `label` or
`preference`. `import-human --column OURS=THEIRS` maps other names onto these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from prefgen.errors import InputError
from prefgen.records import parse_prompt

PROMPT_COLUMNS = ("prompt", "query", "question", "instruction")
FIRST_COLUMNS = ("response_a", "response1")
SECOND_COLUMNS = ("response_b", "response2")
WINNER_COLUMNS = ("winner", "human", "label", "preference")
ANNOTATOR_PREFIX = "annotator"

# a = the first response, b = the second. Numbers follow PandaLM (1 first, 2 second, 0 tie).
WINNER_VALUES = {
    "a": "a", "response_a": "a", "first": "a", "1": "a", "model1": "a", "model_a": "a",
    "b": "b", "response_b": "b", "second": "b", "2": "b", "model2": "b", "model_b": "b",
    "tie": "tie", "0": "tie", "draw": "tie", "equal": "tie",
}

# Name fragments that suggest a column's role, for the hints of a failed auto-detect.
ROLE_HINTS = {
    "prompt": ("prompt", "question", "query", "instruction", "context", "conversation", "input"),
    "response_a": ("response_a", "response1", "answer_a", "answer1", "completion_a", "output_a", "model_a"),
    "response_b": ("response_b", "response2", "answer_b", "answer2", "completion_b", "output_b", "model_b"),
    "winner": ("winner", "label", "pref", "choice", "human", "chosen", "better"),
}


def parse_winner(value: Any, path: str, line: int, column: str) -> str:
    """a / b / tie over (first, second) from the spellings datasets use."""
    if isinstance(value, bool) or value is None:
        raise InputError(path, f"no winner (got {value!r})", line=line, field=column,
                         hint="use a, b or tie (or 1, 2, 0)")
    key = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    winner = WINNER_VALUES.get(key.strip().lower())
    if winner is None:
        raise InputError(path, f"unknown winner {value!r}", line=line, field=column,
                         hint="use a, b or tie (or 1, 2, 0, model1, model2)")
    return winner


def text(value: Any, path: str, line: int, column: str) -> str:
    # JSON true/false or numbers where text belongs are usually conversion damage: report, do not guess.
    if not isinstance(value, str):
        raise InputError(path, f"must be text (got {type(value).__name__} {value!r})", line=line, field=column)
    return value


def column(data: Mapping[str, Any], names: tuple[str, ...], path: str, line: int, what: str) -> str:
    """The first of `names` the row has; an error with the `--column` mappings that would work when none."""
    for name in names:
        if name in data:
            return name
    raise InputError(path, f"no {what} column (looked for {', '.join(names)})", line=line,
                     hint=mapping_hint(data))


def looks_like_winner(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip().lower() in WINNER_VALUES


def column_suggestions(data: Mapping[str, Any]) -> list[str]:
    """`--column OURS=THEIRS` options that would map this row's columns onto the roles prefgen reads."""
    suggestions = []
    for role, fragments in ROLE_HINTS.items():
        if role in data:
            continue
        for name in data:
            lowered = name.lower()
            fits = (looks_like_winner(data[name]) if role == "winner" else isinstance(data[name], (str, list)))
            if fits and any(f in lowered for f in fragments) and name not in ROLE_HINTS:
                suggestions.append(f"--column {role}={name}")
                break
    return suggestions


def mapping_hint(data: Mapping[str, Any]) -> str:
    """What to pass: the --column mappings that would work, and --labels when the row has labels but no pair."""
    suggestions = column_suggestions(data)
    hint = f"try {' '.join(suggestions)}" if suggestions else "rename the columns, or map them with --column"
    has_text = any(isinstance(v, str) and len(v) > 20 for v in data.values())
    if any(looks_like_winner(v) for v in data.values()) and not has_text:
        hint += ("; this looks like labels without their pairs: import the pair file with "
                 "--labels THIS_FILE --on ID_COLUMN")
    return hint


def prompt(data: Mapping[str, Any], path: str, line: int) -> str | list[dict[str, str]]:
    name = column(data, PROMPT_COLUMNS, path, line, "prompt")
    value = parse_prompt(data[name], path, line)
    # Instruction datasets (Alpaca, PandaLM) keep the task's input apart from the instruction.
    if name == "instruction" and isinstance(value, str) and isinstance(data.get("input"), str) and data["input"]:
        value = f"{value}\n\n{data['input']}"
    return value


def responses(data: Mapping[str, Any], path: str, line: int) -> tuple[str, str]:
    first = column(data, FIRST_COLUMNS, path, line, "first response")
    second = column(data, SECOND_COLUMNS, path, line, "second response")
    return text(data[first], path, line, first), text(data[second], path, line, second)


def metadata(data: Mapping[str, Any], used: set[str]) -> dict[str, Any]:
    """The row's other columns, as JSON values: kept with the pair."""
    rest = {k: v for k, v in data.items() if k not in used}
    return orjson.loads(orjson.dumps(rest, default=str))


def annotator_columns(data: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in data if k.lower().startswith(ANNOTATOR_PREFIX))


def message_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)


def chosen_and_rejected(data: Mapping[str, Any]) -> bool:
    """A row of one of the chosen/rejected layouts (hh, trl), and not an annotators' row."""
    return "chosen" in data and "rejected" in data and not annotator_columns(data)
