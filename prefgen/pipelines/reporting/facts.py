"""What the store says about itself, written once: the facts `prefgen stats`, `prefgen report` (the page) and the
model card show.

A `Fact` is a key, a title, a reader (SQL lives in `storage/`; a reader may compute over it) and the places it
is shown. Each place reads its facts through `read_facts`, so the same number is the same everywhere: the cost
of a label job with no price (no list price, no --price-in / --price-out) is "unknown" in every place, never
$0, which would claim nothing was spent.

A new report section is one `Fact` in `FACTS`: `stats` prints it as a table, the page gives it a section of its
own (with its table; `page.py` draws plots for the sections it knows), and the card shows it as a table when it
is marked for the card. A fact's value is rows (a list of dicts), key-value pairs (a dict of plain values), or titled tables (a dict
of row lists).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# At import, not inside a query: scipy and scikit-learn load before the store is held.
from prefgen.pipelines.humans.agreement import agreement_summary
from prefgen.storage import report as rq
from prefgen.storage import stats as st
from prefgen.storage.batches import job_batches
from prefgen.storage.db import Store

STATS, PAGE, CARD = "stats", "page", "card"
UNKNOWN = "unknown"
MISSING = object()  # the fact's table is not in this store (written by an older prefgen, opened read-only)


@dataclass(frozen=True)
class Fact:
    key: str
    title: str
    read: Callable[[Store], Any]
    shown_in: frozenset[str] = frozenset({STATS, PAGE})


def _unpriced_jobs(store: Store) -> set[str]:
    """Label jobs with no price (no list price and no --price-in / --price-out): their cost is unknown, not 0."""
    from prefgen.judge.pricing import resolve_price

    return {row["job_id"] for row in st.job_pricing(store)
            if resolve_price(row["model"], row["backend"], row["price_in"], row["price_out"]) is None}


def _unknown_cost(rows: list[dict[str, Any]], unpriced: set[str], columns: Iterable[str]) -> list[dict[str, Any]]:
    return [{**row, **{c: UNKNOWN for c in columns if c in row}} if row.get("job_id") in unpriced else row
            for row in rows]


def overview(store: Store) -> dict[str, Any]:
    """Pairs, judgements, answers, errors, tokens and cost over the whole store."""
    facts, unpriced = st.overview(store), _unpriced_jobs(store)
    if unpriced:
        jobs = len(st.jobs(store))
        facts["cost"] = (UNKNOWN if len(unpriced) == jobs
                         else f"{facts['cost']:.4g} + {UNKNOWN} ({len(unpriced)} unpriced job(s))")
    return facts


def jobs(store: Store) -> list[dict[str, Any]]:
    """Per label job: judge, pairs, kept pairs and what they cost."""
    return _unknown_cost(st.jobs(store), _unpriced_jobs(store), ("cost", "cost_per_kept_pair"))


def runs(store: Store) -> list[dict[str, Any]]:
    """Per label run: when, how long, calls, speed, what it spent and how it ended."""
    return _unknown_cost(rq.runs(store), _unpriced_jobs(store), ("cost",))


def rm_runs(store: Store) -> list[dict[str, Any]]:
    """Reward-model training runs, the base named as a reader knows it (a hub id, not a site-packages path)."""
    from prefgen.train.card import base_display_name

    return [{**run, "base_model": base_display_name(run["base_model"])} for run in rq.rm_runs(store)]


FACTS: tuple[Fact, ...] = (
    Fact("overview", "store", overview),
    Fact("jobs", "label jobs", jobs, frozenset({STATS, PAGE, CARD})),
    Fact("runs", "label runs", runs, frozenset({PAGE})),
    Fact("judge_latency", "judge calls: latency, retries, errors", rq.judge_latency, frozenset({PAGE})),
    Fact("error_reasons", "most frequent call failures", rq.error_reasons, frozenset({PAGE})),
    Fact("drop_reasons", "drops by reason", st.drop_reasons),
    Fact("position_bias", "position bias: share of first-slot verdicts per judge and principle", st.position_bias),
    Fact("consistency", "consistency across orders per judge and principle", st.consistency),
    Fact("confidence_histogram", "confidence histogram", st.confidence_histogram),
    Fact("batches", "provider batches (label --batch)", job_batches, frozenset({STATS})),
    Fact("human_overview", "human labels per import and side", rq.human_overview, frozenset({PAGE})),
    Fact("agreement", "agreement with human labels", agreement_summary, frozenset({STATS, PAGE, CARD})),
    Fact("calibrations", "judge calibrations", rq.calibrations, frozenset({PAGE})),
    Fact("mixes", "training mixes", rq.mixes, frozenset({PAGE})),
    Fact("mix_trials", "mix --auto trials", rq.mix_trials, frozenset({PAGE})),
    Fact("rm_runs", "reward-model training runs", rm_runs, frozenset({PAGE})),
    Fact("rm_evals", "reward-model evaluations", rq.rm_evals, frozenset({PAGE})),
)


def facts_for(place: str) -> list[Fact]:
    return [fact for fact in FACTS if place in fact.shown_in]


def read_facts(store: Store, place: str) -> dict[str, Any]:
    """The value of every fact shown in `place`, by key; `MISSING` for one whose table the store lacks."""
    import duckdb

    data = {}
    for fact in facts_for(place):
        try:
            data[fact.key] = fact.read(store)
        except duckdb.CatalogException:
            data[fact.key] = MISSING
    return data


def as_tables(fact: Fact, value: Any) -> dict[str, list[dict[str, Any]]]:
    """A fact's value as titled tables: rows as they are, key-value pairs as rows, titled tables under the
    fact's title."""
    if value is MISSING or value is None:
        return {}
    if isinstance(value, dict):
        if value and all(isinstance(v, list) for v in value.values()):
            return {f"{fact.title}: {title}": rows for title, rows in value.items()}
        return {fact.title: [{"": k, "value": v} for k, v in value.items()]}
    return {fact.title: list(value)}


