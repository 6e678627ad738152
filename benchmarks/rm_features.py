"""Frozen-base features at the machine's speed: fp32 against each faster path, interleaved, with parity.

Speed: the same sample of HH-RLHF sequences (sides of `human_heldout.jsonl` pairs, truncated as training
truncates them) is run through SmolLM2-135M's response-mean pooling by every variant in turn, round after
round, the order rotated each round, so that every variant meets the same load on shared cores. Reported per
variant: sequences/s and GFLOP/s (2 x non-embedding parameters x tokens, padding not counted) as medians over
the rounds, the median of the per-round ratios to fp32 (paired: the same round's load), the load average
around the rounds, and the features' worst cosine similarity to fp32's. Variants:
- fp32: what prefgen did before (batches of 32 sequences sorted by length, 2 threads);
- fp32-tokens: batches of up to `--tokens` tokens instead of 32 sequences;
- fp32-1-thread: torch on one thread;
- bf16-autocast: matrix products in bf16 under autocast (prefgen's `precision="bf16"`);
- bf16-weights: a bf16 copy of the base;
- int8-dynamic: torch's dynamic int8 quantisation of the linear layers (VNNI kernels).

Parity (`--parity`): held-out agreement of the default head (`train_reward_model`, weight decay chosen by
cross-validation) trained on `human_small.jsonl` and scored on `human_heldout.jsonl`, from fp32 features and
from bf16 features, over `--seeds`; the features are computed through prefgen's cache, so a second run only
trains heads.

    .venv/bin/python benchmarks/rm_features.py                         # speed, 64 pairs (128 sequences), 4 rounds
    .venv/bin/python benchmarks/rm_features.py --variants fp32 bf16-autocast --rounds 6
    .venv/bin/python benchmarks/rm_features.py --parity --seeds 0 1 2 --no-speed
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.agreement_real import DATA  # noqa: E402
from benchmarks.rm_quality_real import heldout_pairs  # noqa: E402

VARIANTS = ("fp32", "fp32-tokens", "fp32-1-thread", "bf16-autocast", "bf16-weights", "int8-dynamic")


def load(base: str):
    import torch

    from prefgen.train.config import resolve_base
    from prefgen.train.pooled import PrefgenRewardModel
    from prefgen.train.trainer import frozen_base, load_tokenizer

    resolved = resolve_base(base)
    tokenizer = load_tokenizer(resolved)
    model = PrefgenRewardModel.from_base(frozen_base(resolved)).eval()
    non_embedding = sum(p.numel() for name, p in model.base.named_parameters() if "embed" not in name)
    return tokenizer, model, non_embedding, torch


def sample(tokenizer, pairs: int) -> list[tuple[list[int], int]]:
    from prefgen.train.data import build_preference_dataset
    from prefgen.train.trainer import sides

    dataset, _ = build_preference_dataset(heldout_pairs()[:pairs], tokenizer, 256, starts=True)
    return sides(dataset)


def batches(sequences, order, batch_size: int | None, tokens: int | None):
    if batch_size:
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]
        return
    batch: list[int] = []
    for i in order:  # sorted by length: the newest is the longest
        if batch and (len(batch) + 1) * len(sequences[i][0]) > tokens:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def run(model, sequences, pad_token_id: int, torch, *, batch_size: int | None = 32, tokens: int | None = None,
        autocast: bool = False, threads: int | None = None):
    """Seconds to compute every sequence's features, and the features (in the sequences' order)."""
    from prefgen.train.data import pad_batch
    from prefgen.train.pooled import response_mask

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    out = [None] * len(sequences)
    started = time.perf_counter()
    try:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            for index in batches(sequences, order, batch_size, tokens):
                ids, mask = pad_batch([sequences[i][0] for i in index], pad_token_id, "cpu")
                starts = torch.tensor([sequences[i][1] for i in index])
                features = model.pooled(ids, mask, response_mask(mask, starts)).float()
                for row, i in enumerate(index):
                    out[i] = features[row]
    finally:
        torch.set_num_threads(before)
    return time.perf_counter() - started, torch.stack(out)


def variants(model, args, torch) -> dict:
    made = {}
    for name in args.variants:
        if name == "fp32":
            made[name] = {"model": model}
        elif name == "fp32-tokens":
            made[name] = {"model": model, "batch_size": None, "tokens": args.tokens}
        elif name == "fp32-1-thread":
            made[name] = {"model": model, "threads": 1}
        elif name == "bf16-autocast":
            made[name] = {"model": model, "autocast": True}
        elif name == "bf16-weights":
            made[name] = {"model": copy.deepcopy(model).to(torch.bfloat16)}
        elif name == "int8-dynamic":
            made[name] = {"model": torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear},
                                                                          dtype=torch.qint8)}
    return made


def speed(args) -> None:
    tokenizer, model, non_embedding, torch = load(args.base)
    sequences = sample(tokenizer, args.pairs)
    tokens = sum(len(ids) for ids, _ in sequences)
    made = variants(model, args, torch)
    names = list(made)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    cosine: dict[str, float] = {}
    loads = [os.getloadavg()[0]]
    reference = None
    print(f"{len(sequences)} sequences, {tokens} tokens; {non_embedding / 1e6:.0f}M non-embedding parameters; "
          f"{torch.get_num_threads()} threads; load average {loads[0]:.2f}", flush=True)
    for round_ in range(args.rounds):
        order = names[round_ % len(names):] + names[: round_ % len(names)]
        for name in order:
            settings = {k: v for k, v in made[name].items() if k != "model"}
            spent, features = run(made[name]["model"], sequences, tokenizer.pad_token_id, torch, **settings)
            seconds[name].append(spent)
            if name == "fp32" and reference is None:
                reference = features
            if reference is not None:
                cosine[name] = float(torch.nn.functional.cosine_similarity(features, reference).min())
        loads.append(os.getloadavg()[0])
        print(f"round {round_}: " + ", ".join(f"{n} {len(sequences) / seconds[n][-1]:.2f}/s" for n in names)
              + f"; load average {loads[-1]:.2f}", flush=True)
    base_times = seconds.get("fp32")
    print(f"\n| variant | sequences/s | GFLOP/s | x fp32 (median of per-round ratios) | min cosine to fp32 |")
    print("|---|---|---|---|---|")
    for name in names:
        median = statistics.median(seconds[name])
        ratio = (f"{statistics.median(b / s for b, s in zip(base_times, seconds[name], strict=True)):.2f}"
                 if base_times else "-")
        print(f"| {name} | {len(sequences) / median:.2f} | {2 * non_embedding * tokens / median / 1e9:.0f} | "
              f"{ratio} | {cosine.get(name, float('nan')):.5f} |")
    print(f"load average (1 min) over the rounds: {min(loads):.2f} to {max(loads):.2f}, median "
          f"{statistics.median(loads):.2f}, on {os.cpu_count()} cores")


def parity(args) -> None:
    from prefgen.pipelines.training.stages import rows_from_file
    from prefgen.train.config import TrainConfig
    from prefgen.train.trainer import train_reward_model

    rows = [r for r in rows_from_file(str(DATA / "human_small.jsonl"), "hh", skip_bad=True) if not r.get("tie")]
    heldout = heldout_pairs()
    scores: dict[str, dict[int, float]] = {"fp32": {}, "bf16": {}}
    for seed in args.seeds:
        for precision in scores:
            started = time.perf_counter()
            result = train_reward_model(rows, TrainConfig(base=args.base, precision=precision, seed=seed,
                                                          out_dir="unused"), score_rows=heldout, save=False)
            scores[precision][seed] = sum(c > r for c, r in result.scores) / len(result.scores)
            print(f"seed {seed} {precision}: held-out agreement {scores[precision][seed]:.3f} (features "
                  f"computed {result.features_computed} in {result.features_s:.0f} s; weight decay "
                  f"{result.config['weight_decay']:g}; {time.perf_counter() - started:.0f} s)", flush=True)
    diffs = [scores["bf16"][s] - scores["fp32"][s] for s in args.seeds]
    print(f"\nheld-out agreement, {len(rows)} human_small pairs -> {len(heldout)} human_heldout pairs, seeds "
          f"{args.seeds}: fp32 {statistics.mean(scores['fp32'].values()):.4f}, bf16 "
          f"{statistics.mean(scores['bf16'].values()):.4f}; bf16 - fp32 per seed "
          + ", ".join(f"{d:+.4f}" for d in diffs) + f" (largest {max(abs(d) for d in diffs):.4f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="smollm2")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--pairs", type=int, default=64, help="held-out pairs whose two sides are the sample")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=8192, help="fp32-tokens: tokens per batch")
    parser.add_argument("--parity", action="store_true", help="also held-out agreement, fp32 vs bf16 features")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    if not (DATA / "human_heldout.jsonl").exists():
        print(f"{DATA} is not here: nothing to measure", file=sys.stderr)
        return 1
    if "fp32" in args.variants:  # the reference goes first
        args.variants = ["fp32", *[v for v in args.variants if v != "fp32"]]
    if not args.no_speed:
        speed(args)
    if args.parity:
        parity(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
