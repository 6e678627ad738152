"""One list of store facts for `prefgen stats`, the report page and the model card: they agree, an unpriced cost
is "unknown" in all three, and a new fact is one entry that every place shows."""

from __future__ import annotations

import html
import json
import re

import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.pipelines.reporting import facts
from prefgen.pipelines.reporting.page import write_report
from prefgen.storage.db import Store
from prefgen.train.card import write_model_card
from tests.test_run_failures import inputs, label  # noqa: F401  (a fixture and its helper)


def cell_after(page: str, label_text: str) -> str:
    """The text of the cell right of the first cell holding `label_text` in the page's tables."""
    match = re.search(rf"<td>{re.escape(label_text)}</td><td[^>]*>([^<]*)</td>", page)
    assert match, label_text
    return html.unescape(match.group(1))


def column(page: str, after: str, name: str) -> list[str]:
    """The cells of column `name` in the first table of the page after the text `after`."""
    body = page.split(after, 1)[1]
    first = body[body.index("<table>"):body.index("</table>")]
    names = [html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", first)]
    rows = re.findall(r"<tr>(<td.*?)</tr>", first)
    return [html.unescape(re.findall(r"<td[^>]*>(.*?)</td>", row)[names.index(name)]) for row in rows]


def test_an_unpriced_cost_is_unknown_in_stats_on_the_page_and_on_the_card(inputs, loopback, tmp_path):  # noqa: F811
    result = label(inputs, "--judge", "openai:some-local-model", "--api-base", loopback.openai_base, "--api-key", "k")
    assert result.exit_code == 0, result.output
    db = inputs / "db.duckdb"
    stats = json.loads(CliRunner().invoke(cli, ["stats", "--db", str(db), "--json"]).output)
    assert stats["overview"]["cost"] == "unknown"
    assert stats["jobs"][0]["cost"] == "unknown"

    page = write_report(db, tmp_path / "page.html").path.read_text(encoding="utf-8")
    assert cell_after(page, "cost") == "unknown"  # the store table (it said 0 before)
    assert column(page, "<h3>Label jobs and cost</h3>", "cost") == ["unknown"]
    assert column(page, "<h3>Runs</h3>", "cost") == ["unknown"]

    with Store(db, read_only=True) as store:
        card_facts = facts.read_facts(store, facts.CARD)
    jobs = card_facts["jobs"]
    assert jobs[0]["cost"] == "unknown"
    (tmp_path / "rm").mkdir()
    card = write_model_card(tmp_path / "rm", train={"config": {}}, data={"label_jobs": jobs}).read_text()
    assert "openai:some-local-model: " in card and "cost unknown" in card and "$0.0000" not in card


def test_stats_shows_every_fact_marked_for_it_under_its_title(inputs, loopback):  # noqa: F811
    label(inputs, "--judge", "openai:gpt-4o-mini", "--api-base", loopback.openai_base, "--api-key", "k")
    with Store(inputs / "db.duckdb", read_only=True) as store:
        tables = facts.tables_for(store, facts.STATS)
    titles = [fact.title for fact in facts.facts_for(facts.STATS) if fact.key != "agreement"]
    assert [t for t in tables if not t.startswith("agreement")] == titles
    assert tables["label jobs"][0]["cost"] != "unknown"  # a listed price


def test_a_new_fact_is_one_entry_that_stats_the_page_and_the_card_all_show(inputs, loopback, monkeypatch,  # noqa: F811
                                                                            tmp_path):
    label(inputs, "--judge", "openai:gpt-4o-mini", "--api-base", loopback.openai_base, "--api-key", "k")
    longest = facts.Fact("longest_prompts", "longest prompts",
                         lambda store: store.dicts("SELECT prompt, length(prompt) AS chars FROM pairs "
                                                   "ORDER BY chars DESC, prompt LIMIT 2"),
                         frozenset({facts.STATS, facts.PAGE, facts.CARD}))
    monkeypatch.setattr(facts, "FACTS", (*facts.FACTS, longest))
    stats = json.loads(CliRunner().invoke(cli, ["stats", "--db", str(inputs / "db.duckdb"), "--json"]).output)
    assert [row["chars"] for row in stats["longest_prompts"]] == [3, 3]
    page = write_report(inputs / "db.duckdb", tmp_path / "page.html")
    assert page.sections[-1] == "Longest prompts"
    assert column(page.path.read_text(encoding="utf-8"), '<section id="longest-prompts">', "chars") == ["3", "3"]
    with Store(inputs / "db.duckdb", read_only=True) as store:
        on_card = facts.card_facts(store)
    assert on_card["facts"] == {"longest prompts": stats["longest_prompts"]}
    (tmp_path / "rm").mkdir()
    card = write_model_card(tmp_path / "rm", train={"config": {}}, data=on_card).read_text()
    assert "### Longest prompts" in card and "| prompt | chars |" in card and "| q10 | 3 |" in card


@pytest.mark.parametrize("value, tables", [
    ([{"a": 1}], {"t": [{"a": 1}]}),
    ({"pairs": 3}, {"t": [{"": "pairs", "value": 3}]}),
    ({"x": [{"a": 1}], "y": []}, {"t: x": [{"a": 1}], "t: y": []}),
    (None, {}),
    (facts.MISSING, {}),
])
def test_a_fact_value_becomes_titled_tables(value, tables):
    assert facts.as_tables(facts.Fact("k", "t", lambda store: None), value) == tables
