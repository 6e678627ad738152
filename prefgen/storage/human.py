"""SQL for human labels: imports, the held-out split, and the AI/human pairs that agreement is measured on."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from prefgen.errors import PrefgenError
from prefgen.records import Pair
from prefgen.storage.db import Store, cleanup, connect, registered
from prefgen.storage.labels import save_pairs

def has_human_tables(store: Store) -> bool:
    """False for a store opened read-only before the human-label migration existed."""
    _, rows = store.query("SELECT count(*) FROM information_schema.tables WHERE table_name = 'human_labels'")
    return rows[0][0] > 0


def has_routing(store: Store) -> bool:
    """False for a store opened read-only before routing existed (m009)."""
    _, rows = store.query("SELECT count(*) FROM information_schema.tables WHERE table_name = 'route_items'")
    return rows[0][0] > 0


def selection_filter(store: Store, column: str, selection: str = "unbiased") -> str:
    """A SQL condition on a pair id column. "unbiased" leaves out pairs routed by rank: they were picked
    for looking wrong, so agreement measured on them would be biased (the random slice and plain imports stay;
    calibration weighs them instead, `storage.calibration`). "routed" keeps only those; "all" keeps every pair."""
    if selection == "all" or not has_routing(store):
        return "false" if selection == "routed" else "true"
    negate = "NOT " if selection == "unbiased" else ""
    return f"{column} {negate}IN (SELECT pair_id FROM routed_pairs WHERE selection = 'routed')"


def _count(store: Store, sql: str, params: Sequence[Any] | None = None) -> int:
    return store.query(sql, params)[1][0][0]


@dataclass
class SourceLabels:
    """The labels of one source being replaced, a batch at a time (see `replacing_source_labels`)."""

    store: Store
    source: str
    new_pairs: int = 0  # pairs that were new to the store, once the import is done

    def save(self, pairs: Sequence[Pair], labels: Sequence[Any]) -> None:
        """Store a batch's pairs (insert-or-ignore) and labels."""
        save_pairs(self.store, pairs)
        self.store.insert_rows("human_labels", labels, on_conflict="error")

    def consensus(self, pair_ids: Sequence[str]) -> dict[str, str]:
        """The consensus winner this import stored already for any of `pair_ids` (by an earlier batch)."""
        with registered(self.store.con, "_import_ids", pa.table({"pair_id": list(pair_ids)})):
            rows = self.store.con.execute(
                """SELECT h.pair_id, h.winner FROM human_labels h SEMI JOIN _import_ids i ON i.pair_id = h.pair_id
                   WHERE h.source = ? AND h.annotator IN ('label', 'majority')""", [self.source]
            ).fetchall()
        return dict(rows)


class LabelIndex:
    """The rows of a label file by id (`import-human --labels`), held in an in-memory DuckDB database: a few
    dozen bytes a row where a Python dict of the rows takes hundreds. Rows are kept as JSON text."""

    def __init__(self) -> None:
        self.con = connect(":memory:")
        self.con.execute("CREATE TABLE rows (key VARCHAR, line BIGINT, data VARCHAR); CREATE TABLE used (key VARCHAR)")

    def add(self, keys: Sequence[str], lines: Sequence[int], data: Sequence[str]) -> None:
        with registered(self.con, "_rows", pa.table({"key": keys, "line": lines, "data": data})):
            self.con.execute("INSERT INTO rows SELECT key, line, data FROM _rows")

    def first_repeat(self) -> tuple[str, int, int] | None:
        """(id, line, line of its first row) of the first row whose id an earlier row has, if any."""
        rows = self.con.execute(
            """SELECT key, line, first FROM (SELECT key, line, min(line) OVER (PARTITION BY key) AS first FROM rows)
               WHERE line > first ORDER BY line LIMIT 1"""
        ).fetchall()  # fetched whole: DuckDB refuses other work on a connection with a result left open
        return rows[0] if rows else None

    def take(self, keys: Sequence[str]) -> dict[str, str]:
        """id -> row data of those of `keys` that have a row; they count as used."""
        with registered(self.con, "_keys", pa.table({"key": list(keys)})):
            found = self.con.execute("SELECT key, data FROM rows SEMI JOIN _keys USING (key)").fetchall()
            self.con.execute("INSERT INTO used SELECT key FROM rows SEMI JOIN _keys USING (key)")
        return dict(found)

    def unused(self) -> list[tuple[str, int]]:
        """(id, line) of the rows no `take` asked for, in file order."""
        return self.con.execute("SELECT key, line FROM rows ANTI JOIN used USING (key) ORDER BY line").fetchall()

    def close(self) -> None:
        self.con.close()


