"""Argilla v2 (`Record.to_dict` / `dataset.records.to_json`): a routed batch as records, and their export back.

The batch is a JSON list of records `{"id", "fields": {prompt, response_1, response_2}, "metadata": {pair_id,
shown, batch_id}, "responses": {}, "suggestions": {}, "vectors": {}}`; the dataset needs `rg.TextField`s prompt,
response_1, response_2 and `rg.LabelQuestion("preference", labels=["response_1", "response_2", "tie"])`. Its
export (the same shape, with `responses: {"preference": [{"value", "user_id", "status"?}]}`) comes back through
`--format argilla`; discarded and draft responses are not labels. Each vote is stored under
`argilla:<user id>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefgen.errors import InputError
from prefgen.formats._base import RoutedVotes, ToolFormat, shown_fields, write_json

QUESTION = "preference"
LABELS = {"response_1": "a", "response_2": "b", "tie": "tie"}  # in the order shown
SKIPPED = ("discarded", "draft")


class ArgillaFormat(ToolFormat):
    """Argilla v2 records of a `prefgen route` batch, with the annotators' responses."""

    name = "argilla"
    help = "Argilla v2 records export of a `prefgen route` batch"
    batch_help = "v2 records JSON"

    def detect(self, row: Mapping[str, Any]) -> bool:
        metadata = row.get("metadata")
        return isinstance(row.get("fields"), dict) and isinstance(metadata, dict) and "shown" in metadata

    def read(self, row: Mapping[str, Any], path: str, line: int) -> RoutedVotes:
        metadata = row.get("metadata") or {}
        votes = {}
        for response in (row.get("responses") or {}).get(QUESTION) or []:
            if response.get("status") in SKIPPED:
                continue
            value = response.get("value")
            if value not in LABELS:
                raise InputError(path, f"unknown answer {value!r}", line=line, field=f"responses.{QUESTION}",
                                 hint=f"the question's labels are {', '.join(LABELS)}")
            votes[f"argilla:{response.get('user_id')}"] = LABELS[value]
        return RoutedVotes(metadata.get("pair_id") or row.get("id"), metadata.get("shown"), votes)

    def write_batch(self, out: Path, items: Sequence[dict[str, Any]]) -> list[Path]:
        records = [{"id": item["pair_id"], "fields": shown_fields(item),
                    "metadata": {"pair_id": item["pair_id"], "shown": item["shown"], "batch_id": item["batch_id"]},
                    "suggestions": {}, "responses": {}, "vectors": {}} for item in items]
        write_json(out, records)
        return [out]
