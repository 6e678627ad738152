"""`prefgen import-human`: human preference labels from HH-RLHF, TRL, pairwise and multi-annotator files.

Every format becomes the same thing: a canonical pair (`records.make_pair`, so the same pair from an AI run
or another file is one pair) with one or more votes, each mapped onto the canonical a/b order. The file is
read and written a batch of rows at a time inside one transaction, so memory does not grow with its length; a
bad row fails the import (naming its line) and nothing of it is kept, unless `skip_bad` is set, in which case
it is skipped and reported.

Formats (`fmt`; "auto" picks one from the first row's columns):
- hh: `{"chosen": transcript, "rejected": transcript}`; the shared conversation before the last
  "Assistant:" turn is the prompt (kept as text, the form HH pools use, so ids match), the last turns are the
  responses. A line whose two conversations differ before that turn is reported, never guessed.
- trl: `prompt`, `chosen`, `rejected`, as text or as lists of {role, content} messages; without `prompt`,
  conversational `chosen`/`rejected` share their prefix (TRL's implicit prompt).
- pairwise: prompt, two responses and a winner (`a`/`b`/`tie`, `1`/`2`/`0`, `model1`/`model2`/`TIE`).
- annotators: prompt, two responses and several `annotator*` columns; every annotator's vote is stored, and
  the majority (more than half of the votes; a tie when no side has that) speaks for the pair.
Column names: the prompt is `prompt`, `query`, `question`, or `instruction` (+ `input`); the responses are
`response_a`/`response_b` or `response1`/`response2`; the winner is `winner`, `human`, `label` or
`preference`. `columns` maps other names onto these.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from prefgen.errors import InputError
from prefgen.pipelines.configs import ImportConfig, configured
from prefgen.pipelines.humans.split import side_of
from prefgen.pipelines.humans.votes import (SINGLE, HumanLabel, HumanRead, ImportReport, Votes, default_source,
                                            labels_of)
from prefgen.pipelines.labelling.inputs import Row, batched, parse_prompt, read_rows
from prefgen.records import Pair, flip_winner, make_pair
from prefgen.storage import human as human_sql
from prefgen.storage.db import Store

FORMATS = ("auto", "hh", "trl", "pairwise", "annotators")
TOOL_FORMATS = ("label-studio", "argilla")  # exports of annotation tools, read by pipelines.annotation

PROMPT_COLUMNS = ("prompt", "query", "question", "instruction")
FIRST_COLUMNS = ("response_a", "response1")
SECOND_COLUMNS = ("response_b", "response2")
WINNER_COLUMNS = ("winner", "human", "label", "preference")
IMPORT_BATCH = 10_000  # rows parsed, checked for repeats and written at a time
ANNOTATOR_PREFIX = "annotator"

# a = the first response, b = the second. Numbers follow PandaLM (1 first, 2 second, 0 tie).
WINNER_VALUES = {
    "a": "a", "response_a": "a", "first": "a", "1": "a", "model1": "a", "model_a": "a",
    "b": "b", "response_b": "b", "second": "b", "2": "b", "model2": "b", "model_b": "b",
    "tie": "tie", "0": "tie", "draw": "tie", "equal": "tie",
}


HH_TURN = re.compile(r"\n\n(?=(?:Human|Assistant):)")
HH_ASSISTANT = "\n\nAssistant:"






# -- values ----------------------------------------------------------------------------------------------


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



def _text(value: Any, path: str, line: int, column: str) -> str:
    # JSON true/false or numbers where text belongs are usually conversion damage: report, do not guess.
    if not isinstance(value, str):
        raise InputError(path, f"must be text (got {type(value).__name__} {value!r})", line=line, field=column)
    return value


def _column(data: dict[str, Any], names: tuple[str, ...], path: str, line: int, what: str) -> str:
    for name in names:
        if name in data:
            return name
    raise InputError(path, f"no {what} column (looked for {', '.join(names)})", line=line,
                     hint=mapping_hint(data))


# Name fragments that suggest a column's role, for the hints of a failed auto-detect.
ROLE_HINTS = {
    "prompt": ("prompt", "question", "query", "instruction", "context", "conversation", "input"),
    "response_a": ("response_a", "response1", "answer_a", "answer1", "completion_a", "output_a", "model_a"),
    "response_b": ("response_b", "response2", "answer_b", "answer2", "completion_b", "output_b", "model_b"),
    "winner": ("winner", "label", "pref", "choice", "human", "chosen", "better"),
}


def _looks_like_winner(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip().lower() in WINNER_VALUES


def column_suggestions(data: dict[str, Any]) -> list[str]:
    """`--column OURS=THEIRS` options that would map this row's columns onto the roles prefgen reads."""
    suggestions = []
    for role, fragments in ROLE_HINTS.items():
        if role in data:
            continue
        for name in data:
            lowered = name.lower()
            fits = (_looks_like_winner(data[name]) if role == "winner" else isinstance(data[name], (str, list)))
            if fits and any(f in lowered for f in fragments) and name not in ROLE_HINTS:
                suggestions.append(f"--column {role}={name}")
                break
    return suggestions


