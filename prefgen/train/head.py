"""Training only the reward head over a frozen base, the base run once per sequence.

Why this is the default: on a few hundred pairs, fine-tuning a whole encoder barely learns in one epoch
(final loss 0.66-0.70 against ln 2 = 0.693) and only memorises in three, and its held-out agreement moves
by up to 0.07 between seeds. Training the head over frozen features is a small, nearly convex problem: it
ends well below ln 2 and lands within a few thousandths between seeds. And because the base never changes,
it runs once per sequence instead of once per epoch, so ten epochs cost seconds after one forward pass,
and a mix search (`prefgen mix --auto`) can train dozens of candidates on a CPU.

The head is either prefgen's response-mean head (`prefgen.train.pooled`: the mean of the final hidden states
over the response's tokens, standardised, one linear layer; the default), or the model's own: BERT's
pooler + classifier over the [CLS] state, a decoder's `score` over its last non-padding token.
`FeatureHeadModel` calls those same modules on a table of cached features, so TRL's RewardTrainer trains
them unchanged (each "sequence" it sees is one id: its row in the table), and what is saved afterwards is
the whole transformers model, loadable by transformers' Auto classes.

Features are cached per (base, pooling, device) for the process and on disk (`FeatureCache`): a 135M
decoder takes minutes per thousand sequences on a CPU, and a mix search or a second `train` on the same
pairs then costs seconds.
"""

from __future__ import annotations

import hashlib
import os
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefgen.errors import PrefgenError
from prefgen.train.data import pad_batch


@dataclass
class HeadSpec:
    """How a reward model splits into a frozen feature extractor and a trainable head."""

    extract: Callable[[Any, Any, Any], Any]  # (input_ids, attention_mask, response starts) -> (B, H) features
    modules: list[Any]  # the head's trainable modules
    apply: Callable[[Any], Any]  # features (B, H) -> rewards (B, 1)
    fit: Callable[[Any], None] = lambda features: None  # sees the training features once, before training
    pooling: str = "model"  # part of the features' identity in the cache
    # When the head is one Linear module (modules[0]) over a fixed transform of the features, that transform:
    # copies of the head then train as one matrix (`prefgen.train.regularise`).
    linear_inputs: Callable[[Any], Any] | None = None


def head_spec(model: Any, pad_token_id: int | None) -> HeadSpec:
    """The head of a response-mean reward model, a BERT-style encoder (pooler + classifier over [CLS]), or
    a decoder (`score` on the last token)."""
    from prefgen.train.pooled import PrefgenRewardModel, response_mask

    if isinstance(model, PrefgenRewardModel):
        return HeadSpec(lambda ids, mask, starts: model.pooled(ids, mask, response_mask(mask, starts)),
                        [model.score], model.reward_from_features, model.set_standardisation,
                        model.config.pooling, linear_inputs=model.standardised)
    pooler = getattr(getattr(model, "bert", None), "pooler", None)
    if pooler is not None and hasattr(model, "classifier"):
        dropout = getattr(model, "dropout", None)

        def apply_bert(x: Any) -> Any:
            pooled = pooler(x.unsqueeze(1))  # the pooler reads position 0 of a sequence
            return model.classifier(dropout(pooled) if dropout is not None else pooled)

        return HeadSpec(_captured(model, pooler, lambda hidden, ids: hidden[:, 0]), [pooler, model.classifier],
                        apply_bert)
    if hasattr(model, "score"):
        def last_token(hidden: Any, ids: Any) -> Any:
            return hidden[_rows(ids), last_token_index(ids, pad_token_id)]

        return HeadSpec(_captured(model, model.score, last_token), [model.score], model.score,
                        linear_inputs=lambda features: features)
    raise PrefgenError(
        f"--method head needs a BERT-style encoder or a decoder with a `score` head, not {type(model).__name__}: "
        "use --method full or --method lora"
    )


def _captured(model: Any, head_input: Any, select: Callable[[Any, Any], Any]) -> Callable[[Any, Any, Any], Any]:
    """Features = what `head_input` receives when the whole model runs, reduced to one vector by `select`."""

    def extract(ids: Any, mask: Any, starts: Any) -> Any:
        captured: list[Any] = []
        hook = head_input.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
        try:
            model(input_ids=ids, attention_mask=mask)
        finally:
            hook.remove()
        return select(captured[-1], ids)

    return extract


def _rows(input_ids: Any) -> Any:
    import torch

    return torch.arange(input_ids.shape[0], device=input_ids.device)


