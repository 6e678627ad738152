"""Annotation round-trip: a `prefgen route` batch out to Label Studio or Argilla, their exports back in.

Only the tools' published file formats are used; neither tool (nor its SDK) is needed to write or read them.

Label Studio (https://labelstud.io/guide/tasks, /guide/export#JSON): the batch is a JSON list of tasks,
`{"data": {...}}`, and beside it a labelling config (`<stem>.label_config.xml`) with a Choices tag
("Response 1", "Response 2", "Tie"). Create a project with that config and import the tasks; the JSON
export (a list of tasks with `annotations: [{completed_by, result: [{type, value}], was_cancelled}]`) comes
back through `import-human --format label-studio`. A project labelled with the Pairwise tag instead
(`value.selected` left / right) reads the same way, without ties.

Argilla v2 (`Record.to_dict` / `dataset.records.to_json`): the batch is a JSON list of records
`{"id", "fields": {prompt, response_1, response_2}, "metadata": {pair_id, shown, batch_id}, "responses": {},
"suggestions": {}, "vectors": {}}`; the dataset needs `rg.TextField`s prompt, response_1, response_2 and
`rg.LabelQuestion("preference", labels=["response_1", "response_2", "tie"])`. Its export (the same shape, with
`responses: {"preference": [{"value", "user_id", "status"?}]}`) comes back through `--format argilla`;
discarded and draft responses are not labels.

The two responses are shown in a seeded random order per pair (`shown`: "ab" when response_a is
Response 1), so an annotator's first-slot habit does not become a preference for the canonical first
response; the import maps the answers back. Each annotator's vote is stored under `label-studio:<email or id>`
or `argilla:<user id>`, with the majority as the pair's label; re-importing an export replaces its labels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from prefgen.errors import InputError
from prefgen.pipelines.humans.votes import HumanRead, ImportReport, default_source, labels_of
from prefgen.pipelines.labelling.inputs import read_rows
from prefgen.pipelines.humans.split import side_of
from prefgen.records import flip_winner
from prefgen.storage import route as route_sql
from prefgen.storage.db import Store

FIRST, SECOND, TIE = "Response 1", "Response 2", "Tie"
CHOICES = {FIRST: "a", SECOND: "b", TIE: "tie"}  # in the order shown: a = Response 1
PAIRWISE = {"left": "a", "right": "b"}
ARGILLA_QUESTION = "preference"
ARGILLA_LABELS = {"response_1": "a", "response_2": "b", "tie": "tie"}
ARGILLA_SKIPPED = ("discarded", "draft")

LABEL_STUDIO_CONFIG = f"""<View>
  <Header value="Which response is better?"/>
  <Text name="prompt" value="$prompt"/>
  <Header value="{FIRST}"/>
  <Text name="response_1" value="$response_1"/>
  <Header value="{SECOND}"/>
  <Text name="response_2" value="$response_2"/>
  <Choices name="{ARGILLA_QUESTION}" toName="prompt" choice="single-radio" required="true">
    <Choice value="{FIRST}"/>
    <Choice value="{SECOND}"/>
    <Choice value="{TIE}"/>
  </Choices>
</View>
"""


# -- out -------------------------------------------------------------------------------------------------


def prompt_text(prompt: str, is_chat: bool) -> str:
    """What the annotator reads: the text, or a chat's turns as 'role: content' paragraphs."""
    if not is_chat:
        return prompt
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in orjson.loads(prompt))


def shown_fields(item: dict[str, Any]) -> dict[str, str]:
    """prompt, response_1, response_2 of one routed pair, in the order its annotators see them."""
    first, second = ("response_a", "response_b") if item["shown"] == "ab" else ("response_b", "response_a")
    return {"prompt": prompt_text(item["prompt"], item["is_chat"]), "response_1": item[first],
            "response_2": item[second]}


def label_studio_tasks(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"data": {**shown_fields(item), "pair_id": item["pair_id"], "shown": item["shown"],
                      "batch_id": item["batch_id"]}} for item in items]


def argilla_records(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": item["pair_id"], "fields": shown_fields(item),
             "metadata": {"pair_id": item["pair_id"], "shown": item["shown"], "batch_id": item["batch_id"]},
             "suggestions": {}, "responses": {}, "vectors": {}} for item in items]