def mapping_hint(data: dict[str, Any]) -> str:
    """What to pass: the --column mappings that would work, and --labels when the row has labels but no pair."""
    suggestions = column_suggestions(data)
    hint = f"try {' '.join(suggestions)}" if suggestions else "rename the columns, or map them with --column"
    has_text = any(isinstance(v, str) and len(v) > 20 for v in data.values())
    if any(_looks_like_winner(v) for v in data.values()) and not has_text:
        hint += ("; this looks like labels without their pairs: import the pair file with "
                 "--labels THIS_FILE --on ID_COLUMN")
    return hint


def _prompt(data: dict[str, Any], path: str, line: int) -> str | list[dict[str, str]]:
    name = _column(data, PROMPT_COLUMNS, path, line, "prompt")
    prompt = parse_prompt(data[name], path, line)
    # Instruction datasets (Alpaca, PandaLM) keep the task's input apart from the instruction.
    if name == "instruction" and isinstance(prompt, str) and isinstance(data.get("input"), str) and data["input"]:
        prompt = f"{prompt}\n\n{data['input']}"
    return prompt


def _responses(data: dict[str, Any], path: str, line: int) -> tuple[str, str]:
    first = _column(data, FIRST_COLUMNS, path, line, "first response")
    second = _column(data, SECOND_COLUMNS, path, line, "second response")
    return _text(data[first], path, line, first), _text(data[second], path, line, second)


def _metadata(data: dict[str, Any], used: set[str]) -> dict[str, Any]:
    rest = {k: v for k, v in data.items() if k not in used}
    return orjson.loads(orjson.dumps(rest, default=str))


# -- formats ---------------------------------------------------------------------------------------------


def split_transcript(text: str, path: str, line: int, column: str) -> tuple[str, str]:
    """An HH transcript -> (conversation before the last Assistant turn, that turn's text)."""
    cut = text.rfind(HH_ASSISTANT)
    if cut < 0:
        raise InputError(path, "no Assistant turn in the transcript", line=line, field=column,
                         hint="HH lines are '\\n\\nHuman: ...\\n\\nAssistant: ...' transcripts")
    return text[:cut], text[cut + len(HH_ASSISTANT):]


def _first_difference(a: str, b: str) -> int:
    turns_a, turns_b = HH_TURN.split(a.strip()), HH_TURN.split(b.strip())
    return next((i for i, (x, y) in enumerate(zip(turns_a, turns_b)) if x.strip() != y.strip()),
                min(len(turns_a), len(turns_b))) + 1


def read_hh(data: dict[str, Any], path: str, line: int) -> Votes:
    chosen = _text(data.get("chosen"), path, line, "chosen")
    rejected = _text(data.get("rejected"), path, line, "rejected")
    prompt, first = split_transcript(chosen, path, line, "chosen")
    other, second = split_transcript(rejected, path, line, "rejected")
    if prompt.strip() != other.strip():
        turn = _first_difference(prompt, other)
        raise InputError(path, f"chosen and rejected conversations differ before the last Assistant turn "
                         f"(first at turn {turn})", line=line, field="rejected",
                         hint="fix the line or drop it with --skip-bad")
    return Votes(prompt, first, second, {SINGLE: "a"}, _metadata(data, {"chosen", "rejected"}))


def _message_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)


def _assistant_text(value: Any, path: str, line: int, column: str) -> str:
    if _message_list(value):
        if len(value) != 1 or value[0]["role"] != "assistant":
            raise InputError(path, "a conversational response must be one assistant message", line=line,
                             field=column, hint="put the earlier turns in the prompt")
        return _text(value[0]["content"], path, line, column)
    return _text(value, path, line, column)


