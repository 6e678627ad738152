"""Training throughput: prefgen's reward-model path vs a plain TRL RewardTrainer script.

Both train the same base (the packaged MiniLM encoder by default) on the same HH-RLHF harmless pairs with
the same batch size, learning rate, seed and max_length, in the same process, one after the other:

- plain TRL: `RewardTrainer(model=base_dir, train_dataset=Dataset.from_list(hh_rows))` with the HH
  transcripts as TRL's implicit-prompt format; TRL tokenises, drops pairs longer than max_length, and
  batches in random order padded to the longest side.
- prefgen: `train_reward_model`, which truncates before TRL (keeping the end) and groups batches by length.

Settings that are not what is being compared are made equal: both use the precision prefgen picks (fp32
on CPU, where TRL's config would turn on bf16), no activation checkpointing (TRL's default is on), and the
same learning rate.
pairs/s is TRL's `train_samples_per_second` (pairs trained / seconds of `trainer.train()`); the plain
script trains fewer pairs, because TRL dropped the long ones. Held-out agreement is measured on the same
held-out pairs for both, each model reading its own training format, truncated from the left.

    .venv/bin/python benchmarks/train_throughput.py                # ~6 minutes on 2 CPU cores
    .venv/bin/python benchmarks/train_throughput.py --seeds 0 1 2 --heldout-pairs 500
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
HH_DIR = SHARED / "data" / "hh-rlhf-harmless"
ASSISTANT = "\n\nAssistant:"


def read_hh(path: Path, limit: int) -> list[dict[str, str]]:
    """HH lines {"chosen": transcript, "rejected": transcript}, the first `limit` of them."""
    with path.open() as lines:
        return [json.loads(line) for _, line in zip(range(limit), lines)]


def split_hh(pair: dict[str, str]) -> dict[str, str] | None:
    """TRL explicit-prompt row: the shared transcript up to the last Assistant marker is the prompt."""
    shared = os.path.commonprefix([pair["chosen"], pair["rejected"]])
    cut = shared.rfind(ASSISTANT)
    if cut < 0:
        return None
    cut += len(ASSISTANT)
    return {"prompt": pair["chosen"][:cut], "chosen": pair["chosen"][cut:], "rejected": pair["rejected"][cut:]}


def plain_trl(train_hh: list[dict], base: str, args: argparse.Namespace, out_dir: Path, bf16: bool) -> dict:
    """What a user writes from TRL's docs; only the BERT EOS and the precision/checkpointing are set."""
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer
    from datasets import Dataset

    tokenizer = AutoTokenizer.from_pretrained(base)
    config = RewardConfig(
        output_dir=str(out_dir), per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
        learning_rate=args.lr, max_length=args.max_length, seed=args.seed, eos_token=tokenizer.sep_token,
        bf16=bf16, activation_checkpointing=False, save_strategy="no", report_to="none", logging_steps=10,
    )
    cpu_started = time.process_time()
    trainer = RewardTrainer(model=base, args=config, train_dataset=Dataset.from_list(train_hh),
                            processing_class=tokenizer)
    metrics = trainer.train().metrics
    trainer.model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"n_train": len(trainer.train_dataset), "train_runtime_s": metrics["train_runtime"],
            "pairs_per_s": metrics["train_samples_per_second"], "cpu_s": time.process_time() - cpu_started,
            "model_dir": str(out_dir)}


def prefgen_train(train_rows: list[dict], base: str, args: argparse.Namespace, out_dir: Path) -> dict:
    from prefgen.train.config import TrainConfig
    from prefgen.train.trainer import train_reward_model

    # Full fine-tuning, like the plain TRL script it is compared with (the head method never backpropagates
    # through the base, so its pairs/s would not be a like-for-like figure).
    config = TrainConfig(base=base, out_dir=out_dir, method="full", max_length=args.max_length,
                         batch_size=args.batch_size, epochs=args.epochs, lr=args.lr, seed=args.seed)
    cpu_started = time.process_time()
    result = train_reward_model(train_rows, config)
    return {"n_train": result.n_train, "train_runtime_s": result.train_runtime_s, "pairs_per_s": result.pairs_per_s,
            "cpu_s": time.process_time() - cpu_started, "model_dir": result.out_dir,
            "n_truncated": result.data_report["n_truncated"]}


