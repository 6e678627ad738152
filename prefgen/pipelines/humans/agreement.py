"""`prefgen agreement`: how far an AI judge agrees with the human labels, and the humans with each other.

The metric functions at the top are pure (lists in, numbers out) so they are tested against hand-computed
values; `agreement_report` fetches the rows from the store and applies them.

Definitions:
- agreement, ties excluded: share of pairs where the judge and the human chose the same side, over the pairs
  where neither said tie;
- agreement, ties as half: over every pair, 1 for the same label (tie = tie included), 1/2 when exactly one
  side said tie, 0 for opposite sides;
- Cohen's kappa over the labels a / b / tie (scikit-learn's); undefined (None) when chance agreement is
  already 1;
- the interval is a percentile bootstrap over pairs (seeded, so a report is reproducible);
- "before the filter" uses the judge's verdict on every pair it answered (P(a better) averaged over all its
  principles, weighted), "after" only the pairs kept by the consistency/confidence filter;
- inter-annotator: the mean share of agreeing annotator pairs per item and Fleiss' kappa, per import.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score

from prefgen.intervals import N_RESAMPLES, mean_interval
from prefgen.judge.swap import side
from prefgen.pipelines.configs import AgreementConfig, configured
from prefgen.storage import human as human_sql
from prefgen.storage.db import Store

LABELS = ("a", "b", "tie")
CONFIDENCE_EDGES = (0.2, 0.4, 0.6, 0.8)


# -- metrics ---------------------------------------------------------------------------------------------


def match_scores(ai: Sequence[str], human: Sequence[str], *, ties: str = "exclude") -> np.ndarray:
    """Per-pair agreement scores: ties="exclude" drops pairs with a tie on either side; "half" scores them."""
    if ties == "exclude":
        return np.array([float(x == y) for x, y in zip(ai, human) if "tie" not in (x, y)])
    if ties == "half":
        return np.array([1.0 if x == y else 0.5 if "tie" in (x, y) else 0.0 for x, y in zip(ai, human)])
    raise ValueError(f"ties must be 'exclude' or 'half', not {ties!r}")


def agreement_rate(ai: Sequence[str], human: Sequence[str], *, ties: str = "exclude") -> float | None:
    scores = match_scores(ai, human, ties=ties)
    return float(scores.mean()) if scores.size else None


def cohen_kappa(x: Sequence[str], y: Sequence[str]) -> float | None:
    """Cohen's kappa (scikit-learn's) over the labels either rater used; None where it is undefined: no pairs,
    or chance agreement already 1 (both raters gave one and the same label throughout)."""
    if not x or len(set(x) | set(y)) < 2:
        return None
    return float(cohen_kappa_score(x, y))


def vote_counts(items: Sequence[Sequence[str]], categories: Sequence[str] = LABELS) -> np.ndarray:
    """Items x categories matrix of how many raters gave each label."""
    index = {c: i for i, c in enumerate(categories)}
    counts = np.zeros((len(items), len(categories)), dtype=np.int64)
    for row, labels in enumerate(items):
        for label in labels:
            counts[row, index[label]] += 1
    return counts


def observed_agreement(counts: np.ndarray) -> float | None:
    """Mean over items of the share of rater pairs that agree (Fleiss' P-bar); every item needs n >= 2 raters."""
    if counts.size == 0:
        return None
    n = counts.sum(axis=1)
    per_item = (counts * (counts - 1)).sum(axis=1) / (n * (n - 1))
    return float(per_item.mean())


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa for items each rated by the same number of raters."""
    p_bar = observed_agreement(counts)
    if p_bar is None:
        return None
    shares = counts.sum(axis=0) / counts.sum()
    p_e = float((shares**2).sum())
    if p_e >= 1.0:
        return None
    return (p_bar - p_e) / (1.0 - p_e)


def confidence_bucket(confidence: float) -> str:
    lower = 0.0
    for edge in CONFIDENCE_EDGES:
        if confidence < edge:
            return f"{lower:.1f}-{edge:.1f}"
        lower = edge
    return f"{lower:.1f}-1.0"


# -- report ----------------------------------------------------------------------------------------------


@dataclass
class Rate:
    n: int
    value: float | None
    low: float | None = None
    high: float | None = None


@dataclass
class AgreementStats:
    pairs: int
    ties_excluded: Rate
    ties_half: Rate
    kappa: float | None


@dataclass
class PrincipleAgreement:
    principle_id: str
    pairs: int
    agreement: float | None
    kept: int
    agreement_kept: float | None


@dataclass
class BucketAgreement:
    bucket: str
    pairs: int
    agreement: float | None
    kept_share: float


@dataclass
class JobAgreement:
    job_id: str
    judge_spec: str
    pairs: int  # human-labelled pairs the judge gave a verdict on
    before: AgreementStats
    after: AgreementStats
    kept_share: float
    by_principle: list[PrincipleAgreement]
    by_confidence: list[BucketAgreement]


@dataclass
class AnnotatorAgreement:
    source: str
    items: int
    annotators: int
    raters_per_item: int
    observed: float | None
    fleiss_kappa: float | None


@dataclass
class RoutedAgreement:
    """Judge/human agreement on the pairs `prefgen route` picked by rank: kept apart from `jobs` because they
    were chosen for looking wrong; 1 - agreement is the share of routed pairs that were judge errors."""

    job_id: str
    judge_spec: str
    pairs: int
    agreement: float | None  # unfiltered verdict, ties excluded


@dataclass
class AgreementReport:
    split: str | None
    jobs: list[JobAgreement]  # on the unbiased pairs: imports and the random slices of route batches
    annotators: list[AnnotatorAgreement]
    routed: list[RoutedAgreement] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _rate(scores: np.ndarray, seed: int, n_resamples: int) -> Rate:
    if not scores.size:
        return Rate(0, None)
    interval = mean_interval(scores, n_resamples=n_resamples, seed=seed)
    return Rate(int(scores.size), float(scores.mean()), *interval)


def agreement_stats(ai: Sequence[str], human: Sequence[str], *, seed: int = 0,
                    n_resamples: int = N_RESAMPLES) -> AgreementStats:
    return AgreementStats(
        pairs=len(ai),
        ties_excluded=_rate(match_scores(ai, human, ties="exclude"), seed, n_resamples),
        ties_half=_rate(match_scores(ai, human, ties="half"), seed, n_resamples),
        kappa=cohen_kappa(ai, human),
    )


def principle_agreement(rows: Sequence[dict[str, Any]]) -> list[PrincipleAgreement]:
    """Rows: principle_id, chosen, kept, human (one per principle and pair)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["principle_id"]].append(row)
    result = []
    for principle_id, group in sorted(groups.items()):
        kept = [r for r in group if r["kept"]]
        result.append(PrincipleAgreement(
            principle_id, len(group),
            agreement_rate([r["chosen"] for r in group], [r["human"] for r in group]),
            len(kept), agreement_rate([r["chosen"] for r in kept], [r["human"] for r in kept]),
        ))
    return result