def write_batch(fmt: str, out: Path, items: Sequence[dict[str, Any]]) -> list[Path]:
    """Write the batch for the tool; returns the files written (tasks or records, and Label Studio's config)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "label-studio":
        config = out.parent / f"{out.stem}.label_config.xml"
        out.write_bytes(orjson.dumps(label_studio_tasks(items), option=orjson.OPT_INDENT_2))
        config.write_text(LABEL_STUDIO_CONFIG, encoding="utf-8")
        return [out, config]
    out.write_bytes(orjson.dumps(argilla_records(items), option=orjson.OPT_INDENT_2))
    return [out]


# -- back ------------------------------------------------------------------------------------------------


def _annotator(completed_by: Any) -> str:
    """Label Studio gives a user id, or (some exports) the user object."""
    if isinstance(completed_by, dict):
        return f"label-studio:{completed_by.get('email') or completed_by.get('id')}"
    return f"label-studio:{completed_by}"


def _result_vote(result: Sequence[dict[str, Any]]) -> str | None:
    """The answer in one annotation's result list, in the shown order (a = Response 1)."""
    for region in result:
        value = region.get("value") or {}
        if region.get("type") == "choices" and value.get("choices"):
            return CHOICES.get(value["choices"][0], "?")
        if region.get("type") == "pairwise" and value.get("selected"):
            return PAIRWISE.get(value["selected"], "?")
    return None


def label_studio_votes(task: dict[str, Any], path: str, line: int) -> tuple[dict[str, Any], dict[str, str]]:
    """(task data, {annotator: vote in shown order}) of one exported task; cancelled annotations skipped."""
    data = task.get("data")
    if not isinstance(data, dict):
        raise InputError(path, "a task without `data`", line=line, hint="use Label Studio's JSON export")
    votes = {}
    for annotation in task.get("annotations") or []:
        if annotation.get("was_cancelled"):
            continue
        vote = _result_vote(annotation.get("result") or [])
        if vote == "?":
            raise InputError(path, f"unknown answer in {annotation.get('result')!r}", line=line,
                             field="annotations.result", hint=f"the labelling config's choices are {FIRST}, "
                             f"{SECOND} and {TIE}")
        if vote is not None:
            votes[_annotator(annotation.get("completed_by"))] = vote  # a later annotation of a user wins
    return data, votes


def argilla_votes(record: dict[str, Any], path: str, line: int) -> tuple[dict[str, Any], dict[str, str]]:
    metadata = record.get("metadata") or {}
    data = {"pair_id": metadata.get("pair_id") or record.get("id"), "shown": metadata.get("shown")}
    votes = {}
    for response in (record.get("responses") or {}).get(ARGILLA_QUESTION) or []:
        if response.get("status") in ARGILLA_SKIPPED:
            continue
        value = response.get("value")
        if value not in ARGILLA_LABELS:
            raise InputError(path, f"unknown answer {value!r}", line=line, field=f"responses.{ARGILLA_QUESTION}",
                             hint=f"the question's labels are {', '.join(ARGILLA_LABELS)}")
        votes[f"argilla:{response.get('user_id')}"] = ARGILLA_LABELS[value]
    return data, votes


READERS = {"label-studio": label_studio_votes, "argilla": argilla_votes}


def _exported(spec: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for row in read_rows(spec):
        yield row.line, row.data


def read_tool_export(store: Store, spec: str | Path, *, fmt: str, source: str | None = None,
                     skip_bad: bool = False, split: tuple[float, int] | None = None,
                     pin: str | None = None) -> HumanRead:
    """Labels of a Label Studio or Argilla export of a routed batch, on the pairs the store already has."""
    path = str(spec)
    read = HumanRead(ImportReport(source or default_source(path), fmt))
    rows = [(line, *READERS[fmt](item, path, line)) for line, item in _exported(spec)]
    known = route_sql.pair_prompts(store, [str(data.get("pair_id")) for _, data, _ in rows])
    for line, data, votes in rows:
        read.report.rows += 1
        try:
            pair_id = _known_pair(data, known, path, line)
            shown = _shown(data, path, line)
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


def _known_pair(data: dict[str, Any], known: dict[str, str], path: str, line: int) -> str:
    pair_id = data.get("pair_id")
    if pair_id not in known:
        raise InputError(path, f"pair {pair_id!r} is not in this store", line=line, field="pair_id",
                         hint="import the export into the store its batch was routed from")
    return str(pair_id)


def _shown(data: dict[str, Any], path: str, line: int) -> str:
    shown = data.get("shown")
    if shown not in ("ab", "ba"):
        raise InputError(path, f"shown must be ab or ba (got {shown!r})", line=line, field="shown",
                         hint="the task's data must keep the `shown` field prefgen route wrote")
    return shown
