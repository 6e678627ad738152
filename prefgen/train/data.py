"""Tokenisation and truncation policy for reward-model pairs.

TRL's `RewardTrainer` (1.16) tokenises `prompt + chosen` and `prompt + rejected` itself and then silently
drops every pair where either side is longer than `max_length`. prefgen tokenises the pairs here instead,
fits them into `max_length` with the policy below, and hands TRL the already tokenised columns
(`chosen_ids`, `rejected_ids`, optionally `margin`). TRL then skips its own tokenisation and its length
filter keeps every pair, because every side is already within `max_length`.

Truncation policy (`fit_to_budget`): the two sides share a context (the prompt, plus any common start of
the responses) and differ in their tails. The whole tails are kept when they fit and the context is cut
from the left, so the final turns stay. When the tails alone do not fit, a floor of the context (a quarter
of the budget) is kept so the response is still judged against its question, and the tails are cut from
the right. Because the tails start where the two sides first differ, cutting never makes them identical;
pairs that are identical anyway are dropped and counted.

torch, transformers and datasets are imported inside functions so that importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prefgen.errors import PrefgenError

CONTEXT_FLOOR = 0.25
ROLE_LABELS = {"user": "Human", "assistant": "Assistant", "system": "System"}

Text = str | list[dict[str, str]]


@dataclass(frozen=True)
class PreferenceRow:
    """One pair after validation; `prompt` is "" (or []) for implicit-prompt rows."""

    prompt: Text
    chosen: Text
    rejected: Text
    margin: float
    p_chosen: float = 1.0  # probability that `chosen` is better: the soft target
    weight: float = 1.0


@dataclass(frozen=True)
class TokenLayout:
    """Special tokens around the text of one side, and how conversations become text."""

    head: tuple[int, ...]  # before the text: [CLS] for BERT, <s> for some decoders
    tail: tuple[int, ...]  # after the text: [SEP] for BERT, EOS appended for decoders (as TRL does)
    chat_template: bool  # conversations go through tokenizer.apply_chat_template
    appends_eos: bool = False  # EOS is added by prefgen, not by the tokenizer's own special tokens

    def budget(self, max_length: int) -> int:
        budget = max_length - len(self.head) - len(self.tail)
        if budget < 2:
            raise PrefgenError(f"max_length={max_length} leaves no room for text after the special tokens")
        return budget

    def wrap(self, body: Sequence[int]) -> list[int]:
        return [*self.head, *body, *self.tail]


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Give the tokenizer the EOS and pad tokens that TRL and sequence classification need.

    BERT-style tokenizers have no EOS: [SEP] plays that role. Decoders often have no pad token: EOS is
    used, which is what TRL falls back to as well.
    """
    if tokenizer.eos_token is None:
        if tokenizer.sep_token is None:
            raise PrefgenError("the tokenizer has neither an EOS nor a SEP token to end a sequence with")
        tokenizer.eos_token = tokenizer.sep_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Sequence classification on decoders pools the last non-pad token: that needs right padding.
    tokenizer.padding_side = "right"
    return tokenizer


def normalize_row(index: int, row: dict[str, Any]) -> PreferenceRow:
    """Validate one TRL preference row and make prompt and responses the same kind (text or messages)."""
    for key in ("chosen", "rejected"):
        if key not in row or row[key] is None:
            raise PrefgenError(f"training row {index}: missing '{key}'")
        if not isinstance(row[key], str | list):
            raise PrefgenError(f"training row {index}: '{key}' must be text or a list of messages")
    prompt = row.get("prompt") or ""
    chosen, rejected = row["chosen"], row["rejected"]
    if any(isinstance(part, list) for part in (prompt, chosen, rejected)):
        prompt = _as_messages(prompt, "user")
        chosen = _as_messages(chosen, "assistant")
        rejected = _as_messages(rejected, "assistant")
    margin = row.get("margin")
    return PreferenceRow(prompt, chosen, rejected, float(margin) if margin is not None else 0.0,
                         _unit(index, row, "p_chosen", 1.0), _unit(index, row, "weight", 1.0))


def _unit(index: int, row: dict[str, Any], key: str, default: float) -> float:
    """A value in [0, 1] from the row, or the default when the row has none."""
    value = row.get(key)
    if value is None:
        return default
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise PrefgenError(f"training row {index}: '{key}' must be in [0, 1] (got {value})")
    return value


