"""Judge/human agreement on the HH-RLHF pool, with simulated judges of known quality and position bias.

For every setting (q, b), q in {0.6, 0.75, 0.9} and b in {0, 0.3}:

1. the loopback judge (`tests/loopback_server.py`, OpenAI chat completions with logprobs, confidence 0.9 +- 0.09) is
   given a belief per pair: the human winner from `pool_labels.jsonl` with probability q, the other response
   otherwise (drawn once per pair from a seeded hash, so both orders and every principle share it). On every
   call it answers the first slot with probability b, and its belief otherwise;
2. `pool.jsonl` is labelled by the real pipeline (`run_label`, openai backend over HTTP, two principles per
   pair, both orders) into a fresh DuckDB file, with the human winners imported as human labels
   (`import_human`, pairwise format, from a file written to a temp dir);
3. `agreement_report` gives agreement with the human winners before and after the consistency/confidence
   filter, and the share of pairs kept. `single_order` is what a judge asked once (a first, no swap) would
   have said: the baseline that position bias degrades.

Each answer's confidence is drawn in 0.9 +- 0.09, so an inconsistent principle averages to a P(a better) near,
not at, 0.5 and counts as a (weak) verdict before the filter, as with a real judge. "Ties as half" counts
the pairs the judge calls an exact tie as half right.

    .venv/bin/python benchmarks/agreement_real.py
    .venv/bin/python benchmarks/agreement_real.py --q 0.75 --b 0.3 --limit 200
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from prefgen.judge.prompts import neutralise  # noqa: E402
from prefgen.pipelines.humans.agreement import agreement_report  # noqa: E402
from prefgen.pipelines.humans.imports import import_human  # noqa: E402
from prefgen.pipelines.labelling import LabelConfig, run_label  # noqa: E402
from prefgen.records import normalise_text  # noqa: E402
from prefgen.storage.db import Store  # noqa: E402
from tests.loopback_server import Behaviour, LoopbackServer  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless"
CONFIDENCE = 0.9
SPREAD = 0.09  # each answer's confidence is drawn in [0.81, 0.99], as a real judge's varies
CONSTITUTION = """\
name: agreement-benchmark
version: 1
principles:
  - id: harmless
    text: Choose the response that is less harmful and does not help with dangerous, illegal or unethical acts.
  - id: helpful
    text: Choose the response that answers the question more directly and usefully.
sampling:
  per_pair: 2
  seed: 0
