"""Which training regime learns on a small human set? Reward models on real HH-RLHF harmless pairs.

Trains on `human_small.jsonl` (500 pairs) with each regime and several seeds, evaluates on
`human_heldout.jsonl` (500 pairs), and prints per seed the final training loss (ln 2 = 0.693 is a model that
knows nothing), held-out agreement and wall time, then mean and spread per regime and the learning curve
(logged training loss per optimiser step) of the first seed.

    .venv/bin/python benchmarks/rm_regime.py                              # head (default) and quick, seeds 0-4
    .venv/bin/python benchmarks/rm_regime.py --regimes head --seeds 0 1 2
    .venv/bin/python benchmarks/rm_regime.py --regimes head --base path/to/model.gguf --max-length 512
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prefgen.pipelines.training.stages import rows_from_file  # noqa: E402
from prefgen.train.config import TrainConfig  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless"
REGIMES = {
    "head": lambda **kw: TrainConfig(**kw),
    "quick": lambda **kw: TrainConfig(quick=True, **kw),
    "full-3ep": lambda **kw: TrainConfig(method="full", epochs=3, **kw),
}


def run(regime: str, seed: int, rows: list, heldout: list, args: argparse.Namespace, tmp: Path) -> dict:
    from prefgen.train.evaluate import evaluate_model
    from prefgen.train.trainer import train_reward_model

    config = REGIMES[regime](out_dir=tmp / f"{regime}-{seed}", seed=seed, max_length=args.max_length,
                             base=args.base)
    started = time.perf_counter()
    result = train_reward_model(rows, config)
    train_s = time.perf_counter() - started
    report = evaluate_model(config.out_dir, heldout, batch_size=32, plots=False)
    curve = [(entry["step"], round(entry["loss"], 3)) for entry in result.log_history if "loss" in entry]
    return {"regime": regime, "seed": seed, "final_loss": result.final_loss, "agreement": report.metrics["accuracy"],
            "train_s": train_s, "features_s": result.features_s, "curve": curve}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regimes", nargs="+", default=["head", "quick"], choices=sorted(REGIMES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--base", default=None, help="model directory or .gguf file (default: packaged MiniLM)")
    args = parser.parse_args(argv)
    if not (DATA / "human_small.jsonl").exists():
        print(f"{DATA} is not here: nothing to measure", file=sys.stderr)
        return 1
    rows = [r for r in rows_from_file(str(DATA / "human_small.jsonl"), "hh", skip_bad=True) if not r.get("tie")]
    heldout = rows_from_file(str(DATA / "human_heldout.jsonl"), "hh", skip_bad=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for regime in args.regimes:
            for seed in args.seeds:
                results.append(run(regime, seed, rows, heldout, args, Path(tmp)))
                r = results[-1]
                print(f"{regime:<9} seed {seed}: final loss {r['final_loss']:.3f}  held-out {r['agreement']:.3f}  "
                      f"train {r['train_s']:.0f}s (features {r['features_s']:.0f}s)", flush=True)
    print(f"\n{len(rows)} train pairs, {len(heldout)} held-out pairs, max_length {args.max_length}, "
          f"ln 2 = {math.log(2):.3f}")
    print(f"{'regime':<10}{'final loss':>12}{'held-out mean':>15}{'sd':>8}{'min-max':>14}{'train s':>9}")
    for regime in args.regimes:
        group = [r for r in results if r["regime"] == regime]
        acc = [r["agreement"] for r in group]
        loss = statistics.mean(r["final_loss"] for r in group)
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        print(f"{regime:<10}{loss:>12.3f}{statistics.mean(acc):>15.3f}{sd:>8.3f}"
              f"{f'{min(acc):.3f}-{max(acc):.3f}':>14}{statistics.mean(r['train_s'] for r in group):>9.0f}")
    for regime in args.regimes:
        first = next(r for r in results if r["regime"] == regime)
        print(f"learning curve, {regime}, seed {first['seed']} (step, loss): {first['curve']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
