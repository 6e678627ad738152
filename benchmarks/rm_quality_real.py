"""AI labels where they matter: reward models from a few human labels and a judge, on real HH-RLHF data.

The regime: a user has n human labels (n in 25, 50, 100, 200, 500) and a judge. Per seed, n pairs of
`human_small.jsonl` (500 pairs) are drawn as the human train labels; the rest of `human_small` joins the HH
pool (799 pairs) as pairs the judge labels and whose human labels stay hidden. The judge labels every one of
those 1,299 pairs, the n human pairs included (the overlap), through the real pipeline (`run_label`, openai
backend over HTTP, two principles, both orders) against the loopback server, where it is simulated
(`JUDGES`), with a first-slot bias b on every call:
- calibrated-q: per pair a confidence c drawn around q, right with probability c, reporting c;
- uncalibrated-q: right with probability q, reporting 0.9 +- 0.09 whatever it believes;
- length-l: prefers the longer response with probability l, else right with probability 0.8; it reports a
  confidence drawn in 0.7-0.9 either way, as a judge reports its belief, not where the belief came from.
Rows, the same seeds in every row (paired; the seed draws the human labels and seeds the training):
- human-only: the n human pairs;
- hard / soft / corrected: every kept AI row, with hard labels (TRL's loss), the calibrated judge P (Platt
  on the overlap), or the judge P calibrated with covariates (length, order consistency) on the overlap;
- auto: `mix --auto` on the store, then the mix it chose;
- ceiling: the n human pairs and every other pair with its real human label.
Every model is the library's default regime (`TrainConfig`: head method, weight decay chosen by
cross-validation); agreement is measured on `human_heldout.jsonl`, never imported into a store, scored in
memory (`train_reward_model(score_rows=...)`). Features are cached on disk (`$PREFGEN_CACHE_DIR`), so after
the first pass a cell costs head trainings only.

Every cell (judge, n, seed, row) is one JSON line in `--work DIR/results.jsonl` with its agreement, what auto
chose and the seconds it took; a cell already there is not run again, so the grid runs in parts (`--judges`,
`--human-budget`, `--seeds`, `--rows`) and resumes after a kill. Judged stores are kept in `--work` too.

    .venv/bin/python benchmarks/rm_quality_real.py --work /tmp/rmq --base smollm2          # the whole grid
    .venv/bin/python benchmarks/rm_quality_real.py --work /tmp/rmq --judges length-0.3 --human-budget 100
    .venv/bin/python benchmarks/rm_quality_real.py --work /tmp/rmq --summarise               # tables only
    .venv/bin/python benchmarks/rm_quality_real.py --work /tmp/rmq --rows human-only --fixed-decays 0.1 1 10
    .venv/bin/python benchmarks/rm_quality_real.py --work /tmp/rmq --judges calibrated-0.8 --judge-draws 1 2
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from benchmarks.agreement_real import CONSTITUTION, DATA, read_jsonl, simulated_truth, unit  # noqa: E402
from prefgen.judge.prompts import neutralise  # noqa: E402
from prefgen.pipelines.humans.calibration import calibrate, calibration_for_jobs  # noqa: E402
from prefgen.pipelines.humans.imports import import_human, read_human  # noqa: E402
from prefgen.pipelines.configs import AutoMixConfig  # noqa: E402
from prefgen.pipelines.humans.split import split_human  # noqa: E402
from prefgen.pipelines.labelling import LabelConfig, run_label  # noqa: E402
from prefgen.pipelines.mixing.auto import auto_mix  # noqa: E402
from prefgen.pipelines.mixing.mix import MixConfig, build_mix  # noqa: E402
from prefgen.pipelines.training.stages import rows_from_file  # noqa: E402
from prefgen.records import normalise_text  # noqa: E402
from prefgen.storage.db import Store  # noqa: E402
from prefgen.storage.export import mix_rows_for_training  # noqa: E402
from prefgen.storage.mixes import mix_manifest  # noqa: E402
from prefgen.train.config import TrainConfig  # noqa: E402
from tests.loopback_server import Behaviour, LoopbackServer  # noqa: E402

BUDGETS = (25, 50, 100, 200, 500)
JUDGES = ("calibrated-0.6", "calibrated-0.7", "calibrated-0.8", "calibrated-0.9", "uncalibrated-0.7",
          "uncalibrated-0.9", "length-0.3", "length-0.6")
JUDGED_ROWS = ("hard", "soft", "corrected", "auto", "corrected-oracle")
ROWS = ("human-only", *JUDGED_ROWS, "ceiling")
DEFAULT_ROWS = tuple(row for row in ROWS if row != "corrected-oracle")  # a reference row: asked for by name
MIX_OF_ROW = {"hard": {"labels": "hard"}, "soft": {"labels": "soft"}, "corrected": {"labels": "corrected"},
              "corrected-oracle": {"labels": "corrected"}}


# -- the data ---------------------------------------------------------------------------------------------


def pair_rows() -> tuple[list[dict], dict[str, str], list[str]]:
    """Every pair the judge labels (human_small in canonical order, then the pool), the human winner of each
    (a/b), and the ids of human_small's pairs (what the human labels are drawn from)."""
    read = read_human(DATA / "human_small.jsonl", fmt="hh", source="human_small")
    winner = {label.pair_id: label.winner for label in read.labels if label.annotator in ("label", "majority")}
    rows, winners = [], {}
    for pair in read.pairs:
        rows.append({"id": pair.id, "prompt": pair.prompt, "response_a": pair.response_a,
                     "response_b": pair.response_b})
        winners[pair.id] = winner[pair.id]
    small = [row["id"] for row in rows]
    labels = {row["id"]: row["human_winner"] for row in read_jsonl(DATA / "pool_labels.jsonl")}
    for row in read_jsonl(DATA / "pool.jsonl"):
        rows.append(row)
        winners[row["id"]] = labels[row["id"]]
    return rows, winners, small