def _implicit_prompt(chosen: list[dict], rejected: list[dict], path: str, line: int) -> Votes:
    if not chosen or not rejected or chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise InputError(path, "conversations must end with an assistant message", line=line, field="chosen")
    if chosen[:-1] != rejected[:-1]:
        raise InputError(path, "chosen and rejected conversations differ before the last assistant message",
                         line=line, field="rejected", hint="fix the row or drop it with --skip-bad")
    prompt = parse_prompt(chosen[:-1], path, line)
    return Votes(prompt, _text(chosen[-1]["content"], path, line, "chosen"),
                 _text(rejected[-1]["content"], path, line, "rejected"), {SINGLE: "a"})


def read_trl(data: dict[str, Any], path: str, line: int) -> Votes:
    chosen, rejected = data.get("chosen"), data.get("rejected")
    if "prompt" not in data and _message_list(chosen) and _message_list(rejected):
        votes = _implicit_prompt(chosen, rejected, path, line)
        return Votes(votes.prompt, votes.first, votes.second, votes.votes,
                     _metadata(data, {"chosen", "rejected"}))
    prompt = parse_prompt(data.get("prompt"), path, line)
    first = _assistant_text(chosen, path, line, "chosen")
    second = _assistant_text(rejected, path, line, "rejected")
    return Votes(prompt, first, second, {SINGLE: "a"}, _metadata(data, {"prompt", "chosen", "rejected"}))


def read_pairwise(data: dict[str, Any], path: str, line: int) -> Votes:
    prompt = _prompt(data, path, line)
    first, second = _responses(data, path, line)
    column = _column(data, WINNER_COLUMNS, path, line, "winner")
    winner = parse_winner(data[column], path, line, column)
    used = {*PROMPT_COLUMNS, "input", *FIRST_COLUMNS, *SECOND_COLUMNS, column}
    return Votes(prompt, first, second, {SINGLE: winner}, _metadata(data, used))


def annotator_columns(data: dict[str, Any]) -> list[str]:
    return sorted(k for k in data if k.lower().startswith(ANNOTATOR_PREFIX))


def read_annotators(data: dict[str, Any], path: str, line: int) -> Votes:
    prompt = _prompt(data, path, line)
    first, second = _responses(data, path, line)
    columns = annotator_columns(data)
    votes = {c: parse_winner(data[c], path, line, c) for c in columns if data[c] not in (None, "")}
    if not votes:
        raise InputError(path, "no annotator labelled this pair", line=line,
                         hint=f"expected columns starting with {ANNOTATOR_PREFIX!r}")
    used = {*PROMPT_COLUMNS, "input", *FIRST_COLUMNS, *SECOND_COLUMNS, *columns}
    return Votes(prompt, first, second, votes, _metadata(data, used))


READERS: dict[str, Callable[[dict[str, Any], str, int], Votes]] = {
    "hh": read_hh, "trl": read_trl, "pairwise": read_pairwise, "annotators": read_annotators,
}


def detect_format(data: dict[str, Any], path: str, line: int) -> str:
    """The layout a row has, from its columns."""
    if annotator_columns(data):
        return "annotators"
    if "chosen" in data and "rejected" in data:
        return "trl" if "prompt" in data or _message_list(data["chosen"]) else "hh"
    if any(c in data for c in WINNER_COLUMNS):
        return "pairwise"
    raise InputError(path, f"cannot tell the format from the columns {sorted(data)}", line=line,
                     hint=f"{mapping_hint(data)}; or pass --format ({', '.join(FORMATS[1:])})")


# -- one file --------------------------------------------------------------------------------------------


def _renamed(row: Row, columns: dict[str, str]) -> dict[str, Any]:
    if not columns:
        return row.data
    back = {theirs: ours for ours, theirs in columns.items()}
    return {back.get(k, k): v for k, v in row.data.items()}


def _canonical(votes: Votes, path: str, line: int, source: str) -> tuple[Pair, dict[str, str]]:
    prompt = votes.prompt
    if (prompt.strip() if isinstance(prompt, str) else prompt) in ("", []):
        # The split is by prompt: an empty prompt would put unrelated pairs in one bucket.
        raise InputError(path, "empty prompt", line=line, field="prompt", hint="drop the row with --skip-bad")
    if votes.first.strip() == votes.second.strip():
        raise InputError(path, "the two responses are identical: there is no preference to learn", line=line,
                         hint="drop the row with --skip-bad")
    # One empty response is kept: "said nothing" losing to an answer is a real human preference.
    source_id = votes.metadata.get("id", votes.metadata.get("idx"))
    pair, swapped = make_pair(prompt, votes.first, votes.second, source=source,
                              source_id=str(source_id) if source_id is not None else None,
                              metadata=votes.metadata)
    return pair, {who: flip_winner(w, swapped) for who, w in votes.votes.items()}





