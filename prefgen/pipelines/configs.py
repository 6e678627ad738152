"""Config models of the commands: each default, help text and rule written once.

The command line builds its options from these fields (`prefgen.cli_options.option_from_field`), so a
default or a help text changed here changes `--help` too. Kept apart from the pipelines, and light to
import, so that the CLI can read them without loading the pipelines' dependencies.
"""

from __future__ import annotations

from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prefgen import formats
from prefgen.judge.swap import DEFAULT_THRESHOLD
from prefgen.train.common import SCORE_BATCH_SIZE
from prefgen.train.config import TrainConfig

C = TypeVar("C", bound=BaseModel)

# The format choices, from the registry of formats (`prefgen.formats`): a new format is one class there.
ImportFormatName = Literal[(formats.AUTO, *formats.names())]  # type: ignore[valid-type]
FileFormatName = Literal[(formats.AUTO, *formats.names(formats.file_formats()))]  # type: ignore[valid-type]
ToolFormatName = Literal[formats.names(formats.tool_formats())]  # type: ignore[valid-type]


def configured(model: type[C], config: C | None, options: dict[str, Any]) -> C:
    """The config a library call was given: `config`, or one built from its keyword options (not both), so a
    stage's knobs and their defaults are written once, on its config model."""
    if config is not None and options:
        raise TypeError(f"give a {model.__name__} or its fields as keyword arguments, not both "
                        f"(got {', '.join(sorted(options))})")
    return config if config is not None else model(**options)


# Options of `prefgen label` read only by one way of running it (field -> flag).
RAY_ONLY = {"address": "--address", "workers": "--workers", "shards": "--shards"}
BATCH_ONLY = {"batch_poll_s": "--batch-poll", "batch_max_requests": "--batch-max-requests"}
# Options read only by the judge backends that declare them (`Backend.options`).
# (--api-key is not among them: it also comes from PREFGEN_API_KEY, set for every judge alike.)
BACKEND_ONLY = {"batch_size": "--batch-size", "transport": "--transport", "api_base": "--api-base"}