def heldout_pairs() -> list[dict]:
    """`human_heldout.jsonl` as TRL rows (ties left out): what every model of these benchmarks is scored on."""
    return [r for r in rows_from_file(str(DATA / "human_heldout.jsonl"), "hh", skip_bad=True) if not r.get("tie")]


def human_sample(small: list[str], n: int, seed: int) -> list[str]:
    return random.Random(f"humans-{seed}").sample(sorted(small), n)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


# -- the judges -------------------------------------------------------------------------------------------


def _texts(row: dict) -> tuple[str, str]:
    return tuple(neutralise(normalise_text(row[k])) for k in ("response_a", "response_b"))


def calibrated_judge(rows: list[dict], winners: dict[str, str], q: float, salt: str = "") -> tuple:
    """truth and confidence_of for a judge right with probability c, c drawn per pair around q."""
    width = min(q - 0.5, 1.0 - q)
    confidence: dict[frozenset[str], float] = {}
    believed: dict[frozenset[str], str] = {}
    for row in rows:
        a, b = _texts(row)
        c = q - width + 2 * width * unit(f"c={q}{salt}", row["id"])
        human_better, other = (a, b) if winners[row["id"]] == "a" else (b, a)
        believed[frozenset((a, b))] = human_better if unit(f"right={q}{salt}", row["id"]) < c else other
        confidence[frozenset((a, b))] = c
    return _answers(believed, confidence, q)


def length_judge(rows: list[dict], winners: dict[str, str], bias: float, right: float = 0.8,
                 salt: str = "") -> tuple:
    """Prefers the longer response with probability `bias`, else the humans' with probability `right`; the
    confidence it reports (0.7-0.9) does not depend on which."""
    confidence: dict[frozenset[str], float] = {}
    believed: dict[frozenset[str], str] = {}
    for row in rows:
        a, b = _texts(row)
        human_better, other = (a, b) if winners[row["id"]] == "a" else (b, a)
        longer = a if len(row["response_a"]) >= len(row["response_b"]) else b
        if unit(f"length={bias}{salt}", row["id"]) < bias:
            believed[frozenset((a, b))] = longer
        else:
            believed[frozenset((a, b))] = human_better if unit(f"right-length={bias}{salt}", row["id"]) < right else other
        confidence[frozenset((a, b))] = 0.7 + 0.2 * unit(f"c-length={bias}{salt}", row["id"])
    return _answers(believed, confidence, 0.8)