@dataclass
class JoinedRows:
    """The rows of a pair file, each joined with its row of a label file by a shared id column."""

    pairs_spec: str
    labels_spec: str
    on: str
    skip_bad: bool = False
    unlabelled: int = 0
    orphans: list[str] = field(default_factory=list)  # label ids that name no pair (reported with --skip-bad)

    def _label_rows(self) -> human_sql.LabelIndex:
        """The label file, indexed by id; an id on two rows fails, naming the second (in file order, as a row
        without an id does)."""
        index = human_sql.LabelIndex()
        try:
            for batch in batched(read_rows(self.labels_spec), IMPORT_BATCH):
                keys, failure = self._keys(batch, self.labels_spec)
                index.add(keys, [row.line for row in batch[:len(keys)]],
                          [orjson.dumps(row.data, default=str).decode() for row in batch[:len(keys)]])
                self._no_repeat(index)
                if failure:
                    raise failure
        except BaseException:
            index.close()
            raise
        return index

    def _no_repeat(self, index: human_sql.LabelIndex) -> None:
        repeat = index.first_repeat()
        if repeat:
            key, line, first = repeat
            raise InputError(self.labels_spec, f"{self.on} {key!r} is labelled twice (first at line {first})",
                             line=line, field=self.on, hint="keep one label per pair")

    def _keys(self, rows: list[Row], spec: str) -> tuple[list[str], InputError | None]:
        """The ids of `rows` up to the first without one, and the error of that row."""
        keys = []
        for row in rows:
            if row.data.get(self.on) is None:
                return keys, InputError(spec, f"no {self.on!r} value", line=row.line, field=self.on,
                                        hint=f"--on names the id column both files share (columns here: "
                                             f"{sorted(row.data)})")
            keys.append(str(row.data[self.on]))
        return keys, None

    def __iter__(self) -> Iterator[Row]:
        labels = self._label_rows()
        try:
            for batch in batched(read_rows(self.pairs_spec), IMPORT_BATCH):
                keys, failure = self._keys(batch, self.pairs_spec)
                found = labels.take(keys)
                for row, key in zip(batch, keys):
                    if key not in found:
                        self.unlabelled += 1
                        continue
                    label = orjson.loads(found[key])
                    yield Row(row.line, {**row.data, **{k: v for k, v in label.items() if k != self.on}})
                if failure:
                    raise failure
            self._orphans(labels.unused())
        finally:
            labels.close()

    def _orphans(self, unused: list[tuple[str, int]]) -> None:
        for key, line in unused:
            if not self.skip_bad:
                raise InputError(self.labels_spec, f"{self.on} {key!r} names no row of {self.pairs_spec}",
                                 line=line, field=self.on, hint="fix the id, or skip such labels with --skip-bad")
            self.orphans.append(f"{self.labels_spec}:{line}: {self.on} {key!r} names no pair")


Labelled = tuple[Pair, dict[str, str], list[HumanLabel]]  # a valid row: its pair, file-order votes, labels


def labelled_rows(spec: str | Path, report: ImportReport, *, columns: dict[str, str] | None = None,
                  skip_bad: bool = False, split: tuple[float, int] | None = None, pin: str | None = None,
                  labels: str | Path | None = None, on: str = "id") -> Iterator[Labelled]:
    """The valid rows of a file, one at a time, parsed in `report.format` (detected from the first row when
    "auto"); `report` counts the rows and keeps the skipped ones as they go by. `split` (held-out share, seed)
    assigns sides; `pin` puts every label on that side instead. With `labels`, `spec` is a pair file and the
    winners come from the label file's row with the same `on` value."""
    path, source = str(spec), report.source
    rows: Iterable[Row] = JoinedRows(path, str(labels), on, skip_bad) if labels is not None else read_rows(spec)
    for row in rows:
        report.rows += 1
        data = _renamed(row, columns or {})
        try:
            if report.format == "auto":
                report.format = detect_format(data, path, row.line)
            votes = READERS[report.format](data, path, row.line)
            pair, canonical = _canonical(votes, path, row.line, source)
        except InputError as exc:
            if not skip_bad:
                raise
            report.skipped.append(exc.render())
            continue
        side = pin or (side_of(pair.prompt_id, *split) if split else None)
        yield pair, votes.votes, labels_of(pair.id, canonical, source, row.line, side, pinned=pin is not None)
    if isinstance(rows, JoinedRows):
        report.unlabelled_pairs = rows.unlabelled
        report.skipped.extend(rows.orphans)