class LabelConfig(BaseModel):
    """Everything `prefgen label` takes. Descriptions are the CLI's help texts."""

    model_config = ConfigDict(extra="forbid")

    constitution: Path = Field(description="Constitution file (YAML or JSON).")
    pairs: str = Field(description="Pairs: .jsonl/.csv/.parquet with prompt, response_a, response_b; "
                                   "a datasets directory; or FILE.duckdb:TABLE.")
    judge: str = Field(default="local", description="Judge spec: openai:MODEL, anthropic:MODEL, "
                                                    "litellm:PROVIDER/MODEL, local, local:/path.")
    db: Path = Field(default=Path("prefgen.duckdb"),
                     description="DuckDB file holding every judgement, label, mix and run.")
    api_base: str | None = Field(default=None,
                                 description="Base URL of an OpenAI-compatible or Anthropic-compatible server; "
                                             "repeat it (or give a comma-separated list) to use a fleet of "
                                             "servers of one model in turn.")
    api_key: str | None = Field(default=None, description="API key (default: the provider's usual environment "
                                                          "variable).")
    concurrency: int = Field(default=16, ge=1, description="Judge calls in flight at once.")
    threshold: float = Field(default=DEFAULT_THRESHOLD, ge=0.0, le=1.0,
                             description="Keep a preference when consistent across orders and "
                                         "|2 P(a better) - 1| >= this.")
    max_cost: float | None = Field(default=None, ge=0.0,
                                   description="Stop cleanly before spending more than this (USD).")
    limit: int | None = Field(default=None, ge=1, description="Label only the first N pairs.")
    mode: Literal["direct", "cot", "verbalised"] = Field(
        default="direct", description="direct: one letter (soft label from logprobs); cot: reason, then a "
                                      "verdict line; verbalised: letter plus a stated confidence.")
    samples: int = Field(default=1, ge=1, description="Self-consistency: sample N answers per call (for judges "
                                                      "without logprobs).")
    price_in: float | None = Field(default=None, ge=0.0,
                                   description="USD per million input tokens (overrides the list price).")
    price_out: float | None = Field(default=None, ge=0.0, description="USD per million output tokens.")
    max_attempts: int = Field(default=5, ge=1, description="Tries per call on 429/5xx/timeouts.")
    timeout_s: float = Field(default=120.0, gt=0, description="Seconds per call.")
    transport: Literal["http", "sdk"] = Field(default="http", description="openai backend: lean HTTP client "
                                                                         "(fast) or the official SDK.")
    allow_http_key: bool = Field(default=False, description="Send the API key (or URL credentials) over plain "
                                                            "http to a host other than this machine.")
    batch_size: int = Field(default=8, ge=1, description="Local judge: requests per forward pass.")
    write_batch: int = Field(default=512, ge=1, description="Judgements per database write.")
    flush_interval_s: float = Field(default=1.0, gt=0, description="Write at least this often (seconds): a crash "
                                                                   "loses at most this much of answered calls.")
    skip_bad: bool = Field(default=False, description="Skip invalid rows (reported) instead of failing.")
    dry_run: bool = Field(default=False, description="Estimate calls, tokens and cost; send nothing.")
    progress: bool = Field(default=True, description="Show a progress bar.")
    chunk_pairs: int = Field(default=2048, ge=1, description="Pairs planned, sent and written at a time: what "
                                                            "bounds memory, whatever the size of the input.")
    engine: Literal["local", "ray"] = Field(default="local", description="local: one process (asyncio); ray: "
                                            "Ray workers write Parquet shards, merged into --db at the end.")
    batch: bool = Field(default=False, description="Send the calls as provider batch jobs (openai:, anthropic:, "
                                                   "litellm:openai/...): half the price, answered within 24 h. "
                                                   "A killed or restarted run polls the batches it finds.")
    batch_poll_s: float = Field(default=30.0, gt=0, description="--batch: seconds between two polls of a batch.")
    batch_max_requests: int = Field(default=10_000, ge=1, description="--batch: calls per provider batch (the "
                                                                     "provider's own limit applies too).")
    adaptive_concurrency: bool = Field(default=True, description="Adapt the calls in flight (1 to --concurrency) "
                                                                 "to the server's rate-limit headers and 429s; "
                                                                 "off: always --concurrency.")
    address: str | None = Field(default=None, description="Ray cluster address (--engine ray; default: start a "
                                                          "local Ray instance).")
    workers: int = Field(default=2, ge=1, description="Ray workers (--engine ray), each with --concurrency calls "
                                                      "in flight.")
    shards: Path | None = Field(default=None, description="Directory of the Parquet shards (--engine ray; "
                                                          "default: DB.shards/ beside the store).")

    @model_validator(mode="after")
    def _batches_in_one_process(self) -> LabelConfig:
        if self.batch and self.engine == "ray":
            raise ValueError("--batch hands the calls to the provider from one process: leave out --engine ray")
        return self

    def changed(self, names: Iterable[str]) -> list[str]:
        """Those of `names` the caller set to something other than the default (an explicit default changes
        nothing wherever it is given)."""
        fields = type(self).model_fields
        return [name for name in names
                if name in self.model_fields_set and getattr(self, name) != fields[name].default]

    @model_validator(mode="after")
    def _options_act_where_given(self) -> LabelConfig:
        # An option that would be read by nothing is refused rather than silently ignored: a user who gives
        # --workers 8 without --engine ray would otherwise wait for one process believing eight run.
        for needs, on, flags in ((self.engine == "ray", "--engine ray", RAY_ONLY),
                                 (self.batch, "--batch", BATCH_ONLY)):
            idle = [flags[name] for name in self.changed(flags)]
            if idle and not needs:
                raise ValueError(f"{', '.join(idle)} only act{'s' if len(idle) == 1 else ''} with {on}: add {on}, "
                                 f"or leave {'it' if len(idle) == 1 else 'them'} out")
        return self

    @field_validator("pairs", mode="before")
    @classmethod
    def _pairs_given_as_a_path(cls, value: object) -> object:
        # A `Path` (what a script builds) is a file name like any other: the other calls take one too.
        return str(value) if isinstance(value, PathLike) else value

    @field_validator("api_base", mode="before")
    @classmethod
    def _one_or_many_api_bases(cls, value: object) -> object:
        # --api-base given several times arrives as a tuple: kept as one comma-separated list.
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value) or None
        return value


