"""Reward-model training with TRL's RewardTrainer.

prefgen adds what TRL 1.16 leaves to the caller: truncation before TRL (see `prefgen.train.data`), soft
targets and per-row weights in the loss (`prefgen.train.objective`), a frozen-base head regime whose base
runs once (`prefgen.train.head`), batches grouped by length (TRL's preference rows break transformers' own
length grouping), an AI-then-human curriculum, device and precision choice, LoRA with a fully trained head,
a merged checkpoint, and a record of the run. The model card is written by the caller
(`prefgen.pipelines.training.stages`), which knows the data behind the run.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefgen.errors import PrefgenError
from prefgen.train.common import (ENSEMBLE_MANIFEST, TRAIN_RECORD, DeviceChoice, feature_precision,
                                  launched_world_size, pick_device, quiet_libraries, torch_threads)
from prefgen.train.config import TrainConfig, load_arguments, resolve_base
from prefgen.train.data import build_preference_dataset, pad_batch, prepare_tokenizer, token_layout

TARGET_COLUMNS = ("p_chosen", "weight")  # batched by PreferenceCollator, read by the loss


@dataclass
class TrainResult:
    out_dir: str
    n_train: int
    data_report: dict[str, Any]
    stages: list[dict[str, Any]]  # one per curriculum stage: rows, steps, first and last loss
    features_s: float  # head method: seconds spent getting the frozen base's features (~0 when cached)
    features_computed: int  # head method: sequences the base ran on (0 when every feature was cached)
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
    scores: list[tuple[float, float]] | None = field(default=None, repr=False)  # of `score_rows`
    record: dict[str, Any] = field(default_factory=dict, repr=False)  # what prefgen_train.json holds
    world_size: int = 1  # processes that trained data-parallel (accelerate launch)
    per_device_batch_size: int = 0  # pairs each process took a step: config batch_size / world_size
    features_precision: str | None = None  # head method: the precision the frozen base ran in
    weight_decay_search: dict[str, Any] | None = None  # head method without --weight-decay: how it was chosen

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["record"], data["scores"]
        return data


@dataclass
class EnsembleResult:
    out_dir: str
    members: list[TrainResult] = field(default_factory=list)
    manifest_path: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)


def load_tokenizer(base: str) -> Any:
    """A fresh copy of the base's tokenizer, ready for training (callers may change its padding)."""
    return prepare_tokenizer(copy.deepcopy(pretrained_tokenizer(base)))


@functools.cache
def pretrained_tokenizer(base: str) -> Any:
    """The base's tokenizer as shipped, read once per process: reading a .gguf's vocabulary takes 10-15 s,
    and a mix search trains dozens of models on one base."""
    from transformers import AutoTokenizer

    directory, extra = load_arguments(base)
    return AutoTokenizer.from_pretrained(directory, **extra)