def read_human(spec: str | Path, *, fmt: str = "auto", source: str | None = None, skip_bad: bool = False,
               columns: dict[str, str] | None = None, split: tuple[float, int] | None = None,
               pin: str | None = None, labels: str | Path | None = None, on: str = "id") -> HumanRead:
    """Parse and validate a whole file into memory (to evaluate on, or to look at); nothing is written here.
    The options are `labelled_rows`'s."""
    result = HumanRead(ImportReport(_source(spec, source, labels), fmt))
    for pair, votes, rows in labelled_rows(spec, result.report, columns=columns, skip_bad=skip_bad, split=split,
                                           pin=pin, labels=labels, on=on):
        result.add(pair.id, votes, rows, pair)
    return result.finish(str(spec))


def _source(spec: str | Path, source: str | None, labels: str | Path | None) -> str:
    return source or default_source(str(labels) if labels is not None else str(spec))


def stream_labels(store: Store, spec: str | Path, read: HumanRead, pin: str | None, **options: Any) -> ImportReport:
    """Read the file a batch of rows at a time and replace the source's labels with them, in one transaction
    (nothing is kept when a row fails, or when a pin would put a prompt's labels on both sides). A pair repeated
    in the file keeps its first occurrence, in this batch or an earlier one (whose label the store holds)."""
    report = read.report
    with human_sql.replacing_source_labels(store, report.source) as writer:
        for batch in batched(labelled_rows(spec, report, pin=pin, **options), IMPORT_BATCH):
            read.next_batch(writer.consensus([pair.id for pair, _, _ in batch]))
            for pair, votes, labels in batch:
                read.add(pair.id, votes, labels, pair)
            writer.save(read.pairs, read.labels)
        read.finish(str(spec))
    return _stored_report(store, report, writer.new_pairs, pin)


def store_labels(store: Store, read: HumanRead, pin: str | None) -> ImportReport:
    """Replace the source's labels with a read held in memory, in one transaction (as `stream_labels`)."""
    with human_sql.replacing_source_labels(store, read.report.source) as writer:
        writer.save(read.pairs, read.labels)
    return _stored_report(store, read.report, writer.new_pairs, pin)


def _stored_report(store: Store, report: ImportReport, new_pairs: int, pin: str | None) -> ImportReport:
    report.pinned = pin
    report.new_pairs = new_pairs
    split = human_sql.split_settings(store)
    report.split = human_sql.split_counts(store) if split or pin else None
    return report


def import_human(store: Store, spec: str | Path, config: ImportConfig | None = None,
                 **options: Any) -> ImportReport:
    """Replace a source's labels with those of a human-label file, read a batch at a time, in one transaction.
    The knobs are `ImportConfig`'s (or its fields as keyword arguments: `fmt`, `source`, `skip_bad`, `columns`,
    `pin`, `labels`, `on`).

    Re-importing a source replaces its labels, so a corrected file is imported by running the command again.
    New labels land on the side of an existing held-out split straight away (the side depends only on the
    prompt and the split's seed), unless `pin` declares the side ("train" or "heldout"). A prompt with a pinned
    label is on the pinned side, whatever the hash says. `fmt` "label-studio" and "argilla" read those tools'
    exports of a batch from `prefgen route` (`prefgen.pipelines.humans.annotation`).
    """
    config = configured(ImportConfig, config, options)
    fmt, source, skip_bad, columns = config.fmt, config.source, config.skip_bad, config.columns
    pin, labels, on = config.pin, config.labels, config.on
    split = human_sql.split_settings(store)
    if fmt in TOOL_FORMATS:
        from prefgen.pipelines.humans.annotation import read_tool_export

        read = read_tool_export(store, spec, fmt=fmt, source=source, skip_bad=skip_bad, split=split, pin=pin)
        return store_labels(store, read, pin)
    read = HumanRead(ImportReport(_source(spec, source, labels), fmt))
    return stream_labels(store, spec, read, pin, columns=columns, skip_bad=skip_bad, split=split, labels=labels,
                         on=on)
