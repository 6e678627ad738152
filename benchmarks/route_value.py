"""Is a human label worth more on a routed pair than on a random one? Real HH-RLHF data, simulated judge.

The regime of `benchmarks/rm_quality_real.py`: per seed, `--human-budget` pairs of `human_small.jsonl` (50) are
the human train labels, and the judge (`--judge`, one of that benchmark's simulated judges, labelled through
the real pipeline against the loopback server) has labelled every pair of `human_small` and the HH pool, the
human ones included. Then two copies of that store get `--budget` more human labels (50), answered with their
real labels as if annotators had, through the Argilla round-trip (records out, answered records back through
`import-human --format argilla`):
- routed: `prefgen route --budget 50` (the default 15% random slice, the rest by value);
- cross-checked: `prefgen route --budget 50 --cross-check` (mix_error also reads reward models trained without
  each prompt, on the benchmark's base);
- random: the same command with `--random-share 1`, i.e. 50 pairs drawn uniformly.
Each store then gets the same mix (every row, `--labels`, default corrected: calibration fitted on every
labelled pair weighted by its inverse inclusion probability) and a reward model in the library's default
regime, scored on `human_heldout.jsonl` in memory (paired seeds: the same human labels and training seed in
both arms).
Reported: RM agreement (mean ± sd over seeds, and the paired difference to random), the label accuracy of the
mix's judged rows against the real labels, the AI rows' accuracy beside their mean soft label, and what the
labels did: wrong AI rows of the mix fixed, rows added for pairs the filters had dropped, and the precision of
the picks routed by value split between the two. `--variant NAME:SIGNAL=W,...` adds a routed arm with other
`RouteWeights`. Two reference arms bound what any routing could be worth here (`--arms ... none oracle`): none
(no label on top) and oracle (the budget spent on AI rows of the mix that are wrong by the real labels).

    .venv/bin/python benchmarks/route_value.py --work /tmp/rmq --seeds 0 1 2 3 4 5 6 7 8 9
    .venv/bin/python benchmarks/route_value.py --work /tmp/rmq --variant new-first:new_row=1 --arms new-first random
    .venv/bin/python benchmarks/route_value.py --work /tmp/rmq --no-rm       # routing and mix figures only
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.agreement_real import DATA  # noqa: E402
from benchmarks.rm_quality_real import (  # noqa: E402
    JUDGES,
    add_humans,
    add_reward_model_arguments,
    heldout_pairs,
    human_sample,
    judged_store,
    mean_sd,
    pair_rows,
    train_and_score,
)
from prefgen.judge.swap import side  # noqa: E402
from prefgen.pipelines.configs import RouteConfig  # noqa: E402
from prefgen.pipelines.humans.imports import import_human  # noqa: E402
from prefgen.pipelines.mixing.mix import MixConfig, build_mix  # noqa: E402
from prefgen.pipelines.mixing.route import ROUTED, route  # noqa: E402
from prefgen.records import flip_winner, make_pair, normalise_text  # noqa: E402
from prefgen.storage.db import Store  # noqa: E402
from tests.loopback_server import LoopbackServer  # noqa: E402

RANDOM_ARM = "random"  # --random-share 1: every pair drawn at random
CROSS_CHECKED_ARM = "cross-checked"  # routed with --cross-check
# Reference arms, run when --arms names them: what routing can be worth at most here.
NO_EXTRA_ARM = "none"  # no label on top: what the budget's labels add at all
ORACLE_ARM = "oracle"  # the budget spent on AI rows of the mix that are wrong by the real labels: the most a
                       # router that fixes the judge's errors could do
REFERENCE_ARMS = (NO_EXTRA_ARM, ORACLE_ARM)


def parse_weights(text: str) -> dict[str, float]:
    """'new_row=1,uncertainty=0.5' -> RouteWeights fields."""
    return {k: float(v) for k, v in (item.split("=") for item in text.split(",") if item)}


def arms_of(args) -> dict[str, tuple[float, dict[str, float], bool]]:
    """arm -> (random share, route weights, cross-check): routed (--weight), cross-checked (the same with
    `--cross-check`), random, and each --variant NAME:WEIGHTS."""
    weights = parse_weights(",".join(args.weight))
    arms = {"routed": (args.random_share, weights, False), CROSS_CHECKED_ARM: (args.random_share, weights, True),
            RANDOM_ARM: (1.0, {}, False)}
    for variant in args.variant:
        name, _, text = variant.partition(":")
        arms[name] = (args.random_share, parse_weights(text), False)
    arms.update({name: (0.0, {}, False) for name in REFERENCE_ARMS})
    return {name: arm for name, arm in arms.items()
            if (name in args.arms if args.arms else name not in REFERENCE_ARMS)}


def truth_by_pair(pool: list[dict], winners: dict[str, str]
                  ) -> tuple[dict[str, str], dict[str, str], dict[str, dict]]:
    """Canonical winner of every judged pair, the text of the better response (how annotators answer), and
    the benchmark's row of each pair with its real winner (what the oracle arm imports)."""
    truth, better, rows_of = {}, {}, {}
    for row in pool:
        pair, swapped = make_pair(row["prompt"], row["response_a"], row["response_b"])
        truth[pair.id] = flip_winner(winners[row["id"]], swapped)
        better[pair.id] = normalise_text(row["response_a" if winners[row["id"]] == "a" else "response_b"])
        rows_of[pair.id] = {**row, "winner": winners[row["id"]]}
    return truth, better, rows_of