def last_token_index(input_ids: Any, pad_token_id: int | None) -> Any:
    """The position transformers' decoder classifiers read: the last token that is not padding."""
    import torch

    if pad_token_id is None:
        return torch.full((input_ids.shape[0],), input_ids.shape[1] - 1, device=input_ids.device)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    return (positions * (input_ids != pad_token_id)).argmax(-1)


Sequence_ = tuple[tuple[int, ...], int]  # (token ids, position where the response starts)


def compute_features(model: Any, spec: HeadSpec, sequences: Sequence[Sequence_], pad_token_id: int,
                     device: str, precision: str = "fp32", batch_size: int = 32,
                     on_block: Callable[[list[int], Any], None] | None = None, block_size: int = 512) -> Any:
    """One feature vector per sequence (float32, on the CPU), from the frozen base in length-sorted batches,
    the base run in `precision` ("fp32", or "bf16": matrix products in bf16 under autocast).

    `on_block(indices, features)` receives the features of every `block_size` sequences done (and of the
    last ones), so that a caller can keep them before the whole set is through."""
    import torch
    from rich.console import Console
    from rich.progress import Progress

    model.to(device).eval()
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    out: Any = None
    console = Console(stderr=True)
    # A 135M decoder takes minutes per thousand sequences on a CPU: show it (on a terminal only).
    with torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=torch.bfloat16,
                                                enabled=precision == "bf16"), \
            Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"features of {len(sequences)} sequences", total=len(sequences))
        clock = FeatureClock(sum(len(ids) for ids, _ in sequences))
        pending: list[int] = []
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            ids, mask = pad_batch([sequences[i][0] for i in index], pad_token_id, device)
            starts = torch.tensor([sequences[i][1] for i in index], device=device)
            features = spec.extract(ids, mask, starts).float().cpu()
            if out is None:
                out = torch.empty((len(sequences), features.shape[-1]), dtype=torch.float32)
            out[index] = features
            progress.advance(task, len(index))
            pending += index
            if on_block is not None and (len(pending) >= block_size or start + batch_size >= len(order)):
                on_block(pending, out[pending])
                pending = []
            estimate = clock.after_batch(int(mask.sum()))
            if estimate is not None:
                console.print(f"features of {len(sequences)} sequences ({clock.total_tokens} tokens) on {device} "
                              f"in {precision}: about {estimate} at this machine's current speed",
                              soft_wrap=True)  # one line in a log too, where rich would fold it at 80 columns
    return out


class FeatureClock:
    """The time left to compute features, extrapolated from the first batches by tokens.

    Batches go shortest first, so the estimate is taken once a few seconds of work have gone by (short
    sequences cost more per token in overheads) and said once."""

    def __init__(self, total_tokens: int, after_s: float = 3.0) -> None:
        self.total_tokens, self.after_s = total_tokens, after_s
        self.started, self.done_tokens, self.said = time.perf_counter(), 0, False

    def after_batch(self, tokens: int) -> str | None:
        self.done_tokens += tokens
        elapsed = time.perf_counter() - self.started
        if self.said or elapsed < self.after_s or self.done_tokens >= self.total_tokens:
            return None
        self.said = True
        return duration_words(elapsed * (self.total_tokens - self.done_tokens) / self.done_tokens)


def duration_words(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def feature_head_model(model: Any, spec: HeadSpec, features: Any) -> Any:
    """A module that TRL trains like a reward model: input id i means "the sequence whose features are row i".

    Its parameters are the original model's head modules, so training it trains them in place.
    """
    import torch
    from transformers.modeling_outputs import SequenceClassifierOutput

    class FeatureHeadModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = model.config  # TRL sets the pad token on it
            self.head = torch.nn.ModuleList(spec.modules)
            self.register_buffer("features", features, persistent=False)

        def add_model_tags(self, tags: Any) -> None:
            model.add_model_tags(tags)  # TRL tags the model it trains; the saved model is the whole one

        def forward(self, input_ids: Any, attention_mask: Any = None, **_: Any) -> Any:
            # TRL passes use_cache and the attention mask of its padded batch; one id per row needs neither.
            return SequenceClassifierOutput(logits=spec.apply(self.features[input_ids[:, 0]]))

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for module in spec.modules:
        module.requires_grad_(True)
    return FeatureHeadModel()


def feature_rows(datasets: Sequence[Any]) -> list[int]:
    """The feature rows that indexed datasets (`FeatureCache.index_dataset`) train on."""
    return sorted({ids[0] for dataset in datasets for side in ("chosen_ids", "rejected_ids") for ids in dataset[side]})


_CACHES: dict[tuple[str, str, str, str], FeatureCache] = {}


def feature_cache(base: str, device: str, pooling: str, precision: str = "fp32") -> FeatureCache:
    """The feature cache of one base, pooling, device and precision (GPU kernels and bf16 round
    differently): kept for the process, and on disk under `$PREFGEN_CACHE_DIR` (default `~/.cache/prefgen`;
    "off" keeps none)."""
    key = (base, device, pooling, precision)
    if key not in _CACHES:
        _CACHES[key] = FeatureCache(disk_directory(base, device, pooling, precision), precision)
    return _CACHES[key]


def disk_directory(base: str, device: str, pooling: str, precision: str = "fp32") -> Path | None:
    """Where the features of one (base, pooling, device, precision) live on disk; the base's identity is its
    files' names, sizes and modification times, so a changed base never reads stale features."""
    root = os.environ.get("PREFGEN_CACHE_DIR", str(Path.home() / ".cache" / "prefgen"))
    if root.strip().lower() in ("", "off", "0", "none"):
        return None
    import torch

    path = Path(base)
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    identity = [str(path.resolve()), pooling, device, precision, torch.__version__]
    identity += [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]
    digest = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:16]
    return Path(root).expanduser() / "features" / f"{path.stem}-{pooling}-{precision}-{digest}"