@contextmanager
def replacing_source_labels(store: Store, source: str) -> Iterator[SourceLabels]:
    """Replace every label of `source` with the batches saved inside the block, in one transaction; labels of
    prompts with a pinned label then follow the pin. An error inside the block, or a pin that would put a
    prompt's labels on both sides, keeps nothing of the import."""
    with store.transaction():
        before = _count(store, "SELECT count(*) FROM pairs")
        store.con.execute("DELETE FROM human_labels WHERE source = ?", [source])
        writer = SourceLabels(store, source)
        yield writer
        writer.new_pairs = _count(store, "SELECT count(*) FROM pairs") - before
        conflicts = pin_conflicts(store)
        if conflicts:  # raised inside the transaction: nothing of this import is kept
            raise PrefgenError(
                f"{len(conflicts)} prompt(s) would have labels pinned to both sides (e.g. prompt "
                f"{conflicts[0]['prompt_id'][:12]}: {', '.join(conflicts[0]['pins'])}); a prompt's labels must "
                "all be on one side: drop those rows, or re-import the other source without --split")
        follow_pins(store)


def pin_conflicts(store: Store) -> list[dict[str, Any]]:
    """Prompts with labels pinned to both sides (by different imports), and the imports that pinned them."""
    return store.dicts(
        """SELECT p.prompt_id, list(DISTINCT h.source || ':' || h.split ORDER BY h.source || ':' || h.split) AS pins
           FROM human_labels h JOIN pairs p ON p.id = h.pair_id
           WHERE h.pinned GROUP BY p.prompt_id HAVING count(DISTINCT h.split) > 1 ORDER BY 1"""
    )


def follow_pins(store: Store) -> None:
    """Put every unpinned label of a prompt that has a pinned label on the pinned side."""
    store.con.execute(
        """UPDATE human_labels SET split = pin.side
           FROM pairs p,
                (SELECT DISTINCT q.prompt_id, h.split AS side FROM human_labels h JOIN pairs q ON q.id = h.pair_id
                 WHERE h.pinned) pin
           WHERE p.id = human_labels.pair_id AND pin.prompt_id = p.prompt_id AND NOT human_labels.pinned
             AND human_labels.split IS DISTINCT FROM pin.side"""
    )


def pair_split_origin(store: Store) -> dict[str, dict[str, int]]:
    """Labelled pairs per side, split into pinned at import and assigned by `split`."""
    _, rows = store.query(
        """SELECT origin, side, count(*) FROM (
               SELECT CASE WHEN bool_or(h.pinned) THEN 'pinned' ELSE 'assigned' END AS origin,
                      any_value(h.split) AS side
               FROM human_labels h WHERE h.annotator IN ('label', 'majority') AND h.split IS NOT NULL
               GROUP BY h.pair_id)
           GROUP BY ALL"""
    )
    out: dict[str, dict[str, int]] = {"pinned": {}, "assigned": {}}
    for origin, side, count in rows:
        out[origin][side] = count
    return out


def split_settings(store: Store) -> tuple[float, int] | None:
    _, rows = store.query("SELECT heldout, seed FROM human_split WHERE id = 1")
    return (rows[0][0], rows[0][1]) if rows else None


def has_verdicts(store: Store) -> bool:
    """Whether any label job has derived a pair preference (an AI verdict) in this store."""
    return _count(store, "SELECT count(*) FROM (SELECT 1 FROM pair_preferences LIMIT 1)") > 0


def has_labels(store: Store) -> bool:
    return _count(store, "SELECT count(*) FROM (SELECT 1 FROM human_labels LIMIT 1)") > 0


def unit_hash_sql(seed: str, prompt_id: str) -> str:
    """SQL for `prefgen.pipelines.humans.split.unit_hash`: the first 8 bytes of sha256("split\\0SEED\\0PROMPT") / 2**64.

    Exactly the Python value (the cast to DOUBLE rounds like Python's int / 2**64), so a split made in SQL and
    a side assigned at import in Python agree on every prompt."""
    return (f"('0x' || substr(sha256('split' || chr(0) || {seed}::VARCHAR || chr(0) || {prompt_id}), 1, 16))"
            f"::UBIGINT::DOUBLE / 18446744073709551616.0")