def bucket_agreement(rows: Sequence[dict[str, Any]]) -> list[BucketAgreement]:
    """Rows: p_a (unfiltered), kept, human. Buckets by the unfiltered confidence |2 p_a - 1|."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[confidence_bucket(abs(2.0 * row["p_a"] - 1.0))].append(row)
    return [
        BucketAgreement(bucket, len(group),
                        agreement_rate([side(r["p_a"]) for r in group], [r["human"] for r in group]),
                        sum(bool(r["kept"]) for r in group) / len(group))
        for bucket, group in sorted(groups.items())
    ]


def job_agreement(job_id: str, judge_spec: str, pairs: Sequence[dict[str, Any]],
                  principles: Sequence[dict[str, Any]], *, seed: int = 0,
                  n_resamples: int = N_RESAMPLES) -> JobAgreement:
    """Pairs: p_a, kept, chosen, human per pair; principles: principle_id, chosen, kept, human."""
    kept = [r for r in pairs if r["kept"]]
    return JobAgreement(
        job_id=job_id,
        judge_spec=judge_spec,
        pairs=len(pairs),
        before=agreement_stats([side(r["p_a"]) for r in pairs], [r["human"] for r in pairs],
                               seed=seed, n_resamples=n_resamples),
        after=agreement_stats([r["chosen"] for r in kept], [r["human"] for r in kept],
                              seed=seed, n_resamples=n_resamples),
        kept_share=len(kept) / len(pairs) if pairs else 0.0,
        by_principle=principle_agreement(principles),
        by_confidence=bucket_agreement(pairs),
    )


def annotator_agreement(source: str, votes: Sequence[dict[str, Any]]) -> AnnotatorAgreement:
    """Votes: pair_id, annotator, winner. Items with fewer raters than the usual number are left out, since
    Fleiss' kappa needs the same number of raters per item."""
    by_item: dict[str, list[str]] = defaultdict(list)
    for vote in votes:
        by_item[vote["pair_id"]].append(vote["winner"])
    raters = Counter(len(v) for v in by_item.values()).most_common(1)[0][0]
    items = [labels for labels in by_item.values() if len(labels) == raters]
    counts = vote_counts(items) if raters >= 2 else np.zeros((0, len(LABELS)), dtype=np.int64)
    return AnnotatorAgreement(
        source, len(items), len({v["annotator"] for v in votes}), raters,
        observed_agreement(counts), fleiss_kappa(counts),
    )