def load_base_model(base: str, tokenizer: Any, pooling: str = "model") -> Any:
    """The base as a one-output reward model with a new reward head: its own sequence classifier (seeded
    head), or (`pooling="response-mean"`) `prefgen.train.pooled.PrefgenRewardModel` around it (zero head)."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from prefgen.train.pooled import PrefgenRewardModel

    previous = hf_logging.get_verbosity()
    # The "classifier/score weights newly initialised" report is the expected outcome here, not news.
    hf_logging.set_verbosity_error()
    try:
        directory, extra = load_arguments(base)
        if pooling == "response-mean":
            model = PrefgenRewardModel.from_base(frozen_base(base))
        else:
            model = AutoModelForSequenceClassification.from_pretrained(directory, num_labels=1,
                                                                       dtype=torch.float32, **extra)
    finally:
        hf_logging.set_verbosity(previous)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


@functools.cache
def frozen_base(base: str) -> Any:
    """The base of response-mean reward models, loaded once per process: only the head method uses it, which
    never changes it, so every model of a mix search or ensemble shares it (a .gguf base takes ~20 s to
    de-quantise) and only their heads are new."""
    import torch
    from transformers import AutoModel

    directory, extra = load_arguments(base)
    return AutoModel.from_pretrained(directory, dtype=torch.float32, **extra).requires_grad_(False).eval()


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


def per_device_batch(batch_size: int, processes: int) -> int:
    """Pairs each process takes a step. `batch_size` is the batch of one optimiser step over every process, so
    that `--processes N` trains the regime one process trains (same batches, steps and schedule), faster."""
    if batch_size % processes:
        raise PrefgenError(f"--batch-size {batch_size} does not split evenly over {processes} processes: use a "
                           f"multiple of {processes} (each process takes batch-size/{processes} pairs a step)")
    return batch_size // processes


def reward_config(config: TrainConfig, device: DeviceChoice, eos_token: str, processes: int | None = None) -> Any:
    """TRL's RewardConfig for this run; `processes` (default: how many `accelerate launch` started) share
    each batch."""
    from trl import RewardConfig

    # The head method trains on one feature row per side: there is no length to group by.
    grouped = config.group_by_length and config.method != "head"
    return RewardConfig(
        output_dir=str(config.out_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.scheduler,
        warmup_steps=config.warmup_ratio,  # transformers 5: a float below 1 is a share of the steps
        per_device_train_batch_size=per_device_batch(config.batch_size, processes or launched_world_size()),
        gradient_accumulation_steps=config.grad_accum,
        max_length=config.max_length,
        eos_token=eos_token,
        seed=config.seed,
        data_seed=config.seed,
        bf16=device.bf16,
        use_cpu=device.device == "cpu",
        activation_checkpointing=config.gradient_checkpointing and config.method != "head",
        train_sampling_strategy="group_by_length" if grouped else "random",
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=True,  # progress goes to stderr through prefgen.train.progress, never stdout
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
def preference_collator_class() -> type:
    """TRL's preference collator, also batching the `p_chosen` and `weight` columns when rows have them."""
    import torch
    from trl.trainer.reward_trainer import DataCollatorForPreference

    class PreferenceCollator(DataCollatorForPreference):
        def torch_call(self, examples):
            output = super().torch_call(examples)
            for key in TARGET_COLUMNS:
                if key in examples[0]:
                    output[key] = torch.tensor([example[key] for example in examples], dtype=torch.float)
            return output

    return PreferenceCollator


@functools.cache
def length_grouped_sampler_class() -> type:
    """A sampler of pair indices in `length_grouped_order`, one length group per optimiser step.

    A group holds a whole step's pairs, every process's share: accelerate deals consecutive per-process
    batches to processes 0..N-1, so N processes train on the very batches one process would. The order is
    seeded by (seed, epoch), as accelerate's own seedable sampler is, not by the global RNG: each process draws
    dropout masks for its own batches, so their global RNGs part after the first step, and processes that
    shuffled with them would each see some pairs twice in an epoch and others not at all.
    """
    import torch

    class LengthGroupedPairSampler(torch.utils.data.Sampler):
        def __init__(self, lengths: list[int], step_pairs: int, seed: int) -> None:
            self.lengths, self.step_pairs, self.seed, self.epoch = lengths, step_pairs, seed, 0

        def __len__(self) -> int:
            return len(self.lengths)

        def set_epoch(self, epoch: int) -> None:  # transformers calls it before every epoch
            self.epoch = epoch

        def __iter__(self):
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            return iter(length_grouped_order(self.lengths, self.step_pairs, generator))

    return LengthGroupedPairSampler


@functools.cache
def length_grouped_trainer_class() -> type:
    """RewardTrainer whose length-grouped sampler reads the lengths of preference pairs, and whose loss
    takes soft targets and weights (see `PrefgenRewardTrainer`).

    transformers' sampler looks for a `length` column or an `input_ids` column; RewardTrainer's datasets
    have `chosen_ids` and `rejected_ids` only (and unused columns are removed before the sampler is
    built), so `train_sampling_strategy="group_by_length"` would fail. A pair costs its longer side.
    """
    import datasets
    import torch
    from trl import RewardTrainer

    from prefgen.train.objective import preference_loss

    class PrefgenRewardTrainer(RewardTrainer):
        """RewardTrainer with length-grouped pairs and soft targets / per-row weights in the loss.

        TRL computes the rewards, its metrics and its own loss; when a batch carries `p_chosen` or `weight`,
        the loss is replaced by `prefgen.train.objective.preference_loss` over the same rewards.
        """

        def _set_signature_columns_if_needed(self):
            if self._signature_columns is None:
                self._signature_columns = ["chosen_ids", "rejected_ids", "margin", *TARGET_COLUMNS]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            extra = {key: inputs.pop(key) for key in TARGET_COLUMNS if key in inputs}
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True,
                                                 num_items_in_batch=num_items_in_batch)
            if extra:
                rewards_chosen, rewards_rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
                loss = preference_loss(rewards_chosen, rewards_rejected, margin=inputs.get("margin"), **extra)
            return (loss, outputs) if return_outputs else loss

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy != "group_by_length" or not isinstance(dataset, datasets.Dataset):
                return super()._get_train_sampler(train_dataset)
            lengths = [max(len(c), len(r)) for c, r in zip(dataset["chosen_ids"], dataset["rejected_ids"])]
            # One optimiser step's pairs share a length, as in transformers' own sampler: every process's share.
            step_pairs = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return length_grouped_sampler_class()(lengths, step_pairs, seed)

    return PrefgenRewardTrainer