class QueryOutput(BaseModel):
    """Where and how `prefgen sql` writes a query's result."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["table", "csv", "json", "jsonl", "parquet"] = Field(
        default="table", description="table: printed; csv, json (one array) or jsonl (an object a line): printed, "
        "or written to --out; parquet: --out only.")
    out: Path | None = Field(default=None, description="Write to this file instead of printing.")

    @model_validator(mode="after")
    def _parquet_needs_a_file(self) -> QueryOutput:
        if self.format == "parquet" and self.out is None:
            raise ValueError("--format parquet needs --out FILE")
        return self


class MixConfig(BaseModel):
    """What `prefgen mix` takes. Descriptions are the CLI's help texts."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Name of the mix (building a name again replaces it).")
    human_ratio: float | None = Field(default=None, ge=0.0, le=1.0,
                                      description="Share of human rows in the mix: the larger side is sub-sampled "
                                                  "to it. Default: every human train label and every AI row that "
                                                  "passes the filters.")
    labels: Literal["soft", "hard", "corrected"] = Field(
        default="soft", description="soft: p_chosen is the calibrated judge P (AI) or the annotators' share "
        "(human); hard: 1 for every row; corrected: the judge P calibrated with covariates (length difference, "
        "order consistency) on the human train pairs it also judged, which undoes a length-biased judge.")
    ai_weight: float | None = Field(default=None, ge=0.0, le=1.0,
                                    description="Loss weight of AI rows (human rows weigh 1).")
    ai_min_confidence: float | None = Field(default=None, ge=0.0, le=1.0,
                                            description="Leave out kept AI pairs less confident than this.")
    max_per_prompt: int | None = Field(default=None, ge=1, description="At most this many pairs per prompt.")
    weight_by_confidence: bool = Field(default=False, description="Weight each row's loss by its confidence.")
    margin_by_confidence: bool = Field(default=False, description="Add TRL's `margin` column from the confidence.")
    seed: int = Field(default=0, description="Seed of subsampling, order and search folds.")
    judge: str | None = Field(default=None, description="Only AI preferences of this judge spec (or label job id).")
    size: int | None = Field(default=None, ge=1, description="At most this many rows (a shortfall is reported).")


def _weight(default: float, signal: str, meaning: str) -> Any:
    return Field(default=default, ge=0.0, description=f"Weight of {signal}: {meaning}.")


class RouteWeights(BaseModel):
    """The weight of each routing signal in a pair's score (`prefgen route`: score = sum of weight x signal).

    The unit is one wrong AI row of the mix turned right: `mix_error` is the expected number of such rows a
    label fixes, `new_row` what a human row for a pair the mix has no AI row of is worth in that unit. The
    warning signs after them describe the judges' doubt; they are stored for every pair either way and, at
    their small default weights, order pairs of equal value. Descriptions are the CLI's help texts
    (`--weight-mix-error` ...)."""

    model_config = ConfigDict(extra="forbid")

    mix_error: float = _weight(1.0, "mix_error", "the calibrated probability that the AI row the mix holds "
                                                 "for the pair is wrong (0 for a pair not in the mix)")
    new_row: float = _weight(0.1, "new_row", "1 for a pair the mix's filters dropped (a label adds a row rather "
                                             "than correcting one)")
    uncertainty: float = _weight(0.05, "uncertainty", "1 - |2 P(a better) - 1|, P unfiltered over every judge and "
                                                      "principle")
    inconsistency: float = _weight(0.02, "inconsistency", "the share of verdicts that flipped with the order")
    near_threshold: float = _weight(0.02, "near_threshold", "1 on the keep threshold, 0 a quarter away")
    principle_disagreement: float = _weight(0.02, "principle_disagreement",
                                            "1 when the principles' sides split evenly")
    judge_disagreement: float = _weight(0.05, "judge_disagreement",
                                        "1 when the judges' sides split evenly (several judges only)")
    rm_spread: float = _weight(0.05, "rm_spread", "the spread of a reward-model ensemble's P(a better) (with --model)")