def save_split(store: Store, heldout: float, seed: int) -> dict[str, dict[str, int]]:
    """Record the split's settings and put every unpinned label on its prompt's side: the pinned side when the
    prompt has a pinned label, else heldout when its unit hash is below `heldout`. Returns prompts per side,
    for the prompts a pinned label decided ('pinned') and those this split assigned ('assigned').

    All in SQL, so a split of millions of labels holds no prompt list in Python."""
    sides = f"""
        SELECT p.prompt_id, bool_or(h.pinned) AS pinned,
               coalesce(any_value(h.split) FILTER (WHERE h.pinned),
                        CASE WHEN {unit_hash_sql("$seed", "p.prompt_id")} < $heldout
                             THEN 'heldout' ELSE 'train' END) AS side
        FROM human_labels h JOIN pairs p ON p.id = h.pair_id GROUP BY p.prompt_id"""
    with store.transaction():
        store.insert_rows("human_split", [{"id": 1, "heldout": heldout, "seed": seed}], on_conflict="replace")
        store.con.execute(f"CREATE OR REPLACE TEMP TABLE _sides AS {sides}", {"seed": seed, "heldout": heldout})
        with cleanup(lambda: store.con.execute("DROP TABLE IF EXISTS _sides")):
            store.con.execute(
                """UPDATE human_labels SET split = s.side
                   FROM pairs p, _sides s
                   WHERE p.id = human_labels.pair_id AND s.prompt_id = p.prompt_id AND NOT human_labels.pinned"""
            )
            _, rows = store.query("SELECT pinned, side, count(*) FROM _sides GROUP BY ALL")
    prompts: dict[str, dict[str, int]] = {"pinned": {"train": 0, "heldout": 0}, "assigned": {"train": 0, "heldout": 0}}
    for pinned, side, count in rows:
        prompts["pinned" if pinned else "assigned"][side] = count
    return prompts


def split_counts(store: Store) -> dict[str, int]:
    """Labelled pairs per side ('unassigned' before any split)."""
    _, rows = store.query(
        "SELECT coalesce(split, 'unassigned'), count(*) FROM human_pair_labels GROUP BY 1 ORDER BY 1"
    )
    return dict(rows)


def pair_verdicts(store: Store, *, judge: str | None = None, split: str | None = None,
                  selection: str = "unbiased") -> list[dict[str, Any]]:
    """Per label job and human-labelled pair: the human winner, the judge's unfiltered P(a better) (the
    principle-weighted mean over every principle with a swap-averaged answer, kept or not), and the filtered
    outcome (`kept`, `chosen`) from pair_preferences. `selection`: see `selection_filter`."""
    return store.dicts(
        f"""WITH weighted AS (
               SELECT pr.job_id, pr.pair_id,
                      sum(pr.p_a * coalesce(w.weight, 1.0)) / sum(coalesce(w.weight, 1.0)) AS p_a
               FROM preferences pr
               JOIN label_jobs j USING (job_id)
               LEFT JOIN principles w ON w.constitution_id = j.constitution_id AND w.principle_id = pr.principle_id
               WHERE pr.p_a IS NOT NULL
               GROUP BY pr.job_id, pr.pair_id
           )
           SELECT j.job_id, j.judge_spec, h.pair_id, h.winner AS human, wt.p_a,
                  coalesce(pp.kept, false) AS kept, pp.chosen
           FROM weighted wt
           JOIN label_jobs j ON j.job_id = wt.job_id
           JOIN human_pair_labels h ON h.pair_id = wt.pair_id
           LEFT JOIN pair_preferences pp ON pp.job_id = wt.job_id AND pp.pair_id = wt.pair_id
           WHERE ($1 IS NULL OR $1 IN (j.judge_spec, j.job_id)) AND ($2 IS NULL OR h.split = $2)
             AND ({selection_filter(store, 'h.pair_id', selection)})
           ORDER BY j.job_id, h.pair_id""",
        [judge, split],
    )


def principle_verdicts(store: Store, *, judge: str | None = None, split: str | None = None) -> list[dict[str, Any]]:
    """Per label job, principle and human-labelled pair: the principle's swap-averaged choice and whether it
    passed the filter (pairs routed by rank left out)."""
    return store.dicts(
        f"""SELECT pr.job_id, pr.principle_id, pr.pair_id, pr.chosen, pr.kept, h.winner AS human
           FROM preferences pr
           JOIN label_jobs j USING (job_id)
           JOIN human_pair_labels h ON h.pair_id = pr.pair_id
           WHERE pr.chosen IS NOT NULL
             AND ($1 IS NULL OR $1 IN (j.judge_spec, j.job_id)) AND ($2 IS NULL OR h.split = $2)
             AND ({selection_filter(store, 'pr.pair_id')})
           ORDER BY pr.job_id, pr.principle_id, pr.pair_id""",
        [judge, split],
    )


def annotator_votes(store: Store, *, split: str | None = None) -> list[dict[str, Any]]:
    """Every individual annotator's label (not the consensus rows), for inter-annotator agreement."""
    return store.dicts(
        """SELECT source, pair_id, annotator, winner FROM human_labels
           WHERE annotator NOT IN ('label', 'majority') AND ($1 IS NULL OR split = $1)
           ORDER BY source, pair_id, annotator""",
        [split],
    )
