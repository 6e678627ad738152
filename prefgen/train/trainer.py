"""Reward-model training with TRL's RewardTrainer (Bradley-Terry loss, TRL's own implementation).

prefgen adds what TRL 1.16 leaves to the caller: truncation before TRL (see `prefgen.train.data`),
batches grouped by length (TRL's preference rows break transformers' own length grouping), device and
precision choice, LoRA with a fully trained head, a merged checkpoint, and a record of the run.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from prefgen.errors import PrefgenError
from prefgen.train.config import TrainConfig, resolve_base
from prefgen.train.data import build_preference_dataset, prepare_tokenizer, token_layout

TRAIN_RECORD = "prefgen_train.json"
ENSEMBLE_MANIFEST = "ensemble.json"


class DeviceChoice(NamedTuple):
    device: str  # "cuda" or "cpu"
    dtype: str  # precision of the forward/backward pass
    bf16: bool  # TrainingArguments.bf16 (mixed precision; master weights stay fp32)


@dataclass
class TrainResult:
    out_dir: str
    n_train: int
    data_report: dict[str, Any]
    initial_loss: float | None
    final_loss: float | None
    log_history: list[dict[str, Any]]
    steps: int
    device: str
    dtype: str
    duration_s: float  # the whole call: loading, tokenising, training, saving
    train_runtime_s: float  # trainer.train() alone
    pairs_per_s: float  # pairs seen per second of trainer.train()
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EnsembleResult:
    out_dir: str
    members: list[TrainResult] = field(default_factory=list)
    manifest_path: str = ""


def pick_device(cuda_available: bool | None = None, bf16_supported: bool | None = None) -> DeviceChoice:
    """CUDA with bf16 mixed precision when a GPU can do it, else CPU in fp32.

    The arguments are for tests; by default torch is asked.
    """
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        return DeviceChoice("cpu", "float32", False)
    if bf16_supported is None:
        import torch

        bf16_supported = torch.cuda.is_bf16_supported()
    # fp16 needs loss scaling and overflows on reward logits; pre-Ampere GPUs train in fp32 instead.
    return DeviceChoice("cuda", "bfloat16", True) if bf16_supported else DeviceChoice("cuda", "float32", False)


def load_tokenizer(base: str) -> Any:
    from transformers import AutoTokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(base))


def load_base_model(base: str, tokenizer: Any) -> Any:
    """The base as a one-output sequence classifier (a new, seeded reward head on top)."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    # The "classifier/score weights newly initialised" report is the expected outcome here, not news.
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(previous)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def reward_head_name(model: Any) -> str:
    """The attribute holding the classification head: `classifier` (BERT family) or `score` (decoders)."""
    for name in ("score", "classifier"):
        if hasattr(model, name):
            return name
    raise PrefgenError(f"{type(model).__name__} has no 'score' or 'classifier' head to train")


def lora_config(model: Any, config: TrainConfig) -> Any:
    from peft import LoraConfig, TaskType
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    known = model.config.model_type in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        # PEFT knows the attention projections of common architectures; others get every linear layer.
        target_modules=None if known else "all-linear",
        modules_to_save=[reward_head_name(model)],
    )