def _answers(believed: dict, confidence: dict, default: float) -> tuple:
    def truth(first: str, second: str) -> str:
        return "A" if believed.get(frozenset((first, second)), first) == first else "B"

    def confidence_of(first: str, second: str) -> float:
        return confidence.get(frozenset((first, second)), default)

    return truth, confidence_of


def behaviour(judge: str, rows: list[dict], winners: dict[str, str], b: float) -> Behaviour:
    """The simulated judge `judge`: a name of `JUDGES`, with "@D" for its D-th draw of which pairs it gets
    wrong (and of its confidences); the plain name is draw 0."""
    name, _, draw = judge.partition("@")
    kind, value = name.rsplit("-", 1)
    q, salt = float(value), f"#{draw}" if draw and draw != "0" else ""
    if kind == "calibrated":
        truth, confidence_of = calibrated_judge(rows, winners, q, salt)
    elif kind == "length":
        truth, confidence_of = length_judge(rows, winners, q, salt=salt)
    elif kind == "uncalibrated":
        return Behaviour(first_bias=b, truth=simulated_truth(rows, winners, q, salt), confidence=0.9,
                         confidence_spread=0.09)
    else:
        raise SystemExit(f"unknown judge {judge!r}: one of {', '.join(JUDGES)}")
    return Behaviour(first_bias=b, truth=truth, confidence_of=confidence_of)


def judged_store(server: LoopbackServer, work: Path, judge: str, rows: list[dict], winners: dict[str, str],
                 b: float) -> Path:
    """The store with every pair labelled by the judge (no human label yet), made once and kept in `work`."""
    db = work / "judged" / f"{judge}-b{b}.duckdb"
    if db.with_suffix(".done").exists():
        return db
    db.parent.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)
    constitution = work / "constitution.yaml"
    constitution.write_text(CONSTITUTION, encoding="utf-8")
    pairs = write_jsonl(work / "pairs.jsonl", rows)
    server.reset(behaviour(judge, rows, winners, b))
    started = time.perf_counter()
    run_label(LabelConfig(constitution=constitution, pairs=str(pairs), judge="openai:loopback-judge", db=db,
                          api_base=server.openai_base, api_key="loopback", concurrency=32, skip_bad=True,
                          progress=False))
    db.with_suffix(".done").write_text(f"{time.perf_counter() - started:.1f}")
    print(f"labelled {len(rows)} pairs with {judge} in {time.perf_counter() - started:.0f} s", flush=True)
    return db


def add_humans(db: Path, directory: Path, rows: list[dict], winners: dict[str, str], ids: list[str],
               name: str) -> None:
    """Import the pairs `ids` with their real human winners, pinned to the train split."""
    chosen = set(ids)
    labels = [{**row, "winner": winners[row["id"]]} for row in rows if row["id"] in chosen]
    path = write_jsonl(directory / f"{name}.jsonl", labels)
    with Store(db) as store:
        import_human(store, path, fmt="pairwise", source=name, pin="train")
        split_human(store, heldout=0.0)


# -- training ---------------------------------------------------------------------------------------------


def add_reward_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--base, --pooling and --precision: the reward models a benchmark trains (`train_config`)."""
    parser.add_argument("--base", default=None, help="reward-model base: a model directory, a .gguf file, "
                        "smollm2 or minilm (default: the head method's, smollm2)")
    parser.add_argument("--pooling", default=None, choices=["auto", "response-mean", "model"],
                        help="what the reward head reads (default: auto)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="precision of the frozen base's features (default: auto)")


def train_config(args, seed: int, **overrides) -> TrainConfig:
    """The default regime, on the chosen base, pooling and precision."""
    return TrainConfig(seed=seed, base=args.base, pooling=args.pooling, precision=args.precision,
                       out_dir="unused", **overrides)


def train_and_score(store: Store, mix: str, heldout: list[dict], seed: int, args, *, loss: str = "soft",
                    curriculum: str | None = None, **overrides) -> float:
    """Held-out agreement of a model trained on `mix`."""
    return float(heldout_correct(store, mix, heldout, seed, args, loss=loss, curriculum=curriculum,
                                 **overrides).mean())


def heldout_correct(store: Store, mix: str, heldout: list[dict], seed: int, args, *, loss: str = "soft",
                    curriculum: str | None = None, **overrides) -> np.ndarray:
    """Per held-out pair, 1 when the model trained on `mix` ranks the human's choice higher."""
    from prefgen.train.trainer import train_reward_model

    curriculum = curriculum or ((mix_manifest(store, mix).get("auto") or {}).get("train") or {}).get("curriculum")
    config = train_config(args, seed, loss=loss, curriculum=curriculum, **overrides)
    rows = mix_rows_for_training(store, mix)
    with store.released():
        result = train_reward_model(rows, config, score_rows=heldout, save=False)
    return np.array([float(c > r) for c, r in result.scores])