def key_of(title: str) -> str:
    """A table title as a JSON key: "judge vs human" -> "judge_vs_human"."""
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def keyed_facts(store: Store, place: str) -> dict[str, Any]:
    """Every fact shown in `place` by its key, for machine output (`stats --json`): rows, key-value pairs, or
    titled tables under keys made from their titles. Facts whose table the store lacks are left out."""
    data = {}
    for key, value in read_facts(store, place).items():
        if value is MISSING or value is None:
            continue
        if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
            value = {key_of(title): rows for title, rows in value.items()}
        data[key] = value
    return data


def titled_tables(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """`keyed_facts` as the titled tables a terminal shows."""
    by_key = {fact.key: fact for fact in FACTS}
    tables: dict[str, list[dict[str, Any]]] = {}
    for key, value in data.items():
        fact = by_key[key]
        if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
            value = {sub.replace("_", " "): rows for sub, rows in value.items()}
        tables.update(as_tables(fact, value))
    return tables


def tables_for(store: Store, place: str) -> dict[str, list[dict[str, Any]]]:
    """Every fact shown in `place`, as titled tables (what `prefgen stats` prints)."""
    data = read_facts(store, place)
    return {title: rows for fact in facts_for(place) for title, rows in as_tables(fact, data[fact.key]).items()}


def judge_agreement(agreement: dict[str, list[dict[str, Any]]] | None) -> dict[str, float]:
    """Each judge's agreement with the humans after the filter (ties excluded), from the agreement fact."""
    rows = (agreement or {}).get("judge vs human") or []
    return {row["judge"]: row["agree_after"] for row in rows if row.get("agree_after") is not None}


CARD_COLUMNS = {"jobs": ("judge_spec", "pairs", "kept_pairs", "cost")}  # what the card keeps of a fact's rows


def card_facts(store: Store) -> dict[str, Any]:
    """What the model card says about the store: the label jobs and their cost, each judge's agreement with the
    humans, and any other fact marked for the card, as titled tables."""
    data = {k: v for k, v in read_facts(store, CARD).items() if v is not MISSING}
    jobs = [{k: job[k] for k in CARD_COLUMNS["jobs"]} for job in data.get("jobs") or []]
    others = {title: rows for fact in facts_for(CARD) if fact.key not in ("jobs", "agreement") and fact.key in data
              for title, rows in as_tables(fact, data[fact.key]).items()}
    return {"label_jobs": jobs, "judge_agreement": judge_agreement(data.get("agreement")), "facts": others}