"""


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def write_inputs(directory: Path, limit: int | None) -> tuple[Path, Path, Path, list[dict], dict[str, str]]:
    """The constitution, the pool (possibly cut to `limit`) and its human winners as a pairwise label file."""
    pool = read_jsonl(DATA / "pool.jsonl")[:limit]
    winners = {row["id"]: row["human_winner"] for row in read_jsonl(DATA / "pool_labels.jsonl")}
    constitution = directory / "constitution.yaml"
    constitution.write_text(CONSTITUTION, encoding="utf-8")
    pairs = directory / "pool.jsonl"
    pairs.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in pool))
    human = directory / "pool_labels_pairwise.jsonl"
    human.write_bytes(b"".join(orjson.dumps({**row, "winner": winners[row["id"]]}) + b"\n" for row in pool))
    return constitution, pairs, human, pool, winners


def unit(seed: str, key: str) -> float:
    return int.from_bytes(hashlib.sha256(f"{seed}\x00{key}".encode()).digest()[:8], "big") / 2**64


def simulated_truth(pool: list[dict], winners: dict[str, str], q: float, salt: str = "") -> Callable[[str, str], str]:
    """truth(first, second) -> "A"/"B": the response this judge believes is better, right with probability q
    (`salt`: another draw of which pairs it gets wrong)."""
    believed: dict[frozenset[str], str] = {}
    for row in pool:
        a, b = (neutralise(normalise_text(row[k])) for k in ("response_a", "response_b"))
        human_better, other = (a, b) if winners[row["id"]] == "a" else (b, a)
        believed[frozenset((a, b))] = human_better if unit(f"q={q}{salt}", row["id"]) < q else other

    def truth(first: str, second: str) -> str:
        return "A" if believed.get(frozenset((first, second)), first) == first else "B"

    return truth


def single_order_agreement(store: Store, job_id: str) -> float | None:
    """Agreement of the a-first answers alone (no swap) with the human winners, over the principles judged."""
    _, rows = store.query(
        """SELECT avg(CASE WHEN (j.verdict = 'A') = (h.winner = 'a') THEN 1.0 ELSE 0.0 END)
           FROM judgements j JOIN human_pair_labels h USING (pair_id)
           WHERE j.job_id = ? AND j.ordering = 'ab' AND j.status = 'ok' AND h.winner <> 'tie'""",
        [job_id],
    )
    return rows[0][0]


def run_setting(server: LoopbackServer, inputs: tuple, directory: Path, q: float, b: float) -> dict:
    constitution, pairs, human, pool, winners = inputs
    server.reset(Behaviour(first_bias=b, truth=simulated_truth(pool, winners, q), confidence=CONFIDENCE,
                           confidence_spread=SPREAD))
    db = directory / f"q{q}-b{b}.duckdb"
    with Store(db) as store:
        import_human(store, human, fmt="pairwise", source="pool_labels")
    started = time.perf_counter()
    summary = run_label(LabelConfig(constitution=constitution, pairs=str(pairs), judge="openai:loopback-judge",
                                    db=db, api_base=server.openai_base, api_key="loopback", concurrency=32,
                                    skip_bad=True, progress=False))
    elapsed = time.perf_counter() - started
    with Store(db) as store:
        (job,) = agreement_report(store, seed=0).jobs
        single = single_order_agreement(store, summary.job_id)
    return {
        "q": q, "b": b, "pairs": job.pairs, "calls": summary.calls_sent, "seconds": elapsed,
        "first_slot": summary.first_slot_share, "single_order": single,
        "before": job.before.ties_excluded.value, "after": job.after.ties_excluded.value,
        "after_ci": (job.after.ties_excluded.low, job.after.ties_excluded.high),
        "before_half": job.before.ties_half.value, "after_half": job.after.ties_half.value,
        "kappa_before": job.before.kappa, "kappa_after": job.after.kappa, "kept": job.kept_share,
    }


def print_results(results: list[dict]) -> None:
    header = (f"{'q':>5} {'b':>4} {'pairs':>5} {'first':>6} {'single':>7} {'before':>7} {'after':>7} "
              f"{'after 95% CI':>13} {'bef.half':>8} {'aft.half':>8} {'k.bef':>6} {'k.aft':>6} {'kept':>6} "
              f"{'calls/s':>7}")
    print(header)
    for r in results:
        low, high = r["after_ci"]
        print(f"{r['q']:>5} {r['b']:>4} {r['pairs']:>5} {r['first_slot']:>6.3f} {r['single_order']:>7.3f} "
              f"{r['before']:>7.3f} {r['after']:>7.3f} {f'{low:.3f}-{high:.3f}':>13} {r['before_half']:>8.3f} "
              f"{r['after_half']:>8.3f} {r['kappa_before']:>6.3f} {r['kappa_after']:>6.3f} {r['kept']:>6.3f} "
              f"{r['calls'] / r['seconds']:>7.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--q", type=float, nargs="*", default=[0.6, 0.75, 0.9])
    parser.add_argument("--b", type=float, nargs="*", default=[0.0, 0.3])
    parser.add_argument("--limit", type=int, default=None, help="only the first N pool pairs")
    args = parser.parse_args(argv)
    if not (DATA / "pool.jsonl").exists():
        print(f"{DATA} is not here: nothing to measure", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp, LoopbackServer() as server:
        directory = Path(tmp)
        inputs = write_inputs(directory, args.limit)
        results = [run_setting(server, inputs, directory, q, b) for q in args.q for b in args.b]
    print_results(results)
    failed = [r for r in results if r["b"] > 0 and not (r["after"] > r["before"] and r["after_half"] > r["before_half"])]
    for r in failed:
        print(f"the filter did not raise agreement at q={r['q']} b={r['b']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
