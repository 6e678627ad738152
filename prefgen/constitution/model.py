"""The constitution file format (YAML, or JSON with the same schema)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prefgen.hashing import content_hash

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
TEMPLATE_FIELDS = {"prompt", "first", "second", "principle"}


class Principle(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, description="Unique name of the principle, used in the store and in stats.")
    text: str = Field(description="The instruction the judge applies, e.g. 'Choose the less harmful response.'")
    weight: float = Field(default=1.0, ge=0, le=1e6, allow_inf_nan=False,
                          description="Relative chance of being drawn for a pair (0: never drawn).")
    category: str | None = Field(default=None, description="Free label for grouping (harmlessness, honesty...).")

    @field_validator("text")
    @classmethod
    def _text_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty: write the instruction the judge should apply")
        return value.strip()


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    per_pair: int = Field(default=1, ge=1, description="Principles drawn per pair, without replacement.")
    seed: int = Field(default=0, description="Seed of the per-pair draw.")


class Constitution(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    version: int | str = 1
    principles: list[Principle] = Field(min_length=1)
    sampling: Sampling = Field(default_factory=Sampling)
    judge_template: str | None = Field(
        default=None, description="Custom judge prompt body with {prompt} {first} {second} {principle}."
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> Constitution:
        seen: set[str] = set()
        for principle in self.principles:
            if principle.id in seen:
                raise ValueError(f"duplicate principle id {principle.id!r}: every id must be unique")
            seen.add(principle.id)
        drawable = sum(1 for p in self.principles if p.weight > 0)
        if self.sampling.per_pair > drawable:
            raise ValueError(
                f"sampling.per_pair is {self.sampling.per_pair} but only {drawable} principle(s) have a "
                "weight above 0: lower per_pair or add principles"
            )
        if self.judge_template is not None:
            check_template(self.judge_template)
        return self

    @property
    def id(self) -> str:
        """Content hash: the constitution's identity in the store, whatever file format it came from."""
        return content_hash(["constitution", self.model_dump(mode="json")])

    def principle(self, principle_id: str) -> Principle:
        return next(p for p in self.principles if p.id == principle_id)


def check_template(template: str) -> None:
    names = set(_PLACEHOLDER.findall(template))
    unknown = names - TEMPLATE_FIELDS
    if unknown:
        raise ValueError(
            f"judge_template has unknown placeholder(s) {sorted(unknown)}; use only {sorted(TEMPLATE_FIELDS)}"
        )
    missing = {"first", "second"} - names
    if missing:
        raise ValueError(f"judge_template must contain {{first}} and {{second}} (missing {sorted(missing)})")
