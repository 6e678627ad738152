"""A reward model that reads the mean of the response's hidden states: `PrefgenRewardModel`.

Why: a decoder's own classifier reads one token, the last, and a frozen base's last token says little
about a whole response. On HH-RLHF harmless pairs (frozen SmolLM2-135M, linear Bradley-Terry probe, held-out
agreement, `benchmarks/rm_base_probe.py`) the last token gives 0.58, the mean over the whole sequence 0.65,
the mean over the response tokens 0.66, and only the response mean keeps gaining with more labelled pairs
(+0.03 with 800 more). So prefgen's head method can pool the response: mean of the final hidden states over
the tokens after the prompt, standardised by the training features' mean and spread, then one linear layer.

The standardisation is fixed (buffers set once from the training features), not trained: a decoder's hidden
states have a few dimensions hundreds of times larger than the rest, which a linear head trained by AdamW
for a hundred steps cannot undo.

This file imports only torch and transformers, so it is also written into every checkpoint as remote code
(`auto_map`): `AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)` loads the
model without prefgen installed. Pass `response_mask` (1 on the response's tokens) to score exactly as
prefgen does; without it the mean runs over every non-padding token.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "prefgen_reward"
POOLING = "response_mean"


class PrefgenRewardConfig(PretrainedConfig):
    model_type = MODEL_TYPE
    has_no_defaults_at_init = True

    def __init__(self, base_config: dict[str, Any] | None = None, pooling: str = POOLING, **kwargs: Any) -> None:
        self.base_config = base_config or {}
        self.pooling = pooling
        kwargs.setdefault("num_labels", 1)
        super().__init__(**kwargs)

    def base(self) -> PretrainedConfig:
        settings = dict(self.base_config)
        return AutoConfig.for_model(settings.pop("model_type"), **settings)


def response_mask(attention_mask: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """1 on the non-padding tokens at or after each row's response start."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return attention_mask * (positions[None, :] >= starts[:, None].to(attention_mask.device))


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class PrefgenRewardModel(PreTrainedModel):
    """A base model (any `AutoModel`), the mean of its final hidden states over the response, a linear head."""

    config_class = PrefgenRewardConfig
    base_model_prefix = "base"

    def __init__(self, config: PrefgenRewardConfig, base: Any = None) -> None:
        super().__init__(config)
        self.base = base if base is not None else AutoModel.from_config(config.base())
        hidden = self.base.config.hidden_size
        self.register_buffer("feature_mean", torch.zeros(hidden))
        self.register_buffer("feature_scale", torch.ones(hidden))
        self.score = torch.nn.Linear(hidden, 1)
        self.post_init()

    @classmethod
    def from_base(cls, base: Any) -> PrefgenRewardModel:
        """Wrap a loaded base model (its weights are kept, not re-initialised)."""
        config = PrefgenRewardConfig(base_config=base.config.to_dict(), pad_token_id=base.config.pad_token_id)
        return cls(config, base=base)

    def _init_weights(self, module: Any) -> None:
        # The base comes initialised (or loaded); only the head is new. A zero head starts at "no
        # preference" (loss ln 2) whatever the seed.
        if module is self.score:
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               response_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The response-mean feature vector of each sequence (before standardisation)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return masked_mean(hidden, attention_mask if response_mask is None else response_mask * attention_mask)

    def set_standardisation(self, features: torch.Tensor) -> None:
        self.feature_mean.copy_(features.mean(0))
        self.feature_scale.copy_(features.std(0).clamp(min=1e-6))

    def standardised(self, features: torch.Tensor) -> torch.Tensor:
        return (features.to(self.feature_mean.dtype) - self.feature_mean) / self.feature_scale

    def reward_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.score(self.standardised(features))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                response_mask: torch.Tensor | None = None, **_: Any) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.reward_from_features(
            self.pooled(input_ids, attention_mask, response_mask)))


def register() -> None:
    """Let transformers' Auto classes load prefgen reward models without remote code."""
    from transformers import AutoModelForSequenceClassification

    try:
        AutoConfig.register(MODEL_TYPE, PrefgenRewardConfig)
        AutoModelForSequenceClassification.register(PrefgenRewardConfig, PrefgenRewardModel)
    except ValueError:  # already registered in this process
        pass


def write_remote_code(out_dir: Any) -> None:
    """Copy this file next to the weights and point `auto_map` at it, for `trust_remote_code=True` users."""
    import json
    from pathlib import Path

    out_dir = Path(out_dir)
    (out_dir / "modeling_prefgen_reward.py").write_text(Path(__file__).read_text())
    config_path = out_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {
        "AutoConfig": "modeling_prefgen_reward.PrefgenRewardConfig",
        "AutoModelForSequenceClassification": "modeling_prefgen_reward.PrefgenRewardModel",
    }
    config_path.write_text(json.dumps(config, indent=2))