def build_reward_trainer(model: Any, tokenizer: Any, dataset: Any, config: TrainConfig, device: DeviceChoice) -> Any:
    from prefgen.train.progress import quiet_trainer

    trainer_class = length_grouped_trainer_class()
    return quiet_trainer(trainer_class(
        model=model,
        args=reward_config(config, device, tokenizer.eos_token),
        data_collator=preference_collator_class()(pad_token_id=tokenizer.pad_token_id),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(model, config) if config.lora else None,
    ))


def losses(log_history: Sequence[dict[str, Any]]) -> tuple[float | None, float | None]:
    """First and last logged training loss (the first entry is step 1: logging_first_step)."""
    values = [entry["loss"] for entry in log_history if "loss" in entry]
    return (values[0], values[-1]) if values else (None, None)


def save_checkpoint(trainer: Any, tokenizer: Any, out_dir: Path, model: Any = None) -> None:
    """Save a plain transformers checkpoint: LoRA adapters are merged so any loader can read it; with the
    head method, `model` is the whole model whose head the trainer trained in place."""
    from accelerate.utils import is_peft_model

    from prefgen.train.pooled import PrefgenRewardModel, write_remote_code

    model = model if model is not None else trainer.accelerator.unwrap_model(trainer.model)
    if is_peft_model(model):
        model = model.merge_and_unload()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if isinstance(model, PrefgenRewardModel):
        write_remote_code(out_dir)


def library_versions() -> dict[str, str]:
    import peft
    import torch
    import transformers
    import trl

    return {module.__name__: module.__version__ for module in (torch, transformers, trl, peft)}