# -- the grid ---------------------------------------------------------------------------------------------


class Results:
    """results.jsonl in the work directory: one record per cell, read back to skip what is done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = read_jsonl(path) if path.exists() else []
        self.done = {self.key(r) for r in self.records}

    @staticmethod
    def key(record: dict) -> tuple:
        return record["judge"], record["n"], record["seed"], record["row"]

    def add(self, record: dict) -> None:
        self.records.append(record)
        self.done.add(self.key(record))
        with open(self.path, "ab") as out:
            out.write(orjson.dumps(record) + b"\n")


def human_cells(work: Path, data: tuple, heldout: list[dict], n: int, seed: int, args, results: Results) -> None:
    """human-only (and its fixed-decay variants) and the ceiling: rows without a judge. The ceiling trains on
    every pair with its real label whatever n is, so it is one cell per seed (n = 0)."""
    rows, winners, small = data
    humans = human_sample(small, n, seed)
    wanted = [("human-only", n)] if "human-only" in args.rows else []
    wanted += [("ceiling", 0)] if "ceiling" in args.rows else []
    wanted += [(f"human-only@wd={d:g}", n) for d in args.fixed_decays]
    for row, n in wanted:
        if ("-", n, seed, row) in results.done:
            continue
        started = time.perf_counter()
        directory = work / "cells"
        directory.mkdir(exist_ok=True)
        db = directory / f"{row}-{n}-{seed}-{os.getpid()}.duckdb"
        db.unlink(missing_ok=True)
        ids = [r["id"] for r in rows] if row == "ceiling" else humans
        add_humans(db, directory, rows, winners, ids, f"humans-{n}-{seed}")
        overrides = {"weight_decay": float(row.split("=")[1])} if "@wd=" in row else {}
        with Store(db) as store:
            build_mix(store, MixConfig(name="m", human_ratio=1.0, seed=seed))
            agreement = train_and_score(store, "m", heldout, seed, args, **overrides)
        db.unlink()
        record = {"judge": "-", "n": n, "seed": seed, "row": row, "agreement": agreement,
                  "seconds": round(time.perf_counter() - started, 1)}
        results.add(record)
        print(f"  n={n} seed {seed} {row}: {agreement:.3f} ({record['seconds']:.0f} s)", flush=True)


_ORACLES: dict[Path, dict] = {}


def oracle_calibrations(judged: Path, data: tuple) -> dict:
    """The judge's calibrations (Platt and with covariates) fitted on every pair it judged, each with its real
    human label: what `corrected` would be with a perfect overlap, the ceiling of correcting the judge. By label
    job id, as the cells' stores (copies of `judged`) know them."""
    if judged not in _ORACLES:
        rows, winners, _ = data
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "oracle.duckdb"
            shutil.copy(judged, db)
            add_humans(db, Path(tmp), rows, winners, [row["id"] for row in rows], "every-pair")
            with Store(db) as store:
                _ORACLES[judged] = calibration_for_jobs(store, calibrate(store, save=False))
    return _ORACLES[judged]


