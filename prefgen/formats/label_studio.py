"""Label Studio (https://labelstud.io/guide/tasks, /guide/export#JSON): a routed batch as tasks plus a
labelling config, and the project's JSON export back.

The batch is a JSON list of tasks, `{"data": {...}}`, and beside it a labelling config
(`<stem>.label_config.xml`) with a Choices tag ("Response 1", "Response 2", "Tie"). Create a project with that
config and import the tasks; the JSON export (a list of tasks with `annotations: [{completed_by, result:
[{type, value}], was_cancelled}]`) comes back through `import-human --format label-studio`. A project
labelled with the Pairwise tag instead (`value.selected` left / right) reads the same way, without ties.
Each annotator's vote is stored under `label-studio:<email or id>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefgen.errors import InputError
from prefgen.formats._base import RoutedVotes, ToolFormat, shown_fields, write_json

FIRST, SECOND, TIE = "Response 1", "Response 2", "Tie"
CHOICES = {FIRST: "a", SECOND: "b", TIE: "tie"}  # in the order shown: a = Response 1
PAIRWISE = {"left": "a", "right": "b"}
QUESTION = "preference"

LABEL_STUDIO_CONFIG = f"""<View>
  <Header value="Which response is better?"/>
  <Text name="prompt" value="$prompt"/>
  <Header value="{FIRST}"/>
  <Text name="response_1" value="$response_1"/>
  <Header value="{SECOND}"/>
  <Text name="response_2" value="$response_2"/>
  <Choices name="{QUESTION}" toName="prompt" choice="single-radio" required="true">
    <Choice value="{FIRST}"/>
    <Choice value="{SECOND}"/>
    <Choice value="{TIE}"/>
  </Choices>
</View>
"""


def annotator(completed_by: Any) -> str:
    """Label Studio gives a user id, or (some exports) the user object."""
    if isinstance(completed_by, dict):
        return f"label-studio:{completed_by.get('email') or completed_by.get('id')}"
    return f"label-studio:{completed_by}"


def result_vote(result: Sequence[dict[str, Any]]) -> str | None:
    """The answer in one annotation's result list, in the shown order (a = Response 1)."""
    for region in result:
        value = region.get("value") or {}
        if region.get("type") == "choices" and value.get("choices"):
            return CHOICES.get(value["choices"][0], "?")
        if region.get("type") == "pairwise" and value.get("selected"):
            return PAIRWISE.get(value["selected"], "?")
    return None


class LabelStudioFormat(ToolFormat):
    """Label Studio's JSON export of a `prefgen route` batch; cancelled annotations are skipped, and a later
    annotation of a user wins over an earlier one."""

    name = "label-studio"
    help = "Label Studio's JSON export of a `prefgen route` batch"
    batch_help = "task JSON plus a labelling config beside it"

    def detect(self, row: Mapping[str, Any]) -> bool:
        data = row.get("data")
        return isinstance(data, dict) and "pair_id" in data and "shown" in data

    def read(self, row: Mapping[str, Any], path: str, line: int) -> RoutedVotes:
        data = row.get("data")
        if not isinstance(data, dict):
            raise InputError(path, "a task without `data`", line=line, hint="use Label Studio's JSON export")
        votes = {}
        for annotation in row.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            vote = result_vote(annotation.get("result") or [])
            if vote == "?":
                raise InputError(path, f"unknown answer in {annotation.get('result')!r}", line=line,
                                 field="annotations.result", hint=f"the labelling config's choices are {FIRST}, "
                                 f"{SECOND} and {TIE}")
            if vote is not None:
                votes[annotator(annotation.get("completed_by"))] = vote  # a later annotation of a user wins
        return RoutedVotes(data.get("pair_id"), data.get("shown"), votes)

    def write_batch(self, out: Path, items: Sequence[dict[str, Any]]) -> list[Path]:
        """The tasks, and the labelling config beside them (`<stem>.label_config.xml`)."""
        tasks = [{"data": {**shown_fields(item), "pair_id": item["pair_id"], "shown": item["shown"],
                           "batch_id": item["batch_id"]}} for item in items]
        write_json(out, tasks)
        config = out.parent / f"{out.stem}.label_config.xml"
        config.write_text(LABEL_STUDIO_CONFIG, encoding="utf-8")
        return [out, config]