class RouteConfig(BaseModel):
    """What `prefgen route` takes. Descriptions are the CLI's help texts. The signal weights are a
    `RouteWeights` (`weights=`); the command line sets them one by one, and keys named after a signal are
    taken as its weight here too."""

    model_config = ConfigDict(extra="forbid")

    budget: int = Field(ge=1, description="Pairs to send to annotators.")
    format: ToolFormatName = Field(description=formats.help_text(formats.tool_formats(), "batch_help") + ".")
    out: Path = Field(description="The batch file to write.")
    random_share: float = Field(default=0.15, ge=0.0, le=1.0,
                                description="Share of the budget drawn at random: the unbiased sample that "
                                            "agreement and calibration are measured on.")
    seed: int = Field(default=0, description="Seed of the random slice, of ties in the ranking and of the order "
                                             "responses are shown in.")
    judge: str | None = Field(default=None, description="Only verdicts of this judge spec (or label job id).")
    reward_model: Path | None = Field(default=None, description="A reward-model ensemble (`train --ensemble K`): the "
                                                         "spread of its members is one more signal.")
    cross_check: bool = Field(default=False, description="Check every AI row of the mix with reward models trained "
                              "without its prompt (5 folds, the head method on a frozen base): mix_error then joins "
                              "their P, calibrated on the human train pairs, to the judge's. About twice as many "
                              "wrong rows among the picks; costs the base's features of the whole mix (cached: "
                              "`prefgen train` on that mix reuses them).")
    base: str | None = Field(default=None, description="Frozen base of the --cross-check models (default: the head "
                                                       "method's, smollm2).")
    weights: RouteWeights = Field(default_factory=RouteWeights, description="Weight of each signal in the score.")

    @model_validator(mode="after")
    def _base_of_the_cross_check(self) -> RouteConfig:
        if self.base is not None and not self.cross_check:
            raise ValueError("--base is the --cross-check models' base: add --cross-check, or leave it out")
        return self

    @model_validator(mode="before")
    @classmethod
    def _gather_weights(cls, data: object) -> object:
        """`--weight-new-row 0.5` arrives as new_row=0.5: move the signal-named keys into `weights`."""
        if not isinstance(data, dict):
            return data
        flat = {k: data[k] for k in RouteWeights.model_fields if k in data}
        if not flat:
            return data
        rest = {k: v for k, v in data.items() if k not in flat}
        weights = rest.get("weights") or {}
        weights = weights.model_dump() if isinstance(weights, RouteWeights) else dict(weights)
        return {**rest, "weights": {**weights, **flat}}


class AutoMixConfig(BaseModel):
    """What `prefgen mix --auto` takes besides the mix's own options: the search and the training settings every
    candidate is validated with. The training settings are recorded with the chosen mix, and `prefgen train`
    on it re-applies those it is not given (and says which it was given otherwise)."""

    model_config = ConfigDict(extra="forbid")

    folds: int = Field(default=3, ge=2, description="--auto: folds of the human train split.")
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0,
                              description="--auto: one-sided confidence that a mix with AI rows beats human-only "
                                          "before it is chosen (lower takes smaller gains and more risk).")
    train: TrainConfig = Field(default_factory=TrainConfig,
                               description="Training settings of every candidate (seed: the mix's, unless set).")

    @field_validator("train")
    @classmethod
    def _one_process(cls, train: TrainConfig) -> TrainConfig:
        if train.processes != 1 or train.ensemble != 1:
            raise ValueError("mix --auto trains each candidate once, in this process: leave out processes and "
                             "ensemble (train the chosen mix with them)")
        return train


class SplitConfig(BaseModel):
    """What `prefgen split` takes."""

    model_config = ConfigDict(extra="forbid")

    heldout: float = Field(ge=0.0, lt=1.0, description="Share of human-labelled prompts to hold out, in [0, 1). "
                           "Prompts with a label pinned at import (import-human --split) keep their side and do "
                           "not count: the share applies to the others.")
    seed: int = Field(default=0, description="Seed of the prompt hash that decides each side.")


class AgreementConfig(BaseModel):
    """What `prefgen agreement` takes."""

    model_config = ConfigDict(extra="forbid")

    judge: str | None = Field(default=None, description="Only this judge spec (or label job id).")
    split: Literal["train", "heldout"] | None = Field(default=None,
                                                      description="Only human labels on this side of the split.")
    seed: int = Field(default=0, description="Seed of the bootstrap intervals.")


def _column_map(items: object) -> object:
    """`--column OURS=THEIRS` options (a list of such strings) as {ours: theirs}; a dict as it is."""
    if isinstance(items, dict) or items is None:
        return items or {}
    mapping = {}
    for item in items:  # type: ignore[union-attr]
        ours, sep, theirs = str(item).partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise ValueError(f"--column {item!r}: expected OURS=THEIRS, e.g. prompt=question")
        mapping[ours.strip()] = theirs.strip()
    return mapping