def judge_cells(work: Path, judged: Path, judge: str, data: tuple, heldout: list[dict], n: int, seed: int,
                args, results: Results) -> None:
    """hard, soft, corrected, auto (and corrected-oracle) for one judge, budget and seed, on a copy of the judged
    store."""
    rows, winners, small = data
    wanted = [row for row in JUDGED_ROWS if row in args.rows and (judge, n, seed, row) not in results.done]
    if not wanted:
        return
    directory = work / "cells"
    directory.mkdir(exist_ok=True)
    db = directory / f"{judge}-{n}-{seed}-{os.getpid()}.duckdb"
    shutil.copy(judged, db)
    add_humans(db, directory, rows, winners, human_sample(small, n, seed), f"humans-{n}-{seed}")
    scored: dict[str, float] = {}  # mix content hash -> agreement: auto's choice is often a row trained already
    with Store(db) as store:
        for row in wanted:
            started = time.perf_counter()
            extra: dict = {}
            if row == "auto":
                report = auto_mix(store, MixConfig(name=row, seed=seed), AutoMixConfig(train=train_config(args, seed)))
                extra = {"chose": report.chosen, "saw": report.saw, "reason": report.reason}
            else:
                build_mix(store, MixConfig(name=row, human_ratio=None, seed=seed, **MIX_OF_ROW[row]),
                          calibrations=oracle_calibrations(judged, data) if row == "corrected-oracle" else None)
            manifest = mix_manifest(store, row)
            key = manifest["content_hash"] + str((manifest.get("auto") or {}).get("train"))
            if key not in scored:
                scored[key] = train_and_score(store, row, heldout, seed, args, loss="bt" if row == "hard" else "soft")
            record = {"judge": judge, "n": n, "seed": seed, "row": row, "agreement": scored[key],
                      "ai_rows": manifest["counts"]["ai"]["used"], **extra,
                      "seconds": round(time.perf_counter() - started, 1)}
            results.add(record)
            print(f"  {judge} n={n} seed {seed} {row}: {scored[key]:.3f} ({record['seconds']:.0f} s)"
                  + (f" chose {extra['chose']}: {extra['saw']}" if extra else ""), flush=True)
    db.unlink()


# -- the tables -------------------------------------------------------------------------------------------


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def summarise(results: Results, seeds: list[int] | None = None) -> None:
    """Per judge and budget: human-only's agreement, and every row's paired difference to it (mean ± sd over
    the seeds every row of the table has; worst seed in brackets for auto), with auto's choices and the
    share of the ceiling's gain that auto reached."""
    cells: dict[tuple, dict[int, float]] = defaultdict(dict)
    chose: dict[tuple, dict[int, str]] = defaultdict(dict)
    seconds: dict[str, float] = defaultdict(float)
    for r in results.records:
        if seeds is None or r["seed"] in seeds:
            cells[(r["judge"], r["n"], r["row"])][r["seed"]] = r["agreement"]
            seconds[f"{r['judge']} {r['row']}"] += r.get("seconds", 0.0)
            if r["row"] == "auto":
                chose[(r["judge"], r["n"])][r["seed"]] = r["chose"]
    budgets = sorted({n for (_, n, _) in cells if n})
    judges = sorted({k[0] for k in cells if k[0] != "-"}, key=lambda j: (JUDGES.index(j.split("@")[0]), j))
    print("\nhuman-only and ceiling on human_heldout (mean ± sd over seeds), paired differences to human-only:")
    print("| n | human-only | ceiling - human-only | fixed decays - human-only (CV) |")
    print("|---|---|---|---|")
    for n in budgets:
        human = cells.get(("-", n, "human-only"), {})
        ceiling = cells.get(("-", 0, "ceiling"), {})
        fixed = sorted({row for (j, m, row) in cells if j == "-" and m == n and "@wd=" in row},
                       key=lambda row: float(row.split("=")[1]))
        decays = ", ".join(f"{row.split('@')[1]}: {paired(cells[('-', n, row)], human)}" for row in fixed)
        print(f"| {n} | {mean_sd(list(human.values())) if human else '-'} | {paired(ceiling, human)} | {decays} |")
    print("\n| judge | n | hard | soft | corrected | auto [worst seed] | auto's share of the ceiling's gain | "
          "auto chose |")
    print("|---|---|---|---|---|---|---|---|")
    for judge in judges:
        for n in budgets:
            human = cells.get(("-", n, "human-only"), {})
            if not any((judge, n, row) in cells for row in JUDGED_ROWS):
                continue
            out = [paired(cells.get((judge, n, row), {}), human) for row in ("hard", "soft", "corrected")]
            auto = cells.get((judge, n, "auto"), {})
            common = sorted(set(auto) & set(human))
            worst = f" [{min(auto[s] - human[s] for s in common):+.3f}]" if common else ""
            ceiling = cells.get(("-", 0, "ceiling"), {})
            both = sorted(set(common) & set(ceiling))
            gain = statistics.mean(ceiling[s] - human[s] for s in both) if both else None
            share = (f"{statistics.mean(auto[s] - human[s] for s in both) / gain:.0%}"
                     if both and gain and gain > 0 else "-")
            picks = defaultdict(int)
            for pick in chose.get((judge, n), {}).values():
                picks[pick] += 1
            print(f"| {judge} | {n} | {' | '.join(out)} | {paired(auto, human)}{worst} | {share} | "
                  + ", ".join(f"{k} {v}" for k, v in sorted(picks.items())) + " |")
    oracle = [(judge, n) for judge in judges for n in budgets if (judge, n, "corrected-oracle") in cells]
    if oracle:
        print("\nthe ceiling of correcting the judge: its calibration fitted on every pair's real label")
        print("| judge | n | corrected | corrected, oracle calibration | oracle - corrected |")
        print("|---|---|---|---|---|")
        for judge, n in oracle:
            human = cells.get(("-", n, "human-only"), {})
            fitted, best = cells.get((judge, n, "corrected"), {}), cells[(judge, n, "corrected-oracle")]
            print(f"| {judge} | {n} | {paired(fitted, human)} | {paired(best, human)} | {paired(best, fitted)} |")
    print("\nseconds per part (all cells):")
    for part, s in sorted(seconds.items()):
        print(f"  {part}: {s:.0f}")