def oracle_labels(store: Store, directory: Path, seed: int, args, rows_of: dict[str, dict],
                  truth: dict[str, str]) -> list[dict]:
    """The oracle arm: `--budget` AI rows of the mix whose label is wrong by the real labels (a seeded draw),
    imported with their real labels as annotators would give them; returns its picks as `pick_counts` reads
    them."""
    build_mix(store, MixConfig(name="before", human_ratio=None, labels=args.labels, seed=seed))
    wrong = sorted(r["pair_id"] for r in store.dicts(
        "SELECT pair_id, chosen, p_chosen FROM mix_rows WHERE mix_name = 'before' AND source = 'ai'")
        if r["pair_id"] in truth and not _right(r, truth))
    picks = random.Random(f"oracle-{seed}").sample(wrong, min(args.budget, len(wrong)))
    path = directory / f"oracle-{seed}.jsonl"
    path.write_text("".join(json.dumps(rows_of[pair_id]) + "\n" for pair_id in picks))
    import_human(store, path, fmt="pairwise", source="annotators", pin="train")
    # Recorded as a routed batch whose picks weigh 0 in the calibration: picked for being wrong, they stand for
    # no share of the pool (a router's picks weigh their inclusion probability's share; these have none).
    store.insert_rows("route_items", [
        {"batch_id": "oracle", "pair_id": pair_id, "position": i, "selection": "routed", "rank": i + 1, "score": 0.0,
         "reason": "wrong by the real label", "shown": "ab", "calibration_weight": 0.0}
        for i, pair_id in enumerate(picks)])
    return store.dicts("""SELECT pair_id, 'oracle' AS selection, p_a, true AS in_mix, NULL AS mix_error,
                              chosen AS kept_side FROM pair_preferences WHERE list_contains($1, pair_id)""",
                       [picks])


def answer_batch(batch: Path, better: dict[str, str]) -> Path:
    """The Argilla records, answered by an annotator who gives the real HH label."""
    records = json.loads(batch.read_text())
    for record in records:
        fields = record["fields"]
        first = normalise_text(fields["response_1"]) == better[record["metadata"]["pair_id"]]
        record["responses"] = {"preference": [{"value": "response_1" if first else "response_2",
                                               "user_id": "hh-annotator", "status": "submitted"}]}
    answered = batch.with_name(batch.stem + ".answered.json")
    answered.write_text(json.dumps(records))
    return answered


