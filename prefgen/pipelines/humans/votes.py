"""What the votes of every import format become: one `human_labels` row per annotator plus the consensus that
speaks for the pair, and the report of an import. Shared by the file formats (`humans.imports`) and the
annotation tools' exports (`humans.annotation`); the formats themselves are in `prefgen.formats`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prefgen.errors import InputError
from prefgen.formats import SINGLE
from prefgen.pipelines.labelling.inputs import split_duckdb_spec
from prefgen.records import Pair


SKIPPED_SHOWN = 10  # skipped rows listed in the summary; --json has every one
MAJORITY = "majority"  # annotator name of the consensus of several annotators


FILE_ORDER = {"a": "first", "b": "second", "tie": "tie"}


@dataclass(frozen=True, slots=True)
class HumanLabel:
    """A row of `human_labels`."""

    pair_id: str
    source: str
    annotator: str
    winner: str
    confidence: float | None
    source_line: int
    split: str | None
    pinned: bool = False  # the side was declared at import (--split): `prefgen split` never moves it


@dataclass
class ImportReport:
    source: str
    format: str
    rows: int = 0
    pairs: int = 0
    new_pairs: int = 0
    labels: int = 0
    duplicates: int = 0
    conflicting: int = 0  # duplicates whose consensus label differs from the first occurrence's
    skipped: list[str] = field(default_factory=list)
    balance: dict[str, int] = field(default_factory=dict)  # consensus winner in the file's order: first/second/tie
    annotators: list[str] = field(default_factory=list)
    split: dict[str, int] | None = None  # labelled pairs per side, when a split exists
    pinned: str | None = None  # the side every label of this import was pinned to (--split)
    unlabelled_pairs: int = 0  # --labels: rows of the pair file with no label
    unmatched_labels: int = 0  # --labels: rows of the label file that name no pair of the pair file

    def lines(self) -> list[str]:
        out = [
            f"imported {self.pairs} labelled pairs ({self.new_pairs} new to the store) from {self.rows} rows "
            f"as source {self.source!r} (format {self.format})",
            f"labels stored: {self.labels} (annotators: {', '.join(self.annotators)})",
            "winners in file order: " + ", ".join(f"{k} {v}" for k, v in self.balance.items()),
        ]
        if self.duplicates:
            out.append(f"duplicate pairs: {self.duplicates} (first occurrence kept; {self.conflicting} "
                       "with a different label)")
        if self.skipped:
            out.append(f"skipped {len(self.skipped)} bad rows (--skip-bad):")
            out.extend(f"  {message}" for message in self.skipped[:SKIPPED_SHOWN])
            if len(self.skipped) > SKIPPED_SHOWN:
                out.append(f"  ... and {len(self.skipped) - SKIPPED_SHOWN} more (--json lists them all)")
        if self.unmatched_labels:
            out.append(f"label rows that name no pair of this file: {self.unmatched_labels} (normal when a label "
                       "file covers more pairs than this one; not imported)")
        if self.unlabelled_pairs:
            out.append(f"pairs without a label in the label file: {self.unlabelled_pairs} (not imported)")
        if self.pinned:
            out.append(f"pinned to {self.pinned}: `prefgen split` will not move these labels, and other labels "
                       "of their prompts follow them")
        if self.split:
            out.append("held-out split: " + ", ".join(f"{k} {v}" for k, v in self.split.items()))
        return out


@dataclass
class HumanRead:
    """Validated rows: the pairs and labels to write (of the whole input, or of the batch being imported), and
    the report of everything read so far."""

    report: ImportReport
    pairs: list[Pair] = field(default_factory=list)
    labels: list[HumanLabel] = field(default_factory=list)
    _consensus: dict[str, str] = field(default_factory=dict)
    _balance: Counter[str] = field(default_factory=Counter)
    _annotators: set[str] = field(default_factory=set)

    def add(self, pair_id: str, file_votes: dict[str, str], labels: list[HumanLabel], pair: Pair | None = None) -> None:
        """Keep the first occurrence of a pair; count later ones, and those whose label differs. `file_votes`
        are in the file's (or the annotators' screen's) order; `pair` is stored when given (tool exports label
        pairs the store already has)."""
        winner = labels[-1].winner  # the consensus row comes last
        if pair_id in self._consensus:
            self.report.duplicates += 1
            self.report.conflicting += int(self._consensus[pair_id] != winner)
            return
        self._consensus[pair_id] = winner
        self._balance[FILE_ORDER[consensus_of(file_votes)]] += 1
        if pair is not None:
            self.pairs.append(pair)
        self.labels.extend(labels)
        self.report.pairs += 1
        self.report.labels += len(labels)
        self._annotators.update(label.annotator for label in labels)

    def next_batch(self, earlier: Mapping[str, str]) -> None:
        """Let the written batch go; `earlier`: the consensus winner stored for any pair of the next batch that
        an earlier batch held, so that a repeat across batches is counted as one within a batch is."""
        self.pairs, self.labels, self._consensus = [], [], dict(earlier)

    def finish(self, path: str) -> HumanRead:
        if not self.report.pairs:
            raise InputError(path, "no labelled pairs to import", hint="the input is empty or every row was skipped")
        self.report.balance = {k: self._balance.get(k, 0) for k in ("first", "second", "tie")}
        self.report.annotators = sorted(self._annotators)
        return self


def majority(votes: Iterable[str]) -> tuple[str, float]:
    """The label more than half of the annotators gave (a tie when none has that), and its share of votes."""
    counts = Counter(votes)
    total = sum(counts.values())
    label, top = counts.most_common(1)[0]
    if top * 2 > total:
        return label, top / total
    return "tie", top / total


def labels_of(pair_id: str, votes: dict[str, str], source: str, line: int, side: str | None, *,
            pinned: bool = False) -> list[HumanLabel]:
    """One label per annotator and the consensus row ('label' for a single label, else 'majority')."""
    if list(votes) == [SINGLE]:
        return [HumanLabel(pair_id, source, SINGLE, votes[SINGLE], 1.0, line, side, pinned)]
    winner, share = majority(votes.values())
    rows = [HumanLabel(pair_id, source, who, w, None, line, side, pinned) for who, w in sorted(votes.items())]
    return [*rows, HumanLabel(pair_id, source, MAJORITY, winner, share, line, side, pinned)]


def consensus_of(votes: dict[str, str]) -> str:
    return votes[SINGLE] if list(votes) == [SINGLE] else majority(votes.values())[0]


def default_source(spec: str) -> str:
    """The import's name: the file's stem, the dataset directory's name, or the DuckDB table's name."""
    duck = split_duckdb_spec(spec)
    return duck[1] if duck else Path(spec).stem