def drawn(judges: list[str], draws: list[int]) -> list[str]:
    """Every judge in every draw: draw 0 under its plain name, the others as JUDGE@D."""
    return [judge if draw == 0 else f"{judge}@{draw}" for draw in draws for judge in judges]


def paired(values: dict[int, float], base: dict[int, float]) -> str:
    common = sorted(set(values) & set(base))
    if not common:
        return "-"
    diffs = [values[s] - base[s] for s in common]
    sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    return f"{statistics.mean(diffs):+.3f} ± {sd:.3f}" + ("" if len(common) >= 10 else f" ({len(common)} seeds)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="judged stores and results.jsonl (resumable)")
    parser.add_argument("--human-budget", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--judges", nargs="+", default=list(JUDGES), choices=JUDGES)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--judge-draws", type=int, nargs="+", default=[0],
                        help="draws of each judge's errors (and confidences): 0 is the judge as named, D > 0 runs "
                        "as JUDGE@D (its own judged store and rows in the tables), the judge's luck as a random "
                        "effect beside the seeds'")
    parser.add_argument("--rows", nargs="+", default=list(DEFAULT_ROWS), choices=ROWS,
                        help="rows to run (default: all but corrected-oracle, the corrected labels with the judge's "
                        "calibration fitted on every pair's real label: the ceiling of correcting it)")
    parser.add_argument("--b", type=float, default=0.3, help="every judge's first-slot bias")
    parser.add_argument("--fixed-decays", type=float, nargs="*", default=[],
                        help="also human-only with these fixed weight decays (the regularisation benchmark)")
    parser.add_argument("--summarise", action="store_true", help="print the tables of --work and stop")
    add_reward_model_arguments(parser)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    results = Results(args.work / "results.jsonl")
    if args.summarise:
        summarise(results, args.seeds)
        return 0
    if not (DATA / "human_small.jsonl").exists():
        print(f"{DATA} is not here: nothing to measure", file=sys.stderr)
        return 1
    data = pair_rows()
    heldout = heldout_pairs()
    started = time.perf_counter()
    with LoopbackServer() as server:
        judged = {judge: judged_store(server, args.work, judge, data[0], data[1], args.b)
                  for judge in drawn(args.judges, args.judge_draws) if set(args.rows) & set(JUDGED_ROWS)}
    for n in args.human_budget:
        for seed in args.seeds:
            human_cells(args.work, data, heldout, n, seed, args, results)
            for judge, db in judged.items():
                judge_cells(args.work, db, judge, data, heldout, n, seed, args, results)
    summarise(results, args.seeds)
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