def reward_config(config: TrainConfig, device: DeviceChoice, eos_token: str) -> Any:
    from trl import RewardConfig

    return RewardConfig(
        output_dir=str(config.out_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        learning_rate=config.lr,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        max_length=config.max_length,
        eos_token=eos_token,
        seed=config.seed,
        data_seed=config.seed,
        bf16=device.bf16,
        use_cpu=device.device == "cpu",
        activation_checkpointing=config.gradient_checkpointing,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
    )


def length_grouped_order(
    lengths: Sequence[int], batch_size: int, generator: Any = None, megabatch_batches: int = 50
) -> list[int]:
    """Indices whose consecutive runs of `batch_size` hold pairs of similar length, batches in random order.

    Like transformers' `get_length_grouped_indices` (shuffle, cut into megabatches, sort each by length),
    with two differences that matter on small sets: megabatches are always `megabatch_batches` batches
    (transformers shrinks them to keep four, which on 200 pairs sorts groups of only 48), and the batches
    are shuffled afterwards, so an epoch does not run from the longest batch to the shortest. The
    longest batch still goes first, so an out-of-memory error shows at the first step.
    """
    import torch

    shuffled = torch.randperm(len(lengths), generator=generator).tolist()
    size = megabatch_batches * batch_size
    batches = []
    for start in range(0, len(shuffled), size):
        megabatch = sorted(shuffled[start : start + size], key=lambda i: lengths[i], reverse=True)
        batches += [megabatch[i : i + batch_size] for i in range(0, len(megabatch), batch_size)]
    # Only the last batch can be short; it stays last so the DataLoader's chunks match these batches.
    full, rest = (batches[:-1], batches[-1:]) if batches and len(batches[-1]) < batch_size else (batches, [])
    full = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    if full:
        longest = max(range(len(full)), key=lambda b: lengths[full[b][0]])
        full[0], full[longest] = full[longest], full[0]
    return [i for batch in full + rest for i in batch]


@functools.cache
def length_grouped_trainer_class() -> type:
    """RewardTrainer whose length-grouped sampler reads the lengths of preference pairs.

    transformers' sampler looks for a `length` column or an `input_ids` column; RewardTrainer's datasets
    have `chosen_ids` and `rejected_ids` only (and unused columns are removed before the sampler is
    built), so `train_sampling_strategy="group_by_length"` would fail. A pair costs its longer side.
    """
    import datasets
    import torch
    from trl import RewardTrainer

    class LengthGroupedPairSampler(torch.utils.data.Sampler):
        def __init__(self, lengths: list[int], batch_size: int) -> None:
            self.lengths, self.batch_size = lengths, batch_size

        def __len__(self) -> int:
            return len(self.lengths)

        def __iter__(self):
            # No generator: the global RNG, which Trainer seeds, reshuffles every epoch.
            return iter(length_grouped_order(self.lengths, self.batch_size))

    class LengthGroupedRewardTrainer(RewardTrainer):
        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy != "group_by_length" or not isinstance(dataset, datasets.Dataset):
                return super()._get_train_sampler(train_dataset)
            lengths = [max(len(c), len(r)) for c, r in zip(dataset["chosen_ids"], dataset["rejected_ids"])]
            # One optimiser step's pairs share a length, as in transformers' own sampler.
            step_pairs = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return LengthGroupedPairSampler(lengths, step_pairs)

    return LengthGroupedRewardTrainer


def build_reward_trainer(model: Any, tokenizer: Any, dataset: Any, config: TrainConfig, device: DeviceChoice) -> Any:
    trainer_class = length_grouped_trainer_class()
    return trainer_class(
        model=model,
        args=reward_config(config, device, tokenizer.eos_token),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(model, config) if config.lora else None,
    )


def losses(log_history: Sequence[dict[str, Any]]) -> tuple[float | None, float | None]:
    """First and last logged training loss (the first entry is step 1: logging_first_step)."""
    values = [entry["loss"] for entry in log_history if "loss" in entry]
    return (values[0], values[-1]) if values else (None, None)


def save_checkpoint(trainer: Any, tokenizer: Any, out_dir: Path) -> None:
    """Save a plain transformers checkpoint: LoRA adapters are merged so any loader can read it."""
    from accelerate.utils import is_peft_model

    model = trainer.accelerator.unwrap_model(trainer.model)
    if is_peft_model(model):
        model = model.merge_and_unload()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def library_versions() -> dict[str, str]:
    import peft
    import torch
    import transformers
    import trl

    return {module.__name__: module.__version__ for module in (torch, transformers, trl, peft)}


def train_reward_model(rows: Sequence[dict[str, Any]], config: TrainConfig) -> TrainResult:
    """Train one reward model on TRL preference rows and save it with its record and model card."""
    from transformers import set_seed

    from prefgen.train.card import data_summary_from_rows, write_model_card

    started = time.perf_counter()
    base = resolve_base(config.base)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(base)
    dataset, report = build_preference_dataset(rows, tokenizer, config.max_length, config.use_margin)
    if len(dataset) == 0:
        raise PrefgenError(f"no training pairs left after truncation: {report}")
    device = pick_device()
    set_seed(config.seed)  # before loading: the new reward head is initialised randomly
    model = load_base_model(base, tokenizer)
    trainer = build_reward_trainer(model, tokenizer, dataset, config, device)
    output = trainer.train()
    save_checkpoint(trainer, tokenizer, out_dir)

    history = list(trainer.state.log_history)
    initial_loss, final_loss = losses(history)
    result = TrainResult(
        out_dir=str(out_dir),
        n_train=len(dataset),
        data_report=report,
        initial_loss=initial_loss,
        final_loss=final_loss,
        log_history=history,
        steps=trainer.state.global_step,
        device=device.device,
        dtype=device.dtype,
        duration_s=round(time.perf_counter() - started, 2),
        train_runtime_s=round(output.metrics["train_runtime"], 2),
        pairs_per_s=round(output.metrics["train_samples_per_second"], 3),
        config=config.to_dict(),
    )
    record = train_record(result, base, tokenizer)
    (out_dir / TRAIN_RECORD).write_text(json.dumps(record, indent=2, default=str))
    write_model_card(out_dir, train=record, data=data_summary_from_rows(rows))
    return result


def train_record(result: TrainResult, base: str, tokenizer: Any) -> dict[str, Any]:
    """What `prefgen_train.json` holds: enough to reproduce the run and to score like training did."""
    layout = token_layout(tokenizer, result.data_report["format"] == "chat_template")
    return {
        "kind": "reward_model",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base": base,
        **result.to_dict(),
        "input_format": {
            "format": result.data_report["format"],
            "eos_token": tokenizer.eos_token,
            "append_eos": layout.appends_eos,
        },
        "versions": library_versions(),
    }


def bootstrap_indices(n: int, seed: int) -> list[int]:
    """n row indices drawn with replacement."""
    import numpy as np

    return np.random.default_rng(seed).integers(0, n, size=n).tolist()


def train_ensemble(rows: Sequence[dict[str, Any]], config: TrainConfig) -> EnsembleResult:
    """Train `config.ensemble` members in out_dir/member-{i}, each with its own seed (and bootstrap sample)."""
    from prefgen.train.card import data_summary_from_rows, write_model_card

    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = EnsembleResult(out_dir=str(out_dir))
    members = []
    for i in range(config.ensemble):
        seed = config.seed + i
        picks = bootstrap_indices(len(rows), seed) if config.bootstrap else list(range(len(rows)))
        member_config = replace(config, out_dir=out_dir / f"member-{i}", seed=seed, ensemble=1)
        result.members.append(train_reward_model([rows[j] for j in picks], member_config))
        n_train = result.members[-1].n_train
        members.append({"dir": f"member-{i}", "seed": seed, "n_train": n_train, "n_unique_rows": len(set(picks))})
    manifest = {
        "kind": "ensemble",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "members": members,
        "bootstrap": config.bootstrap,
        "config": config.to_dict(),
    }
    manifest_path = out_dir / ENSEMBLE_MANIFEST
    manifest_path.write_text(json.dumps(manifest, indent=2))
    result.manifest_path = str(manifest_path)
    first_record = json.loads((out_dir / "member-0" / TRAIN_RECORD).read_text())
    write_model_card(out_dir, train={**first_record, "ensemble": manifest}, data=data_summary_from_rows(rows))
    return result


def train(rows: Sequence[dict[str, Any]], config: TrainConfig) -> TrainResult | EnsembleResult:
    """One model, or an ensemble when `config.ensemble > 1`."""
    return train_ensemble(rows, config) if config.ensemble > 1 else train_reward_model(rows, config)