def pair_rewards(model: Any, dataset: Any, pad_token_id: int, device: Any, batch_size: int = 64
                 ) -> list[tuple[float, float]]:
    """(r_chosen, r_rejected) of every pair of a tokenised preference dataset, in memory."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            batch = dataset[start : start + batch_size]
            n = len(batch["chosen_ids"])
            ids, mask = pad_batch(batch["chosen_ids"] + batch["rejected_ids"], pad_token_id, device)
            rewards = model(input_ids=ids, attention_mask=mask).logits[:, 0].float().cpu().tolist()
            out += list(zip(rewards[:n], rewards[n:], strict=True))
    return out


MIN_HEAD_STEPS = 100


def stage_config(config: TrainConfig, n_pairs: int) -> TrainConfig:
    """The head method takes at least `MIN_HEAD_STEPS` optimiser steps: its epochs are cheap (the features
    are cached), and on a few dozen pairs 10 epochs of 32-pair batches would be only a handful of steps."""
    if config.method != "head" or config.max_steps is not None:
        return config
    if steps_per_epoch(config, n_pairs) * config.epochs >= MIN_HEAD_STEPS:
        return config
    return config.model_copy(update={"max_steps": MIN_HEAD_STEPS})


def steps_per_epoch(config: TrainConfig, n_pairs: int) -> int:
    return math.ceil(n_pairs / (config.batch_size * config.grad_accum))


def head_steps(config: TrainConfig, n_pairs: int) -> int:
    """The optimiser steps a head-method stage of `n_pairs` takes (`stage_config`, then the Trainer's count)."""
    staged = stage_config(config, n_pairs)
    if staged.max_steps is not None:
        return staged.max_steps
    return math.ceil(staged.epochs * steps_per_epoch(staged, n_pairs))


def head_threads(device: DeviceChoice) -> Any:
    """One CPU thread while a head trains on cached features (see `torch_threads`)."""
    return torch_threads(1) if device.device == "cpu" else contextlib.nullcontext()


def prompt_groups(dataset: Any) -> list[str]:
    """A key per pair of a dataset built with `starts=True`: the tokens before its response (its prompt, as
    far as it was kept), so that cross-validation folds keep a prompt on one side."""
    return [hashlib.blake2b(repr(ids[:start]).encode(), digest_size=8).hexdigest()
            for ids, start in zip(dataset["chosen_ids"], dataset["chosen_start"], strict=True)]


def choose_decay(spec: Any, features: Any, stages: Sequence[Any], groups: Sequence[str],
                 config: TrainConfig) -> Any:
    """The head's weight decay for this run (`prefgen.train.regularise`), cross-validated over the rows of
    every stage together: a curriculum's stages share one value."""
    from prefgen.train.regularise import choose_weight_decay, pair_table

    return choose_weight_decay(spec, features, pair_table(stages, groups),
                               steps_for=lambda n: head_steps(config, n), lr=config.lr,
                               batch_size=config.batch_size * config.grad_accum, scheduler=config.scheduler,
                               warmup_ratio=config.warmup_ratio, seed=config.seed)


def curriculum_stages(rows: Sequence[dict[str, Any]], curriculum: str | None) -> list[list[dict[str, Any]]]:
    """The rows of each training stage: all at once, or (ai-then-human) the AI rows first."""
    if curriculum is None:
        return [list(rows)]
    ai = [row for row in rows if row.get("source") == "ai"]
    rest = [row for row in rows if row.get("source") != "ai"]
    stages = [stage for stage in (ai, rest) if stage]
    if len(stages) < 2:
        raise PrefgenError(f"--curriculum {curriculum}: the rows need both AI rows (source 'ai') and others "
                           f"({len(ai)} AI, {len(rest)} others)")
    return stages


def _stage_record(rows: int, trainer: Any) -> dict[str, Any]:
    first, last = losses(trainer.state.log_history)
    return {"rows": rows, "steps": trainer.state.global_step, "initial_loss": first, "final_loss": last}


def train_reward_model(rows: Sequence[dict[str, Any]], config: TrainConfig, *,
                       score_rows: Sequence[dict[str, Any]] | None = None, save: bool = True) -> TrainResult:
    """Train one reward model on TRL preference rows; save it with its record (`prefgen_train.json`).

    `score_rows` (TRL rows) are scored by the trained model in memory, encoded like the training rows, and
    returned as `result.scores` (r_chosen, r_rejected) per row: what a mix search validates on without
    writing and reloading a checkpoint per candidate. `save=False` skips the checkpoint.
    """
    from transformers import set_seed

    from prefgen.train.head import feature_cache, feature_head_model, feature_rows, head_spec

    quiet_libraries()
    started = time.perf_counter()
    base = resolve_base(config.base)
    out_dir = Path(config.out_dir)
    tokenizer = load_tokenizer(base)
    config = config.for_tokenizer(tokenizer)
    stages, reports = [], []
    head = config.method == "head"
    for stage_rows in curriculum_stages(rows, config.curriculum):
        dataset, report = build_preference_dataset(stage_rows, tokenizer, config.max_length, config.use_margin,
                                                   soft=config.loss == "soft", starts=head)
        if len(dataset) == 0:
            raise PrefgenError(f"no training pairs left after truncation: {report}")
        stages.append(dataset)
        reports.append(report)
    device = pick_device()
    set_seed(config.seed)  # before loading: the new reward head is initialised randomly
    model = load_base_model(base, tokenizer, config.pooling)
    trained, features_s, computed, precision, decay = model, 0.0, 0, None, None
    if head:
        spec = head_spec(model, tokenizer.pad_token_id)
        precision = feature_precision(config.precision, device.device)
        cache = feature_cache(base, device.device, spec.pooling, precision)
        features_started = time.perf_counter()
        for dataset in stages:
            computed += cache.add(model, spec, sides(dataset), tokenizer.pad_token_id, device.device)
        features_s = round(time.perf_counter() - features_started, 2)
        groups = [group for dataset in stages for group in prompt_groups(dataset)]
        stages = [cache.index_dataset(dataset) for dataset in stages]
        spec.fit(cache.table()[feature_rows(stages)])
        if config.weight_decay is None:
            with head_threads(device):
                decay = choose_decay(spec, cache.table(), stages, groups, config)
            config = config.model_copy(update={"weight_decay": decay.chosen})
        trained = feature_head_model(model, spec, cache.table())
    history: list[dict[str, Any]] = []
    stage_records, runtime, pairs_seen = [], 0.0, 0
    # A model that is not saved (a mix search's candidates) trains in a scratch folder: the Trainer creates its
    # output_dir, which would leave an empty `reward-model/` in the user's working directory.
    scratch = None if save else tempfile.TemporaryDirectory(prefix="prefgen-train-")
    work = config if scratch is None else config.model_copy(update={"out_dir": Path(scratch.name)})
    for dataset in stages:
        # Each stage gets a fresh trainer: a fresh optimiser and learning-rate schedule, the same settings.
        trainer = build_reward_trainer(trained, tokenizer, dataset, stage_config(work, len(dataset)), device)
        with head_threads(device) if head else contextlib.nullcontext():
            output = trainer.train()
        history += [{**entry, "stage": len(stage_records)} for entry in trainer.state.log_history]
        stage_records.append(_stage_record(len(dataset), trainer))
        runtime += output.metrics["train_runtime"]
        pairs_seen += output.metrics["train_samples_per_second"] * output.metrics["train_runtime"]
    if save:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(trainer, tokenizer, out_dir, model if config.method == "head" else None)
    scores = None
    if score_rows is not None:
        scored, _ = build_preference_dataset(score_rows, tokenizer, config.max_length, starts=head)
        if len(scored) != len(score_rows):
            raise PrefgenError("some pairs to score have identical sides after truncation")
        if head:
            cache.add(model, spec, sides(scored), tokenizer.pad_token_id, device.device)
            trained = feature_head_model(model, spec, cache.table())
            scored = cache.index_dataset(scored)
        scores = pair_rewards(trained, scored, tokenizer.pad_token_id, trainer.args.device)
    if scratch is not None:
        scratch.cleanup()

    initial_loss, final_loss = losses(history)
    result = TrainResult(
        out_dir=str(out_dir),
        n_train=sum(len(dataset) for dataset in stages),
        data_report=_merge_reports(reports),
        stages=stage_records,
        features_s=features_s,
        features_computed=computed,
        initial_loss=initial_loss,
        final_loss=final_loss,
        log_history=history,
        steps=sum(stage["steps"] for stage in stage_records),
        device=device.device,
        dtype=device.dtype,
        duration_s=round(time.perf_counter() - started, 2),
        train_runtime_s=round(runtime, 2),
        pairs_per_s=round(pairs_seen / runtime, 3) if runtime else 0.0,
        config=config.to_dict(),
        scores=scores,
        world_size=trainer.args.world_size,
        per_device_batch_size=trainer.args.per_device_train_batch_size,
        features_precision=precision,
        weight_decay_search=decay.record() if decay is not None else None,
    )
    result.record = train_record(result, base, tokenizer)
    if save:
        (out_dir / TRAIN_RECORD).write_text(json.dumps(result.record, indent=2, default=str))
    return result


def sides(dataset: Any) -> list[tuple[list[int], int]]:
    """(token ids, response start) of every side of a dataset built with `starts=True`."""
    return [*zip(dataset["chosen_ids"], dataset["chosen_start"], strict=True),
            *zip(dataset["rejected_ids"], dataset["rejected_start"], strict=True)]


def _merge_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One truncation report for every stage: counts added, means weighted by pairs."""
    if len(reports) == 1:
        return dict(reports[0])
    merged = dict(reports[-1])
    n_out = sum(r["n_out"] for r in reports)
    for key, value in reports[0].items():
        if key.startswith("n_"):
            merged[key] = sum(r[key] for r in reports)
    for key in ("mean_tokens_before", "mean_tokens_after"):
        merged[key] = round(sum(r[key] * r["n_out"] for r in reports) / n_out, 1) if n_out else 0.0
    merged["max_tokens_after"] = max(r["max_tokens_after"] for r in reports)
    merged["weighted"] = any(r["weighted"] for r in reports)
    merged["stages"] = list(reports)
    return merged


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
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = EnsembleResult(out_dir=str(out_dir))
    members = []
    for i in range(config.ensemble):
        seed = config.seed + i
        picks = bootstrap_indices(len(rows), seed) if config.bootstrap else list(range(len(rows)))
        member_config = config.model_copy(update={"out_dir": out_dir / f"member-{i}", "seed": seed, "ensemble": 1})
        result.members.append(train_reward_model([rows[j] for j in picks], member_config))
        n_train = result.members[-1].n_train
        members.append({"dir": f"member-{i}", "seed": seed, "n_train": n_train, "n_unique_rows": len(set(picks))})
    result.manifest = {
        "kind": "ensemble",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "members": members,
        "bootstrap": config.bootstrap,
        "config": config.to_dict(),
    }
    manifest_path = out_dir / ENSEMBLE_MANIFEST
    manifest_path.write_text(json.dumps(result.manifest, indent=2))
    result.manifest_path = str(manifest_path)
    return result


def train(rows: Sequence[dict[str, Any]], config: TrainConfig) -> TrainResult | EnsembleResult:
    """One model, or an ensemble when `config.ensemble > 1`."""
    return train_ensemble(rows, config) if config.ensemble > 1 else train_reward_model(rows, config)