def run_arm(judged: Path, directory: Path, arm: str, seed: int, args, data: tuple, truth, better,
            heldout, rows_of: dict[str, dict]) -> dict:
    rows, winners, small = data
    share, weights, checked = arms_of(args)[arm]
    db = directory / f"{arm}-{seed}.duckdb"
    shutil.copy(judged, db)
    add_humans(db, directory, rows, winners, human_sample(small, args.human_budget, seed), f"humans-{seed}")
    batch = directory / f"{arm}-{seed}.json"
    with Store(db) as store:
        if arm == NO_EXTRA_ARM:
            picked = []
        elif arm == ORACLE_ARM:
            picked = oracle_labels(store, directory, seed, args, rows_of, truth)
        else:
            route(store, RouteConfig(budget=args.budget, format="argilla", out=batch, random_share=share, seed=seed,
                                     weights=weights, cross_check=checked, base=args.base if checked else None))
            import_human(store, answer_batch(batch, better), fmt="argilla", source="annotators", pin="train")
            picked = store.dicts("""SELECT r.pair_id, r.selection, r.p_a, r.new_row = 0 AS in_mix, r.mix_error,
                                           pp.chosen AS kept_side
                                    FROM route_items r LEFT JOIN pair_preferences pp USING (pair_id)""")
        build_mix(store, MixConfig(name="mix", human_ratio=None, labels=args.labels, seed=seed))
        mixed = store.dicts("SELECT pair_id, source, chosen, p_chosen FROM mix_rows WHERE mix_name = 'mix'")
        calibration = store.dicts("SELECT method, n_pairs FROM calibrations")
        agreement = None if args.no_rm else train_and_score(store, "mix", heldout, seed, args)
    db.unlink()
    judged_rows = [r for r in mixed if r["pair_id"] in truth and r["source"] == "ai"]
    pool_rows = [r for r in mixed if r["pair_id"] in truth]
    by_value = [p for p in picked if p["selection"] == ROUTED] or picked
    return {
        "agreement": agreement,
        "mix_rows": len(mixed),
        "mix_pool_rows": len(pool_rows),
        "mix_accuracy": statistics.mean(_right(r, truth) for r in pool_rows),
        "ai_accuracy": statistics.mean(_right(r, truth) for r in judged_rows),
        "ai_p_chosen": statistics.mean(r["p_chosen"] for r in judged_rows),  # vs ai_accuracy: calibration
        "calibration": ",".join(f"{c['method']}/{c['n_pairs']}" for c in calibration),
        **{f"{key}": value for key, value in pick_counts(by_value, truth).items()},
        **{f"all_{key}": value for key, value in pick_counts(picked, truth).items()},
    }


def _right(row: dict, truth: dict[str, str]) -> float:
    """1 when the side the row's label favours is the humans' (a corrected label below 0.5 favours the side
    the judge did not choose)."""
    return float((row["chosen"] == truth[row["pair_id"]]) == (row["p_chosen"] >= 0.5))


def pick_counts(picks: list[dict], truth: dict[str, str]) -> dict[str, int]:
    """What labels on these picks did: judge errors (unfiltered side not the humans', or a tie); AI rows of the
    mix checked, and how many of them were wrong (fixed); pairs the filter had dropped (a new row each)."""
    fixed = [p for p in picks if p["in_mix"] and p["kept_side"] != truth[p["pair_id"]]]
    return {
        "picked": len(picks),
        "judge_errors": sum(side(p["p_a"]) != truth[p["pair_id"]] for p in picks),
        "in_mix": sum(bool(p["in_mix"]) for p in picks),
        "fixed": len(fixed),
        "expected_fixes": sum(p["mix_error"] or 0.0 for p in picks),
        "dropped": sum(not p["in_mix"] for p in picks),
        "dropped_errors": sum(not p["in_mix"] and side(p["p_a"]) != truth[p["pair_id"]] for p in picks),
    }



