"""What a label job is, whichever engine runs it: the constitution, the judge client, the job id that names
them, and the calls planned for a chunk of pairs.

A job is identified by what shapes a verdict (constitution, judge identity, template, sampling, confidence
mode); every run of the same job shares its stored answers. Nothing here sends a call or holds the store open.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prefgen.constitution import Constitution, load_constitution, sample_principles
from prefgen.errors import PrefgenError
from prefgen.hashing import content_hash
from prefgen.judge.core import JudgeClient
from prefgen.judge.fleet import Fleet, split_api_bases
from prefgen.judge.pricing import Price, resolve_price
from prefgen.judge.prompts import make_template
from prefgen.judge.ratelimit import AdaptiveLimit
from prefgen.judge.registry import JudgeSpec, backend_options, make_backend, parse_spec
from prefgen.judge.swap import both_orders
from prefgen.pipelines.configs import BACKEND_ONLY, LabelConfig
from prefgen.pipelines.labelling.inputs import PairsRead, iter_pairs, pair_batches
from prefgen.records import Pair
from prefgen.storage import labels as labels_sql
from prefgen.storage.db import Store


@dataclass(frozen=True, slots=True)
class Task:
    """One planned judge call."""

    pair_id: str
    principle_id: str
    ordering: str
    request_hash: str
    messages: list[dict[str, str]]


def plan_tasks(client: JudgeClient, constitution: Constitution, pairs: list[Pair]) -> list[Task]:
    tasks = []
    for pair in pairs:
        for principle in sample_principles(constitution, pair.id):
            for ordering, comparison in both_orders(pair, principle.text):
                messages = client.render(comparison)
                tasks.append(Task(pair.id, principle.id, ordering, client.request_hash(messages), messages))
    return tasks


@dataclass(frozen=True)
class LabelJob:
    """The constitution, the judge client and the job id of a label config: what every engine shares."""

    config: LabelConfig
    constitution: Constitution
    client: JudgeClient
    spec_text: str
    mode: str  # confidence mode: logprobs / verbalised / self_consistency / verdict
    job_id: str

    @classmethod
    def from_config(cls, config: LabelConfig) -> LabelJob:
        constitution = load_constitution(config.constitution)
        client, spec_text = build_client(config, constitution)
        mode = confidence_mode(config, client.backend.supports_logprobs)
        job_id = content_hash(["label-job", constitution.id, client.identity, mode], length=16)
        return cls(config, constitution, client, spec_text, mode, job_id)

    def record(self) -> dict[str, Any]:
        """The job's row in `label_jobs`."""
        client = self.client
        return {
            "job_id": self.job_id,
            "constitution_id": self.constitution.id,
            "judge_spec": self.spec_text,
            "backend": client.backend.name,
            "model": client.backend.model,
            "template_version": client.template.version,
            "confidence_mode": self.mode,
            "sampling": client.params.as_dict(),
            "template": client.template.record(),  # with the store's texts, rebuilds every request (prefgen show)
        }

    def save_inputs(self, store: Store) -> None:
        """The constitution, its principles and the job, so that every judgement row has what it refers to."""
        constitution = self.constitution
        labels_sql.save_constitution(
            store, cid=constitution.id, name=constitution.name, version=str(constitution.version),
            source=str(self.config.constitution), body=constitution.model_dump(mode="json"),
            principles=[{"principle_id": p.id, "text": p.text, "weight": p.weight, "category": p.category}
                        for p in constitution.principles],
        )
        labels_sql.save_job(store, self.record())

    def count_planned_calls(self, tally: PairsRead | None = None) -> tuple[PairsRead, int]:
        """The first pass: every row validated (so bad input writes nothing) and the calls counted, for the
        progress bar's total, without keeping the pairs."""
        config = self.config
        tally = PairsRead([]) if tally is None else tally
        calls = 0
        for pair in iter_pairs(config.pairs, tally, limit=config.limit, skip_bad=config.skip_bad):
            calls += 2 * len(sample_principles(self.constitution, pair.id))
        return tally, calls

    def chunks(self, tally: PairsRead) -> Iterator[list[Pair]]:
        """The input's pairs, `--chunk-pairs` at a time (the second pass)."""
        config = self.config
        return pair_batches(config.pairs, tally, config.chunk_pairs, limit=config.limit, skip_bad=config.skip_bad)

    def start_warnings(self) -> list[str]:
        """What the user should know before a call is sent: a --threshold that cannot filter anything."""
        config = self.config
        if self.mode != "verdict" or config.threshold <= 0:
            return []
        why = ("--mode cot answers with a letter" if config.mode == "cot"
               else "this backend gives no logprobs, in batches neither" if config.batch
               else "this backend gives no logprobs")
        return [f"{self.spec_text} gives hard A/B verdicts ({why}): every consistent pair has confidence 1, so "
                f"--threshold {config.threshold:g} filters nothing. For a graded confidence use --mode "
                "verbalised or --samples N."]