class ImportConfig(BaseModel):
    """What `prefgen import-human` takes besides the file. Descriptions are the CLI's help texts."""

    model_config = ConfigDict(extra="forbid")

    fmt: ImportFormatName = Field(default=formats.AUTO, description="auto: told from the first row; "
                                  + formats.help_text() + ".")
    source: str | None = Field(default=None, description="Name of this import (default: the file's stem). "
                               "Importing a name again replaces its labels.")
    skip_bad: bool = Field(default=False, description="Skip invalid rows (reported) instead of failing with "
                           "nothing written.")
    columns: dict[str, str] = Field(default_factory=dict, description="Read column THEIRS as OURS (prompt, "
                                    "response_a, response_b, winner, chosen, rejected).")
    pin: Literal["train", "heldout"] | None = Field(default=None, description="Pin every label of this file to "
                                                    "that side: `prefgen split` never moves it.")
    labels: str | Path | None = Field(default=None, description="FILE holds the pairs and LABEL_FILE their labels (e.g. "
                               "pool.jsonl + pool_labels.jsonl), joined on --on.")
    on: str = Field(default="id", description="--labels: the id column both files share.")

    _columns = field_validator("columns", mode="before")(_column_map)


class EvalConfig(BaseModel):
    """What `prefgen eval` takes besides the model and the store. Descriptions are the CLI's help texts."""

    model_config = ConfigDict(extra="forbid")

    split: Literal["heldout"] = Field(default="heldout", description="Which human labels of --db to evaluate on "
                                      "(the held-out split: the train side shaped the model).")
    pairs: str | Path | None = Field(default=None, description="Evaluate on a labelled file instead (any import-human "
                              "format).")
    fmt: FileFormatName = Field(default=formats.AUTO, description="Format of --pairs (any file format of "
                                "import-human).")
    skip_bad: bool = Field(default=False, description="Skip invalid rows of --pairs (reported) instead of failing.")
    batch_size: int = Field(default=SCORE_BATCH_SIZE, ge=1, description="Pairs scored per forward pass.")
    out: Path | None = Field(default=None, description="Folder for eval.html, eval.json and the plots (default: a "
                             "new MODEL/evals/<UTC time>).")
    progress: bool = Field(default=True, description="Show a progress bar while scoring.")

    @model_validator(mode="after")
    def _split_is_of_the_store(self) -> EvalConfig:
        if self.pairs is not None and "split" in self.model_fields_set:
            raise ValueError("--split picks the store's human labels; --pairs FILE is evaluated whole: give one")
        return self


class ScoreConfig(BaseModel):
    """What `prefgen score` takes besides the model. Descriptions are the CLI's help texts."""

    model_config = ConfigDict(extra="forbid")

    pairs: str | Path | None = Field(default=None, description="Rows with prompt, response_a, response_b (JSONL, CSV, "
                              "Parquet, datasets dir, FILE.duckdb:TABLE).")
    responses: str | Path | None = Field(default=None, description="Rows with prompt and `response`, or `responses` (a "
                                  "list of best-of-N candidates).")
    out: str | Path | None = Field(default=None, description="Output JSONL (default: <input>.scored.jsonl next to the "
                            "input).")
    batch_size: int = Field(default=SCORE_BATCH_SIZE, ge=1, description="Responses scored per forward pass.")

    @model_validator(mode="after")
    def _one_input(self) -> ScoreConfig:
        if (self.pairs is None) == (self.responses is None):
            raise ValueError("give exactly one of --pairs or --responses")
        return self


class ExportConfig(BaseModel):
    """What `prefgen export` takes. Descriptions are the CLI's help texts."""

    model_config = ConfigDict(extra="forbid")

    mix: str | None = Field(default=None, description="The mix to export.")
    split: Literal["heldout"] | None = Field(default=None, description="Export the held-out human set instead of "
                                             "a mix.")
    fmt: Literal["hf", "parquet", "jsonl"] = Field(default="jsonl", description="hf: a datasets directory "
                                                   "(save_to_disk); parquet; jsonl.")
    out: Path = Field(description="File (or directory, for hf) to write.")

    @model_validator(mode="after")
    def _one_set(self) -> ExportConfig:
        if (self.mix is None) == (self.split is None):
            raise ValueError("export needs exactly one of --mix NAME or --split heldout")
        return self