def print_table(results: dict[str, dict[int, dict]], seeds: list[int]) -> None:
    print(f"\n{'arm':<14}{'RM agreement':>16}{'diff to random':>18}{'mix rows':>10}{'mix acc (pool)':>17}"
          f"{'AI rows acc':>15}{'AI p_chosen':>15}{'fixed':>8}{'new rows':>10}")
    for arm, by_seed in results.items():
        scored = all(by_seed[s]["agreement"] is not None for s in seeds)
        agreement = mean_sd([by_seed[s]["agreement"] for s in seeds]) if scored else "-"
        diff = "" if arm == RANDOM_ARM or RANDOM_ARM not in results or not scored else mean_sd(
            [by_seed[s]["agreement"] - results[RANDOM_ARM][s]["agreement"] for s in seeds])
        print(f"{arm:<14}{agreement:>16}{diff:>18}{statistics.mean(by_seed[s]['mix_rows'] for s in seeds):>10.0f}"
              f"{mean_sd([by_seed[s]['mix_accuracy'] for s in seeds]):>17}"
              f"{mean_sd([by_seed[s]['ai_accuracy'] for s in seeds]):>15}"
              f"{mean_sd([by_seed[s]['ai_p_chosen'] for s in seeds]):>15}"
              f"{statistics.mean(by_seed[s]['all_fixed'] for s in seeds):>8.1f}"
              f"{statistics.mean(by_seed[s]['all_dropped'] for s in seeds):>10.1f}")
    print("fixed: wrong AI rows of the mix replaced by a human label (per seed, all picks of the arm); new rows: "
          "picks the mix's filters had dropped, each now a human row; AI p_chosen: mean calibrated soft label of "
          "the AI rows left, to compare with their accuracy")
    print(f"\nprecision, picks by value (routed) / all picks (random), summed over seeds:")
    print(f"{'arm':<14}{'picks':>7}{'judge errors':>15}{'in mix':>9}{'fixed':>13}{'expected':>10}{'dropped':>9}"
          f"{'errors among dropped':>22}")
    for arm, by_seed in results.items():
        total = {k: sum(by_seed[s][k] for s in seeds) for k in
                 ("picked", "judge_errors", "in_mix", "fixed", "expected_fixes", "dropped", "dropped_errors")}
        n = total["picked"]
        if not n:
            print(f"{arm:<14}{0:>7}")
            continue
        print(f"{arm:<14}{n:>7}{total['judge_errors'] / n:>15.2f}{total['in_mix']:>9}"
              f"{total['fixed']:>6} ({total['fixed'] / n:.2f}){total['expected_fixes']:>10.1f}{total['dropped']:>9}"
              f"{total['dropped_errors']:>22}")
    print("judge errors: the judge's unfiltered side is not the humans' or is a tie (share of picks); in mix: the "
          "pick's AI row passed the filters; fixed: of those, the wrong ones (share of picks); expected: the sum of "
          "their mix_error signals; dropped: picks the filters had kept out (a label adds a row; the judge's errors "
          "among them were never in the mix)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="where the judged stores are kept (shared with "
                        "rm_quality_real.py)")
    parser.add_argument("--judge", default="calibrated-0.7", choices=JUDGES)
    parser.add_argument("--b", type=float, default=0.3, help="the simulated judge's first-slot bias")
    parser.add_argument("--human-budget", type=int, default=50, help="human labels drawn from human_small per seed")
    parser.add_argument("--budget", type=int, default=50, help="human labels routed (or drawn) on top")
    parser.add_argument("--labels", default="corrected", choices=["soft", "hard", "corrected"],
                        help="the mix's labels for AI rows")
    parser.add_argument("--random-share", type=float, default=RouteConfig.model_fields["random_share"].default)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--no-rm", action="store_true", help="skip the reward models: routing and mix figures only")
    parser.add_argument("--weight", action="append", default=[], metavar="SIGNAL=W",
                        help="a route weight of the routed arm (RouteWeights), e.g. new_row=1")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:SIGNAL=W,...",
                        help="one more routed arm with these weights, e.g. new-first:new_row=1")
    parser.add_argument("--arms", nargs="+", default=None,
                        help="run only these arms (routed, random, variants), or the reference arms too: none (no "
                        "label on top) and oracle (the budget on AI rows that are wrong by the real labels)")
    add_reward_model_arguments(parser)
    args = parser.parse_args(argv)
    if not (DATA / "pool.jsonl").exists():
        print(f"{DATA} is not here: nothing to measure", file=sys.stderr)
        return 1
    heldout = heldout_pairs()
    started = time.perf_counter()
    results: dict[str, dict[int, dict]] = {arm: {} for arm in arms_of(args)}
    data = pair_rows()
    truth, better, rows_of = truth_by_pair(data[0], data[1])
    args.work.mkdir(parents=True, exist_ok=True)
    with LoopbackServer() as server:
        judged = judged_store(server, args.work, args.judge, data[0], data[1], args.b)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for arm in results:
                arm_started = time.perf_counter()
                results[arm][seed] = run_arm(judged, Path(tmp), arm, seed, args, data, truth, better, heldout,
                                               rows_of)
                r = results[arm][seed]
                scored = "-" if r["agreement"] is None else f"{r['agreement']:.3f}"
                print(f"  seed {seed} {arm}: agreement {scored}, mix accuracy {r['mix_accuracy']:.3f}, "
                      f"fixed {r['all_fixed']}, new rows {r['all_dropped']}, calibration {r['calibration']} "
                      f"({time.perf_counter() - arm_started:.0f} s)", flush=True)
    print(f"\njudge {args.judge}, b = {args.b}; {args.human_budget} human labels from human_small + {args.budget} "
          f"routed or random; mix labels {args.labels}; seeds {args.seeds}; RM agreement on human_heldout.jsonl")
    print_table(results, args.seeds)
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