def confidence_mode(config: LabelConfig, supports_logprobs: bool) -> str:
    if config.samples > 1:
        return "self_consistency"
    if config.mode == "verbalised":
        return "verbalised"
    return "logprobs" if supports_logprobs and config.mode == "direct" else "verdict"


def refuse_idle_backend_options(config: LabelConfig, spec: JudgeSpec) -> None:
    """A backend setting the user gave that this judge does not take is an error, not a silent no-op (e.g.
    --batch-size, the local judge's requests per forward pass, given to an API judge)."""
    taken = backend_options(spec)
    idle = [BACKEND_ONLY[name] for name in config.changed(BACKEND_ONLY) if name not in taken]
    if idle:
        offered = ", ".join(flag for name, flag in BACKEND_ONLY.items() if name in taken) or "none of them"
        raise PrefgenError(f"{', '.join(idle)}: not read by the {spec.backend} judge (of these options it takes "
                           f"{offered}); leave {'it' if len(idle) == 1 else 'them'} out")


def build_client(config: LabelConfig, constitution: Constitution) -> tuple[JudgeClient, str]:
    spec = parse_spec(config.judge)
    refuse_idle_backend_options(config, spec)
    # Every setting on offer; each backend takes the ones it declares (`Backend.options`).
    settings = dict(api_key=config.api_key, timeout=config.timeout_s, concurrency=config.concurrency,
                    transport=config.transport, batch_size=config.batch_size, allow_http_key=config.allow_http_key)
    bases = split_api_bases(config.api_base)
    if len(bases) > 1:
        backend = Fleet([make_backend(spec, api_base=base, **settings) for base in bases])
    else:
        backend = make_backend(spec, api_base=config.api_base, **settings)
    template = make_template(constitution.judge_template, config.mode)
    params = template.sampling(samples=config.samples)
    if not backend.supports_logprobs and params.logprobs:
        params = dataclasses.replace(params, logprobs=False)
    price = resolve_price(backend.model, backend.name, config.price_in, config.price_out)
    if config.max_cost is not None and price is None:
        raise PrefgenError(
            f"--max-cost needs a price, and none is known for model {backend.model!r}: "
            "pass --price-in and --price-out (USD per million tokens)"
        )
    # One server's rate limits: a fleet of servers (several --api-base) and a local model have none to follow.
    adapt = config.adaptive_concurrency and len(bases) <= 1 and spec.backend != "local"
    client = JudgeClient(backend, template, params, price=price, max_attempts=config.max_attempts,
                         timeout_s=config.timeout_s, limiter=AdaptiveLimit(config.concurrency) if adapt else None)
    return client, spec.text


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """About four characters a token for English: enough for a budget check and a dry-run estimate."""
    return sum(len(m["content"]) for m in messages) // 4 + 8 * len(messages)


@dataclass
class DryRunEstimate:
    """Calls, tokens and cost of what a run would send, added up a chunk at a time."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_max: float = 0.0
    batch: bool = False  # --batch: priced at the provider's batch rate

    def price(self, client: JudgeClient) -> Price | None:
        if client.price is None or not self.batch:
            return client.price
        return client.price.at_batch_rate()

    def add(self, client: JudgeClient, todo: list[Task]) -> None:
        self.calls += len(todo)
        self.tokens_in += sum(estimate_tokens(t.messages) for t in todo)
        self.tokens_out += len(todo) * client.params.max_tokens * client.params.n
        price = self.price(client)
        if price:
            self.cost_max += sum(price.most(*client.upper_bound_tokens(t.messages)) for t in todo)

    def as_dict(self, client: JudgeClient) -> dict[str, Any]:
        price = self.price(client)
        return {
            "calls": self.calls,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost": price.cost(self.tokens_in, self.tokens_out) if price else None,
            # What --max-cost reserves: the most these calls can cost (one token per byte in, max_tokens out).
            "cost_max": self.cost_max if price else None,
            "priced": price is not None,
        }