def plain_rewards(model_dir: str, texts: list[str], max_length: int, batch_size: int = 16) -> list[float]:
    """Rewards in the plain script's training format: TRL appended the EOS text to the transcript."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.truncation_side = "left"
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    texts = [text + tokenizer.eos_token for text in texts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    rewards = [0.0] * len(texts)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in index], truncation=True, max_length=max_length, padding=True,
                          return_tensors="pt")
        with torch.inference_mode():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]
        for i, value in zip(index, logits.tolist()):
            rewards[i] = value
    return rewards


def agreement(r_chosen: list[float], r_rejected: list[float]) -> dict:
    from prefgen.intervals import mean_interval
    from prefgen.train.evaluate import accuracy, pairwise_correct

    lo, hi = mean_interval(pairwise_correct(r_chosen, r_rejected))
    return {"agreement": accuracy(r_chosen, r_rejected), "ci95": [lo, hi]}


def evaluate_both(plain: dict, ours: dict, heldout_hh: list[dict], heldout_rows: list[dict], max_length: int) -> None:
    from prefgen.train.score import load_reward_model, score_pairs

    n = len(heldout_hh)
    transcripts = [p["chosen"] for p in heldout_hh] + [p["rejected"] for p in heldout_hh]
    plain_scores = plain_rewards(plain["model_dir"], transcripts, max_length)
    plain.update(agreement(plain_scores[:n], plain_scores[n:]))
    chosen, rejected = score_pairs(load_reward_model(ours["model_dir"]), heldout_rows)
    ours.update(agreement(chosen.mean, rejected.mean))


def parse_args() -> argparse.Namespace:
    from prefgen.train.config import REGIMES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-pairs", type=int, default=200)
    parser.add_argument("--heldout-pairs", type=int, default=300)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--lr", type=float, default=REGIMES["full"].lr,
                        help="both paths (default: prefgen's for --method full)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run of both paths per seed")
    parser.add_argument("--base", default=None, help="model directory (default: the packaged MiniLM)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if not (HH_DIR / "human_small.jsonl").is_file():
        print(f"skipped: {HH_DIR}/human_small.jsonl not found (the shared HH-RLHF data is not here)")
        return 0
    from prefgen.train.config import resolve_base
    from prefgen.train.common import pick_device

    base = resolve_base(args.base)
    train_hh = read_hh(HH_DIR / "human_small.jsonl", args.train_pairs)
    heldout = [(pair, row) for pair, row in ((p, split_hh(p)) for p in read_hh(HH_DIR / "human_heldout.jsonl",
                                                                              args.heldout_pairs)) if row]
    heldout_hh, heldout_rows = [pair for pair, _ in heldout], [row for _, row in heldout]
    train_rows = [row for row in map(split_hh, train_hh) if row]
    device = pick_device()
    print(f"device {device.device} ({device.dtype}), {os.cpu_count()} cores; {len(train_hh)} train pairs, "
          f"{len(heldout_rows)} held-out pairs, max_length {args.max_length}, batch {args.batch_size}, lr {args.lr}")
    started, runs = time.perf_counter(), []
    for seed in args.seeds:
        seed_args = argparse.Namespace(**{**vars(args), "seed": seed})
        with tempfile.TemporaryDirectory() as tmp:
            plain = plain_trl(train_hh, base, seed_args, Path(tmp) / "plain", device.bf16)
            ours = prefgen_train(train_rows, base, seed_args, Path(tmp) / "prefgen")
            evaluate_both(plain, ours, heldout_hh, heldout_rows, args.max_length)
        runs.append({"seed": seed, "plain_trl": plain, "prefgen": ours})
    report(runs, len(train_hh))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "args": {**vars(args), "json": str(args.json)},
                                         "device": device._asdict(), "wall_s": time.perf_counter() - started},
                                        indent=2))
    return 0


def report(runs: list[dict], n_offered: int) -> None:
    print(f"\n{'seed':>4} {'path':<10} {'pairs trained':>14} {'train s':>8} {'pairs/s':>8} {'CPU s':>7}  "
          "held-out agreement (95% CI)")
    for run in runs:
        for name, key in (("plain TRL", "plain_trl"), ("prefgen", "prefgen")):
            r = run[key]
            lo, hi = r["ci95"]
            print(f"{run['seed']:>4} {name:<10} {r['n_train']:>7} of {n_offered:<4} {r['train_runtime_s']:>8.1f} "
                  f"{r['pairs_per_s']:>8.2f} {r['cpu_s']:>7.0f}  {r['agreement']:.3f} ({lo:.3f}-{hi:.3f})")
    ratio = sum(r["prefgen"]["pairs_per_s"] / r["plain_trl"]["pairs_per_s"] for r in runs) / len(runs)
    # Pairs per CPU-second of the whole call (load, tokenise, train, save): steadier than wall time when
    # other processes share the cores.
    cpu_ratio = sum(_per_cpu_s(r["prefgen"]) / _per_cpu_s(r["plain_trl"]) for r in runs) / len(runs)
    plain_acc = sum(r["plain_trl"]["agreement"] for r in runs) / len(runs)
    ours_acc = sum(r["prefgen"]["agreement"] for r in runs) / len(runs)
    print(f"\nmean over {len(runs)} seed(s): throughput ratio prefgen / plain TRL {ratio:.2f}x "
          f"(pairs per CPU-second, end to end: {cpu_ratio:.2f}x); "
          f"held-out agreement plain TRL {plain_acc:.3f}, prefgen {ours_acc:.3f} ({ours_acc - plain_acc:+.3f})")


def _per_cpu_s(result: dict) -> float:
    return result["n_train"] / result["cpu_s"]


if __name__ == "__main__":
    sys.exit(main())
