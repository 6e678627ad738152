"""How good must a judge be for AI pairs to help? Reward models on real HH-RLHF harmless data.

Trains the default reward model (MiniLM, CPU) on `human_small.jsonl` alone, then on `human_small.jsonl` plus
the HH pool labelled by simulated judges of agreement q with the human winners (the loopback judge of
`benchmarks/agreement_real.py`: right with probability q, first slot with probability b, confidence
0.9 +- 0.09, filtered by position swapping and confidence), and evaluates each on `human_heldout.jsonl`.
Everything goes through the real stages: label, import-human, split, mix, train, eval.

    .venv/bin/python benchmarks/rm_quality_real.py                 # q in 0.6 0.75 0.9, b = 0.3, 1 epoch
    .venv/bin/python benchmarks/rm_quality_real.py --q 0.9 --epochs 2 --max-length 512
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.agreement_real import DATA, simulated_truth, write_inputs  # noqa: E402
from prefgen.pipelines.human import import_human  # noqa: E402
from prefgen.pipelines.label import LabelConfig, run_label  # noqa: E402
from prefgen.pipelines.mix import MixConfig, build_mix  # noqa: E402
from prefgen.pipelines.reward import evaluate, train_from_mix  # noqa: E402
from prefgen.pipelines.split import split_human  # noqa: E402
from prefgen.storage.db import Store  # noqa: E402
from prefgen.train.config import TrainConfig  # noqa: E402
from tests.loopback_server import Behaviour, LoopbackServer  # noqa: E402


def label_pool(server: LoopbackServer, inputs: tuple, db: Path, q: float, b: float) -> int:
    constitution, pairs, _, pool, winners = inputs
    server.reset(Behaviour(first_bias=b, truth=simulated_truth(pool, winners, q), confidence=0.9,
                           confidence_spread=0.09))
    summary = run_label(LabelConfig(constitution=constitution, pairs=str(pairs), judge="openai:loopback-judge",
                                    db=db, api_base=server.openai_base, api_key="loopback", concurrency=32,
                                    skip_bad=True, progress=False))
    return summary.kept_pairs


def run_setting(name: str, directory: Path, args: argparse.Namespace, server: LoopbackServer | None,
                inputs: tuple | None, q: float | None) -> dict:
    db = directory / f"{name}.duckdb"
    kept = label_pool(server, inputs, db, q, args.b) if q is not None else 0
    with Store(db) as store:
        n_human = import_human(store, DATA / "human_small.jsonl", fmt="hh", source="human_small").pairs
        split_human(store, heldout=0.0)  # the held-out set is its own file, never imported into the mix store
        ratio = n_human / (n_human + kept)  # every human pair and every kept AI pair
        mix = build_mix(store, MixConfig(name=name, human_ratio=ratio, seed=0))
        config = TrainConfig(out_dir=directory / f"rm-{name}", epochs=args.epochs, max_length=args.max_length,
                             batch_size=args.batch_size, seed=args.seed)
        started = time.perf_counter()
        outcome = train_from_mix(store, name, config)
        train_s = time.perf_counter() - started
        report = evaluate(store, config.out_dir, pairs=str(DATA / "human_heldout.jsonl"), fmt="hh",
                          skip_bad=True)
    low, high = report.metrics["accuracy_ci95"]
    return {"data": name, "human": mix.human, "ai": mix.ai, "pairs": outcome.n_train,
            "accuracy": report.metrics["accuracy"], "low": low, "high": high, "n_eval": report.metrics["n_scored"],
            "train_s": train_s, "pairs_per_s": outcome.pairs_per_s}


def print_table(results: list[dict]) -> None:
    print(f"{'training data':<34}{'pairs used':>11}{'human':>7}{'AI':>6}{'held-out agreement':>20}"
          f"{'95% CI':>15}{'train s':>9}{'pairs/s':>9}")
    for r in results:
        interval = f"{r['low']:.3f}-{r['high']:.3f}"
        print(f"{r['data']:<34}{r['pairs']:>11}{r['human']:>7}{r['ai']:>6}{r['accuracy']:>20.3f}{interval:>15}"
              f"{r['train_s']:>9.0f}{r['pairs_per_s']:>9.1f}")
    print(f"held-out: human_heldout.jsonl, {results[0]['n_eval']} pairs; base: MiniLM-L6 (22M), CPU")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--q", type=float, nargs="*", default=[0.6, 0.75, 0.9])
    parser.add_argument("--b", type=float, default=0.3, help="the simulated judges' first-slot bias")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-human-only", action="store_true", help="skip the human-only baseline")
    args = parser.parse_args(argv)
    if not (DATA / "human_small.jsonl").exists():
        print(f"{DATA} is not here: nothing to measure", file=sys.stderr)
        return 1
    results = []
    with tempfile.TemporaryDirectory() as tmp, LoopbackServer() as server:
        directory = Path(tmp)
        inputs = write_inputs(directory, None)
        settings = ([] if args.no_human_only else [("human_small", None)]) + [
            (f"human_small + pool judged q={q} b={args.b}", q) for q in args.q]
        for name, q in settings:
            results.append(run_setting(name.replace(" ", "_").replace("=", ""), directory, args, server,
                                       inputs, q) | {"data": name})
            print(f"done: {name}: {results[-1]['accuracy']:.3f}", flush=True)
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