def agreement_report(store: Store, config: AgreementConfig | None = None, *, n_resamples: int = N_RESAMPLES,
                     **options: Any) -> AgreementReport:
    """Judge/human agreement per label job (for pairs with both an AI verdict and a human label), and
    inter-annotator agreement per import with several annotators. The knobs are `AgreementConfig`'s (or its
    fields as keyword arguments: `judge`, `split`, `seed`)."""
    config = configured(AgreementConfig, config, options)
    judge, split, seed = config.judge, config.split, config.seed
    pairs_by_job: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in human_sql.pair_verdicts(store, judge=judge, split=split):
        pairs_by_job[(row["job_id"], row["judge_spec"])].append(row)
    principles_by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in human_sql.principle_verdicts(store, judge=judge, split=split):
        principles_by_job[row["job_id"]].append(row)
    jobs = [job_agreement(job_id, spec, rows, principles_by_job[job_id], seed=seed, n_resamples=n_resamples)
            for (job_id, spec), rows in sorted(pairs_by_job.items())]
    votes_by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for vote in human_sql.annotator_votes(store, split=split):
        votes_by_source[vote["source"]].append(vote)
    annotators = [annotator_agreement(source, votes) for source, votes in sorted(votes_by_source.items())]
    return AgreementReport(split, jobs, annotators, routed_agreement(store, judge=judge, split=split))


def routed_agreement(store: Store, *, judge: str | None = None, split: str | None = None) -> list[RoutedAgreement]:
    by_job: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in human_sql.pair_verdicts(store, judge=judge, split=split, selection="routed"):
        by_job[(row["job_id"], row["judge_spec"])].append(row)
    return [RoutedAgreement(job_id, spec, len(rows),
                            agreement_rate([side(r["p_a"]) for r in rows], [r["human"] for r in rows]))
            for (job_id, spec), rows in sorted(by_job.items())]


def summary_rows(report: AgreementReport) -> dict[str, list[dict[str, Any]]]:
    """The report as flat rows, one table per topic, for printing."""
    # "all": every verdict of the judge on the overlap; "kept": the pairs its confidence filter kept.
    jobs = [{
        "judge": j.judge_spec, "job_id": j.job_id, "pairs": j.pairs, "kept_share": j.kept_share,
        "agreement_all": j.before.ties_excluded.value, "agreement_kept": j.after.ties_excluded.value,
        "ci95_kept": _interval(j.after.ties_excluded),
        "ties_half_all": j.before.ties_half.value, "ties_half_kept": j.after.ties_half.value,
        "kappa_all": j.before.kappa, "kappa_kept": j.after.kappa,
    } for j in report.jobs]
    principles = [{"judge": j.judge_spec, **dataclasses.asdict(p)} for j in report.jobs for p in j.by_principle]
    buckets = [{"judge": j.judge_spec, **dataclasses.asdict(b)} for j in report.jobs for b in j.by_confidence]
    annotators = [dataclasses.asdict(a) for a in report.annotators]
    tables = {"judge vs human": jobs, "per principle": principles, "per confidence bucket": buckets,
              "inter-annotator": annotators}
    if report.routed:
        tables["routed pairs (picked by rank: left out above)"] = [dataclasses.asdict(r) for r in report.routed]
    return tables


NO_OVERLAP = ("no pair has both a judge verdict and a human label, so there is no agreement to measure: judge the "
              "human-labelled pairs too (`prefgen label -p` on the human file: cheap, and it is what calibration "
              "and `mix --auto` learn a judge's errors from), or import human labels for pairs the judge labelled")


def store_notes(store: Store, report: AgreementReport) -> list[str]:
    """`agreement_notes` for the report of this store."""
    return agreement_notes(report, judged=human_sql.has_verdicts(store), labelled=human_sql.has_labels(store))


def agreement_notes(report: AgreementReport, *, judged: bool, labelled: bool) -> list[str]:
    """What the tables cannot say on their own: why there is nothing to compare, in one line each.
    `judged`/`labelled`: the store holds AI verdicts / human labels at all."""
    if report.jobs or not (judged and labelled):
        if not judged and not labelled:
            return ["the store holds no judge verdicts and no human labels yet (run `prefgen label` and "
                    "`prefgen import-human`)"]
        if not judged:
            return ["the store holds human labels but no judge verdicts yet (run `prefgen label`)"]
        if not labelled:
            return ["the store holds judge verdicts but no human labels yet (run `prefgen import-human`)"]
        return []
    return [NO_OVERLAP]


def _interval(rate: Rate) -> str | None:
    return None if rate.low is None else f"{rate.low:.3f}-{rate.high:.3f}"


def agreement_summary(store: Store, *, split: str | None = None) -> dict[str, list[dict[str, Any]]] | None:
    """For `prefgen stats`: the flat tables of `summary_rows`, or None when there is nothing to compare."""
    if not human_sql.has_human_tables(store):
        return None
    report = agreement_report(store, split=split, n_resamples=500)
    if not report.jobs and not report.annotators:
        return None
    return summary_rows(report)
