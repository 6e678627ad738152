"""`prefgen show JUDGEMENT`: the request a judgement sent, rebuilt from the store, and what came back.

Nothing per call is stored besides the judgement row: the request is rendered again from the label job's
template record (label_jobs.template: body, mode, system prompt, answer instructions), the pair's texts, the
principle's text, the order and the job's sampling parameters, exactly as `prefgen label` rendered it. The
request hash then proves it: it covers the backend, model, template version, sampling and rendered messages,
so a rebuilt request that hashes to the stored `request_hash` is the request that was sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from prefgen.errors import PrefgenError
from prefgen.hashing import content_hash
from prefgen.judge.base import SamplingParams
from prefgen.judge.prompts import MODES, Template, make_template
from prefgen.judge.swap import both_orders
from prefgen.records import Pair
from prefgen.storage.db import Store
from prefgen.storage.requests import judgement_sources

_PARAM_FIELDS = ("max_tokens", "temperature", "n", "logprobs", "top_logprobs")


@dataclass
class ShownJudgement:
    row: dict[str, Any]  # the judgement and what it was rendered from (storage.requests.judgement_sources)
    messages: list[dict[str, str]]
    params: SamplingParams
    verified: bool  # the rebuilt request hashes to the stored request_hash

    def record(self) -> dict[str, Any]:
        """For --json: the judgement row, the rebuilt request and whether it hashes to the stored one."""
        row = {k: v for k, v in self.row.items() if k not in ("constitution", "template")}
        return {**row, "verified": self.verified, "request": self.wire_body()}

    def wire_body(self) -> dict[str, Any]:
        """The JSON body of the request: for `openai` judges exactly what the HTTP transport posts; for the
        other backends the same model, messages and sampling (their SDKs arrange the fields their own way)."""
        if self.row["backend"] == "openai":
            from prefgen.judge.openai_backend import build_request

            return build_request(self.row["model"], self.messages, self.params)
        return {"model": self.row["model"], "messages": self.messages, **self.params.as_dict()}

    def wire_bytes(self) -> bytes:
        """The body serialised as the openai HTTP transport does (orjson, compact)."""
        import orjson

        return orjson.dumps(self.wire_body())


def sampling_params(stored: dict[str, Any]) -> SamplingParams:
    """The job's SamplingParams from its stored `as_dict()`: the named fields, and the rest as `extra`."""
    named = {k: stored[k] for k in _PARAM_FIELDS if k in stored}
    extra = tuple((k, v) for k, v in stored.items() if k not in _PARAM_FIELDS)
    return SamplingParams(**named, extra=extra)


def job_template(row: dict[str, Any]) -> Template:
    """The template the job rendered with: its stored record, or (jobs labelled before the record existed)
    today's wording for the stored template version; the request hash check tells whether that still holds."""
    if row["template"]:
        return Template.from_record(row["template"])
    custom = (row["constitution"] or {}).get("judge_template")
    for mode in MODES:
        template = make_template(custom, mode)
        if template.version == row["template_version"]:
            return template
    raise PrefgenError(f"judgement {row['request_hash']}: its template version {row['template_version']!r} is "
                       "not one this prefgen can render, and the job has no template on record")


def rebuild(row: dict[str, Any]) -> ShownJudgement:
    if row["prompt"] is None or row["principle_text"] is None or row["sampling"] is None:
        raise PrefgenError(f"judgement {row['request_hash']}: its pair, principle or label job is missing from "
                           "the store, so its request cannot be rebuilt")
    prompt = tuple(json.loads(row["prompt"])) if row["is_chat"] else row["prompt"]
    pair = Pair(row["pair_id"], prompt, row["response_a"], row["response_b"])
    comparison = dict(both_orders(pair, row["principle_text"]))[row["ordering"]]
    template = job_template(row)
    params = sampling_params(row["sampling"])
    messages = template.render(comparison)
    identity = {"backend": row["backend"], "model": row["model"], "template": row["template_version"],
                "params": params.as_dict()}
    verified = content_hash(["judge-request", identity, messages]) == row["request_hash"]
    return ShownJudgement(row, messages, params, verified)


def show_judgement(store: Store, judgement_id: str) -> ShownJudgement:
    """The judgement named by `judgement_id` (its request_hash or a unique prefix), its request rebuilt."""
    return rebuild(judgement_sources(store, judgement_id))


def judgement_lines(shown: ShownJudgement) -> list[str]:
    """The readable form: what was asked, of whom, exactly which messages, and the answer."""
    r = shown.row
    check = ("request hash verified: this is exactly the request that was sent" if shown.verified else
             "WARNING: the rebuilt request does not hash to the stored request_hash; the template or texts on "
             "record differ from what was sent, so the messages below may not be exact")
    lines = [
        f"judgement {r['request_hash']}",
        f"  job {r['job_id']}, run {r['run_id']}, at {r['created_at']}",
        f"  judge {r['judge_spec'] or r['backend'] + ':' + r['model']}, template {r['template_version']}",
        f"  pair {r['pair_id']}{_input_id(r)}, principle {r['principle_id']}, order {r['ordering']}: "
        f"{shown_first(r)} shown first",
        f"  sampling {json.dumps(shown.params.as_dict())}",
        f"  {check}",
    ]
    for message in shown.messages:
        lines += [f"--- {message['role']} ---", message["content"]]
    answer = [f"status {r['status']}", f"verdict {r['verdict'] or '-'}",
              f"p_first {r['p_first']:.4g}" if r["p_first"] is not None else "p_first -",
              f"confidence from {r['confidence_source'] or '-'}", f"tokens {r['tokens_in']} in / {r['tokens_out']} out",
              f"{r['attempts']} attempt(s)", f"{r['latency_s']:.3g} s" if r["latency_s"] is not None else ""]
    lines += [f"--- answer ({', '.join(a for a in answer if a)}) ---", r["raw_text"] or ""]
    if r["error"]:
        lines.append(f"error: {r['error']}")
    return lines


def _input_id(row: dict[str, Any]) -> str:
    return f" (input id {row['source_id']})" if row.get("source_id") is not None else ""


def shown_first(row: dict[str, Any]) -> str:
    """Which response the judge saw first, named as the input named it. The store keeps each pair's responses
    in a canonical order (`pairs.input_swapped` says where that differs from the input), and the judgement's
    `ordering` is in the store's terms."""
    stored = "response_a" if row["ordering"] == "ab" else "response_b"
    swapped = row.get("input_swapped")
    if swapped is None:
        return f"{stored} (as stored; this store does not record the input's order)"
    if not swapped:
        return f"the input's {stored}"
    theirs = "response_b" if stored == "response_a" else "response_a"
    return f"the input's {theirs} (stored as {stored}: the store's order is canonical)"

