"""Annotation round-trip: a `prefgen route` batch out to Label Studio or Argilla, their exports back in.

Only the tools' published file formats are used; neither tool (nor its SDK) is needed to write or read them.
Each tool is a `prefgen.formats.ToolFormat` (`label_studio.py`, `argilla.py`): it writes a batch and reads one
row of its export; this module puts the export's votes on the pairs of the store.

The two responses are shown in a seeded random order per pair (`shown`: "ab" when response_a is
Response 1), so an annotator's first-slot habit does not become a preference for the canonical first
response; the import maps the answers back. Each annotator's vote is stored under the tool's name and the
annotator's id, with the majority as the pair's label; re-importing an export replaces its labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefgen import formats
from prefgen.errors import InputError
from prefgen.pipelines.humans.votes import HumanRead, ImportReport, default_source, labels_of
from prefgen.pipelines.labelling.inputs import read_rows
from prefgen.pipelines.humans.split import side_of
from prefgen.records import flip_winner
from prefgen.storage import route as route_sql
from prefgen.storage.db import Store


def _exported(spec: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for row in read_rows(spec):
        yield row.line, row.data


def read_tool_export(store: Store, spec: str | Path, *, fmt: str, source: str | None = None,
                     skip_bad: bool = False, split: tuple[float, int] | None = None,
                     pin: str | None = None) -> HumanRead:
    """Labels of a Label Studio or Argilla export of a routed batch, on the pairs the store already has."""
    path = str(spec)
    read = HumanRead(ImportReport(source or default_source(path), fmt))
    tool = formats.get(fmt)
    rows = [(line, tool.read(item, path, line)) for line, item in _exported(spec)]
    known = route_sql.pair_prompts(store, [str(routed.pair_id) for _, routed in rows])
    for line, routed in rows:
        read.report.rows += 1
        votes = routed.votes
        try:
            pair_id = _known_pair(routed.pair_id, known, path, line)
            shown = _shown(routed.shown, path, line)
        except InputError as exc:
            if not skip_bad:
                raise
            read.report.skipped.append(exc.render())
            continue
        if not votes:
            continue  # not labelled yet: the batch may be exported half done
        canonical = {who: flip_winner(vote, shown == "ba") for who, vote in votes.items()}
        side = pin or (side_of(known[pair_id], *split) if split else None)
        read.add(pair_id, votes, labels_of(pair_id, canonical, read.report.source, line, side, pinned=pin is not None))
    return read.finish(path)


def _known_pair(pair_id: Any, known: dict[str, str], path: str, line: int) -> str:
    if pair_id not in known:
        raise InputError(path, f"pair {pair_id!r} is not in this store", line=line, field="pair_id",
                         hint="import the export into the store its batch was routed from")
    return str(pair_id)


def _shown(shown: Any, path: str, line: int) -> str:
    if shown not in ("ab", "ba"):
        raise InputError(path, f"shown must be ab or ba (got {shown!r})", line=line, field="shown",
                         hint="the task's data must keep the `shown` field prefgen route wrote")
    return shown