def sequence_key(sequence: Sequence_) -> bytes:
    ids, start = sequence
    return hashlib.blake2b(array("q", [start, *ids]).tobytes(), digest_size=16).digest()


class FeatureCache:
    """Features of sequences under one frozen base, computed once and reused.

    The base is frozen and runs in eval mode, so a sequence's features never change: ensemble members,
    the folds and candidates of a mix search, repeated `train` runs and benchmark runs all share one forward
    pass. Blocks of new features are also written to `directory` (one file per block, written then renamed,
    so concurrent processes never read half a file) and read back by later processes.
    """

    def __init__(self, directory: Path | None = None, precision: str = "fp32") -> None:
        self.directory, self.precision = directory, precision
        self.rows: dict[bytes, int] = {}
        self.blocks: list[Any] = []
        self._table: Any = None
        if directory is not None and directory.is_dir():
            for block in sorted(directory.glob("*.pt")):
                self._load_block(block)

    def _load_block(self, path: Path) -> None:
        import torch

        try:
            saved = torch.load(path, weights_only=True)
        except Exception:  # a block from an interrupted or older writer: recomputed when needed
            return
        new = [i for i, key in enumerate(saved["keys"]) if bytes(key) not in self.rows]
        if not new:
            return
        self._append([bytes(saved["keys"][i]) for i in new], saved["features"][new])

    def _append(self, keys: list[bytes], features: Any) -> None:
        self.blocks.append(features)
        for key in keys:
            self.rows[key] = len(self.rows)
        self._table = None

    def _save_block(self, keys: list[bytes], features: Any) -> None:
        import torch

        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{time.time_ns()}-{os.getpid()}.pt"
        partial = final.with_suffix(".partial")
        torch.save({"keys": [list(key) for key in keys], "features": features}, partial)
        partial.replace(final)

    def add(self, model: Any, spec: HeadSpec, sequences: Sequence[Sequence_], pad_token_id: int,
            device: str, block_size: int = 512) -> int:
        """Compute the features of the sequences not seen yet; returns how many were computed. Every
        `block_size` sequences done are kept on disk at once."""
        keyed = {sequence_key(seq): seq for seq in ((tuple(ids), start) for ids, start in sequences)}
        new = {key: seq for key, seq in keyed.items() if key not in self.rows}
        if new:
            keys = list(new)
            # Saved a block at a time as they are done: a run killed an hour into a large set keeps that hour.
            features = compute_features(model, spec, list(new.values()), pad_token_id, device, self.precision,
                                        on_block=lambda index, done: self._save_block([keys[i] for i in index],
                                                                                      done),
                                        block_size=block_size)
            self._append(keys, features)
        return len(new)

    def table(self) -> Any:
        import torch

        if self._table is None:
            self._table = torch.cat(self.blocks) if len(self.blocks) > 1 else self.blocks[0]
            self.blocks = [self._table]
        return self._table

    def index_dataset(self, dataset: Any) -> Any:
        """The dataset with each side replaced by the row of its features (TRL keeps the other columns)."""
        from datasets import Dataset

        columns = {name: dataset[name] for name in dataset.column_names if not name.endswith("_start")}
        for side in ("chosen", "rejected"):
            starts = dataset[f"{side}_start"]
            columns[f"{side}_ids"] = [[self.rows[sequence_key((ids, start))]]
                                      for ids, start in zip(columns[f"{side}_ids"], starts, strict=True)]
        return Dataset.from_dict(columns)
