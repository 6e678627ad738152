"""`prefgen import-human`: human preference labels from any registered format (`prefgen.formats`).

Every format becomes the same thing: a canonical pair (`records.make_pair`, so the same pair from an AI run
or another file is one pair) with one or more votes, each mapped onto the canonical a/b order. The file is
read and written a batch of rows at a time inside one transaction, so memory does not grow with its length; a
bad row fails the import (naming its line) and nothing of it is kept, unless `skip_bad` is set, in which case
it is skipped and reported.

`fmt` names the format; "auto" asks every format's `detect` about the first row. File formats (hh, trl,
pairwise, annotators...) stream; annotation tools' exports (label-studio, argilla) label pairs the store already
has (`prefgen.pipelines.humans.annotation`). `columns` maps other column names onto the ones the file formats
read (`prefgen.formats._columns`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from prefgen import formats
from prefgen.errors import InputError
from prefgen.formats import Votes
from prefgen.pipelines.configs import ImportConfig, configured
from prefgen.pipelines.humans.split import side_of
from prefgen.pipelines.humans.votes import HumanLabel, HumanRead, ImportReport, default_source, labels_of
from prefgen.pipelines.labelling.inputs import Row, batched, read_rows
from prefgen.records import Pair, flip_winner, make_pair
from prefgen.storage import human as human_sql
from prefgen.storage.db import Store

IMPORT_BATCH = 10_000  # rows parsed, checked for repeats and written at a time


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
    unlabelled: int = 0  # pair rows with no label row
    unmatched: int = 0  # label rows that name no pair row: a label file often covers more than one batch

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
            self.unmatched = len(labels.unused())
        finally:
            labels.close()


Labelled = tuple[Pair, dict[str, str], list[HumanLabel]]  # a valid row: its pair, file-order votes, labels


def labelled_rows(spec: str | Path, report: ImportReport, *, columns: dict[str, str] | None = None,
                  skip_bad: bool = False, split: tuple[float, int] | None = None, pin: str | None = None,
                  labels: str | Path | None = None, on: str = "id") -> Iterator[Labelled]:
    """The valid rows of a file, one at a time, parsed in `report.format` (detected from the first row when
    "auto"); `report` counts the rows and keeps the skipped ones as they go by. `split` (held-out share, seed)
    assigns sides; `pin` puts every label on that side instead. With `labels`, `spec` is a pair file and the
    winners come from the label file's row with the same `on` value."""
    path, source = str(spec), report.source
    rows: Iterable[Row] = JoinedRows(path, str(labels), on) if labels is not None else read_rows(spec)
    for row in rows:
        report.rows += 1
        data = _renamed(row, columns or {})
        try:
            if report.format == formats.AUTO:
                report.format = formats.detect(data, path, row.line, among=formats.file_formats()).name
            votes = formats.get(report.format).read(data, path, row.line)
            pair, canonical = _canonical(votes, path, row.line, source)
        except InputError as exc:
            if not skip_bad:
                raise exc.or_skip() from None
            report.skipped.append(exc.render())
            continue
        side = pin or (side_of(pair.prompt_id, *split) if split else None)
        yield pair, votes.votes, labels_of(pair.id, canonical, source, row.line, side, pinned=pin is not None)
    if isinstance(rows, JoinedRows):
        report.unlabelled_pairs = rows.unlabelled
        report.unmatched_labels = rows.unmatched


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


def _tool_export(spec: str | Path, columns: dict[str, str]) -> str | None:
    """The annotation tool whose export `spec` is, by its first row; None for anything else (a file format is
    detected as the file streams, where --skip-bad may skip an unreadable first row)."""
    with closing(read_rows(spec)) as rows:  # closed: a DuckDB table's connection is let go of at once
        first = next(rows, None)
    claimed = [] if first is None else [f for f in formats.tool_formats() if f.detect(_renamed(first, columns))]
    return claimed[0].name if len(claimed) == 1 else None


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
    if fmt == formats.AUTO and labels is None:
        fmt = _tool_export(spec, columns) or fmt
    if fmt != formats.AUTO and isinstance(formats.get(fmt), formats.ToolFormat):
        from prefgen.pipelines.humans.annotation import read_tool_export

        read = read_tool_export(store, spec, fmt=fmt, source=source, skip_bad=skip_bad, split=split, pin=pin)
        return store_labels(store, read, pin)
    read = HumanRead(ImportReport(_source(spec, source, labels), fmt))
    return stream_labels(store, spec, read, pin, columns=columns, skip_bad=skip_bad, split=split, labels=labels,
                         on=on)