def _as_messages(value: Text, role: str) -> list[dict[str, str]]:
    if isinstance(value, list):
        return value
    return [{"role": role, "content": value}] if value else []


def render_messages(messages: Iterable[dict[str, str]]) -> str:
    """Messages as an HH-RLHF style transcript, for tokenizers without a chat template (encoders)."""
    return "".join(f"\n\n{ROLE_LABELS.get(m['role'], m['role'].title())}: {m['content']}" for m in messages)


def join_text(prompt: str, response: str) -> str:
    """prompt + response, with a newline between them when neither side brings whitespace.

    TRL concatenates without a separator; "Is it safe?" + "No." would then run together, which BPE
    tokenizers merge into tokens that appear nowhere else.
    """
    if not prompt or prompt[-1].isspace() or response[:1].isspace():
        return prompt + response
    return f"{prompt}\n{response}"


def conversation_text(tokenizer: Any, layout: TokenLayout, prompt: Text, response: Text) -> str:
    """The text of one side: what the reward model reads for (prompt, response)."""
    if isinstance(prompt, list) or isinstance(response, list):
        messages = [*_as_messages(prompt, "user"), *_as_messages(response, "assistant")]
        if layout.chat_template:
            return tokenizer.apply_chat_template(messages, tokenize=False)
        return render_messages(messages)
    return join_text(prompt, response)


def wants_chat_template(tokenizer: Any, rows: Iterable[PreferenceRow]) -> bool:
    return getattr(tokenizer, "chat_template", None) is not None and any(
        isinstance(row.chosen, list) for row in rows
    )


def token_layout(tokenizer: Any, chat_template: bool = False) -> TokenLayout:
    """Find the special tokens the tokenizer puts around a text, by encoding a probe with and without them."""
    bos = tokenizer.bos_token_id
    if chat_template:
        # The template writes its own specials as text; only a leading BOS must survive left truncation.
        probe = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
        ids = _token_ids(tokenizer, [probe])[0]
        return TokenLayout((bos,) if bos is not None and ids[:1] == [bos] else (), (), True)
    with_specials = tokenizer("x", add_special_tokens=True)["input_ids"]
    bare = tokenizer("x", add_special_tokens=False)["input_ids"]
    start = _find_sublist(with_specials, bare)
    head, tail = (with_specials[:start], with_specials[start + len(bare) :]) if start >= 0 else ([], [])
    eos = tokenizer.eos_token_id
    appends_eos = eos is not None and tail[-1:] != [eos]
    if appends_eos:
        # TRL appends EOS to plain-text sides so a decoder's last token is always the same marker.
        tail = [*tail, eos]
    return TokenLayout(tuple(head), tuple(tail), False, appends_eos)


def _find_sublist(haystack: list[int], needle: list[int]) -> int:
    for start in range(len(haystack) - len(needle) + 1):
        if haystack[start : start + len(needle)] == needle:
            return start
    return -1


def _token_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    # verbose=False: overlong texts are expected here (they are truncated next), not worth a warning.
    return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]


def body_ids(tokenizer: Any, layout: TokenLayout, texts: list[str]) -> list[list[int]]:
    """Token ids of each text without the layout's special tokens."""
    encoded = _token_ids(tokenizer, texts)
    n_head = len(layout.head)
    if layout.chat_template and n_head:
        encoded = [ids[n_head:] if tuple(ids[:n_head]) == layout.head else ids for ids in encoded]
    return encoded


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def fit_to_budget(
    context: Sequence[int],
    tails: Sequence[Sequence[int]],
    budget: int,
    context_floor: float = CONTEXT_FLOOR,
) -> tuple[list[list[int]], str]:
    """Fit `context + tail` for every tail into `budget` tokens, with one shared cut of the context.

    Returns the fitted sequences and what was done: "kept", "context_cut" or "response_cut".
    """
    longest = max(len(tail) for tail in tails)
    keep = kept_context(len(context), longest, budget, context_floor)
    if keep == len(context) and keep + longest <= budget:
        return [[*context, *tail] for tail in tails], "kept"
    room = budget - keep
    fitted = [[*context[len(context) - keep :], *tail[:room]] for tail in tails]
    return fitted, ("response_cut" if longest > room else "context_cut")


