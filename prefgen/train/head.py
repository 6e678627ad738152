"""Training only the reward head over a frozen base, the base run once per sequence.

Why this is the default: on a few hundred pairs, fine-tuning a whole encoder barely learns in one epoch
(final loss 0.66-0.70 against ln 2 = 0.693) and only memorises in three, and its held-out agreement moves
by up to 0.07 between seeds. Training the head over frozen features is a small, nearly convex problem: it
ends well below ln 2 and lands within a few thousandths between seeds. And because the base never changes,
it runs once per sequence instead of once per epoch, so ten epochs cost seconds after one forward pass,
and a mix search (`prefgen mix --auto`) can train dozens of candidates on a CPU.

The head is the model's own: BERT's pooler + classifier over the [CLS] state, a decoder's `score` over its
last non-padding token. `FeatureHeadModel` calls those same modules on a table of cached features, so TRL's
RewardTrainer trains them unchanged (each "sequence" it sees is one id: its row in the table), and what is
saved afterwards is the ordinary transformers model, loadable by anything that loads one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prefgen.errors import PrefgenError
from prefgen.train.data import pad_batch


@dataclass
class HeadSpec:
    """Where a sequence classifier's head starts, and how it maps one feature vector to a reward."""

    capture: Any  # the module whose first input holds the hidden states the head reads
    select: Callable[[Any, Any], Any]  # (hidden states, input_ids) -> one feature vector per sequence
    modules: list[Any]  # the head's trainable modules
    apply: Callable[[Any], Any]  # features (B, H) -> rewards (B, 1)


def head_spec(model: Any, pad_token_id: int | None) -> HeadSpec:
    """The head of a BERT-style encoder (pooler + classifier) or of a decoder (`score` on the last token)."""
    pooler = getattr(getattr(model, "bert", None), "pooler", None)
    if pooler is not None and hasattr(model, "classifier"):
        dropout = getattr(model, "dropout", None)

        def apply_bert(x: Any) -> Any:
            pooled = pooler(x.unsqueeze(1))  # the pooler reads position 0 of a sequence
            return model.classifier(dropout(pooled) if dropout is not None else pooled)

        return HeadSpec(pooler, lambda hidden, ids: hidden[:, 0], [pooler, model.classifier], apply_bert)
    if hasattr(model, "score"):
        return HeadSpec(model.score, lambda hidden, ids: hidden[_rows(ids), last_token_index(ids, pad_token_id)],
                        [model.score], model.score)
    raise PrefgenError(
        f"--method head needs a BERT-style encoder or a decoder with a `score` head, not {type(model).__name__}: "
        "use --method full or --method lora"
    )


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


def compute_features(model: Any, spec: HeadSpec, sequences: Sequence[Sequence[int]], pad_token_id: int,
                     device: str, batch_size: int = 32) -> Any:
    """One feature vector per sequence (float32, on the CPU), from the frozen base in length-sorted batches."""
    import torch

    captured: list[Any] = []
    hook = spec.capture.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    model.to(device).eval()
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out: Any = None
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                ids, mask = pad_batch([sequences[i] for i in index], pad_token_id, device)
                captured.clear()
                model(input_ids=ids, attention_mask=mask)
                features = spec.select(captured[-1], ids).float().cpu()
                if out is None:
                    out = torch.empty((len(sequences), features.shape[-1]), dtype=torch.float32)
                out[index] = features
    finally:
        hook.remove()
    return out


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


_CACHES: dict[tuple[str, str], "FeatureCache"] = {}


def feature_cache(base: str, device: str) -> FeatureCache:
    """The process's feature cache for one base (and device: GPU kernels round differently)."""
    return _CACHES.setdefault((base, device), FeatureCache())


class FeatureCache:
    """Features of sequences under one frozen base, computed once per process and reused.

    The base is frozen and runs in eval mode, so a sequence's features never change: ensemble members,
    the folds and candidates of a mix search, and repeated benchmark runs all share one forward pass.
    """

    def __init__(self) -> None:
        self.rows: dict[tuple[int, ...], int] = {}
        self.blocks: list[Any] = []
        self._table: Any = None

    def add(self, model: Any, spec: HeadSpec, sequences: Sequence[Sequence[int]], pad_token_id: int,
            device: str) -> int:
        """Compute the features of the sequences not seen yet; returns how many were computed."""
        new = list(dict.fromkeys(tuple(s) for s in sequences if tuple(s) not in self.rows))
        if new:
            self.blocks.append(compute_features(model, spec, new, pad_token_id, device))
            for seq in new:
                self.rows[seq] = len(self.rows)
            self._table = None
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

        columns = {name: dataset[name] for name in dataset.column_names}
        for side in ("chosen_ids", "rejected_ids"):
            columns[side] = [[self.rows[tuple(ids)]] for ids in columns[side]]
        return Dataset.from_dict(columns)