def kept_context(context: int, longest_tail: int, budget: int, context_floor: float = CONTEXT_FLOOR) -> int:
    """How many of the context's last tokens `fit_to_budget` keeps."""
    if context + longest_tail <= budget:
        return context
    return min(context, max(budget - longest_tail, int(budget * context_floor)))


def fit_pair(
    chosen: Sequence[int], rejected: Sequence[int], budget: int, context_floor: float = CONTEXT_FLOOR
) -> tuple[list[int], list[int], str]:
    """Truncate a pair to `budget` tokens per side, keeping the point where the sides differ."""
    shared = common_prefix_len(chosen, rejected)
    (fitted_chosen, fitted_rejected), status = fit_to_budget(
        chosen[:shared], [chosen[shared:], rejected[shared:]], budget, context_floor
    )
    return fitted_chosen, fitted_rejected, status


def build_preference_dataset(
    rows: Iterable[dict[str, Any]],
    tokenizer: Any,
    max_length: int,
    use_margin: bool = False,
    soft: bool = False,
    starts: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Tokenise and truncate preference rows into the columns TRL's RewardTrainer takes as-is.

    Returns a `datasets.Dataset` with `chosen_ids`, `rejected_ids` (and `margin` when `use_margin`; TRL
    uses a `margin` column whenever it is present, so it is left out otherwise), `p_chosen` when `soft`,
    `weight` when any row carries a weight, `chosen_start` and `rejected_start` (where each side's response
    begins, see `response_start`) when `starts`, and a report of what the truncation did.
    """
    from datasets import Dataset

    rows_list = list(rows)
    pairs = [normalize_row(i, row) for i, row in enumerate(rows_list)]
    if not pairs:
        raise PrefgenError("no training pairs")
    layout = token_layout(tokenizer, wants_chat_template(tokenizer, pairs))
    budget = layout.budget(max_length)
    chosen = body_ids(tokenizer, layout, [conversation_text(tokenizer, layout, p.prompt, p.chosen) for p in pairs])
    rejected = body_ids(
        tokenizer, layout, [conversation_text(tokenizer, layout, p.prompt, p.rejected) for p in pairs]
    )
    prompts = (body_ids(tokenizer, layout, [_prompt_text(tokenizer, layout, p.prompt) for p in pairs]) if starts
               else [[] for _ in pairs])
    columns: dict[str, list] = {"chosen_ids": [], "rejected_ids": [], "margin": [], "p_chosen": [], "weight": [],
                                "chosen_start": [], "rejected_start": []}
    report = _empty_report(len(pairs), max_length, layout)
    for pair, ids_c, ids_r, ids_p in zip(pairs, chosen, rejected, prompts, strict=True):
        report["identical_input"] += ids_c == ids_r
        fitted_c, fitted_r, status = fit_pair(ids_c, ids_r, budget)
        if fitted_c == fitted_r:
            report["n_dropped_identical"] += 1
            continue
        report[status] += 1
        report["_tokens_in"] += max(len(ids_c), len(ids_r)) + len(layout.head) + len(layout.tail)
        columns["chosen_ids"].append(layout.wrap(fitted_c))
        columns["rejected_ids"].append(layout.wrap(fitted_r))
        columns["margin"].append(pair.margin)
        columns["p_chosen"].append(pair.p_chosen)
        columns["weight"].append(pair.weight)
        start = response_start(layout, ids_c, ids_r, ids_p, budget)
        columns["chosen_start"].append(start)
        columns["rejected_start"].append(start)
    weighted = any(row.get("weight") is not None for row in rows_list)
    for key, wanted in (("margin", use_margin), ("p_chosen", soft), ("weight", weighted),
                        ("chosen_start", starts), ("rejected_start", starts)):
        if not wanted:
            del columns[key]
    report = _finish_report(report, columns)
    return Dataset.from_dict(columns), report


def response_start(layout: TokenLayout, chosen: Sequence[int], rejected: Sequence[int], prompt: Sequence[int],
                   budget: int) -> int:
    """Where the response begins in both fitted sides of a pair (`fit_pair`): after what is left of the
    prompt once the shared context is cut from the left. Both sides share it, since they share the prompt."""
    shared = common_prefix_len(chosen, rejected)
    in_prompt = min(common_prefix_len(chosen, prompt), common_prefix_len(rejected, prompt), shared)
    keep = kept_context(shared, max(len(chosen), len(rejected)) - shared, budget)
    return len(layout.head) + max(0, keep - (shared - in_prompt))


def _empty_report(n_in: int, max_length: int, layout: TokenLayout) -> dict[str, Any]:
    return {
        "n_in": n_in,
        "max_length": max_length,
        "format": "chat_template" if layout.chat_template else "text",
        "identical_input": 0,
        "n_dropped_identical": 0,
        "kept": 0,
        "context_cut": 0,
        "response_cut": 0,
        "_tokens_in": 0,
    }


def _finish_report(raw: dict[str, Any], columns: dict[str, list]) -> dict[str, Any]:
    lengths = [max(len(c), len(r)) for c, r in zip(columns["chosen_ids"], columns["rejected_ids"], strict=True)]
    n_out = len(lengths)
    targets = columns.get("p_chosen")
    return {
        "soft_targets": targets is not None,
        "mean_p_chosen": round(sum(targets) / n_out, 4) if targets and n_out else None,
        "weighted": "weight" in columns,
        "n_in": raw["n_in"],
        "n_out": n_out,
        "n_truncated": raw["context_cut"] + raw["response_cut"],
        "n_context_cut": raw["context_cut"],
        "n_response_cut": raw["response_cut"],
        "n_dropped_identical": raw["n_dropped_identical"],
        "n_identical_input": raw["identical_input"],
        "max_length": raw["max_length"],
        "format": raw["format"],
        "mean_tokens_before": round(raw["_tokens_in"] / n_out, 1) if n_out else 0.0,
        "mean_tokens_after": round(sum(lengths) / n_out, 1) if n_out else 0.0,
        "max_tokens_after": max(lengths, default=0),
    }


def encode_for_scoring(
    tokenizer: Any,
    prompts: Sequence[Text],
    responses: Sequence[Text],
    max_length: int,
) -> list[list[int]]:
    """Token ids of each (prompt, response), truncated like training: the response end survives."""
    return encode_responses(tokenizer, prompts, responses, max_length)[0]


def encode_responses(
    tokenizer: Any,
    prompts: Sequence[Text],
    responses: Sequence[Text],
    max_length: int,
) -> tuple[list[list[int]], list[int]]:
    """`encode_for_scoring`, plus the position where each response begins (what a response-mean head reads)."""
    if len(prompts) != len(responses):
        raise PrefgenError(f"{len(prompts)} prompts but {len(responses)} responses")
    chat = getattr(tokenizer, "chat_template", None) is not None and any(isinstance(r, list) for r in responses)
    layout = token_layout(tokenizer, chat)
    budget = layout.budget(max_length)
    texts = [conversation_text(tokenizer, layout, p, r) for p, r in zip(prompts, responses, strict=True)]
    full = body_ids(tokenizer, layout, texts)
    alone = body_ids(tokenizer, layout, [_prompt_text(tokenizer, layout, p) for p in prompts])
    encoded, starts = [], []
    for ids, prompt_ids in zip(full, alone, strict=True):
        # The prompt's own tokens may merge differently at the boundary; the shared prefix is the context.
        context = common_prefix_len(ids, prompt_ids)
        (fitted,), _ = fit_to_budget(ids[:context], [ids[context:]], budget)
        encoded.append(layout.wrap(fitted))
        starts.append(len(layout.head) + kept_context(context, len(ids) - context, budget))
    return encoded, starts


def _prompt_text(tokenizer: Any, layout: TokenLayout, prompt: Text) -> str:
    if isinstance(prompt, list):
        if layout.chat_template:
            return tokenizer.apply_chat_template(prompt, tokenize=False) if prompt else ""
        return render_messages(prompt)
    return prompt


def pad_batch(sequences: Sequence[Sequence[int]], pad_token_id: int, device: Any) -> tuple[Any, Any]:
    """Right-padded `input_ids` and `attention_mask` tensors of a batch of token id lists, on `device`."""
    import torch

    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(list(ids), dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return input_ids.to(device), attention_mask.to(device)
