"""Position swapping, end to end: the two orders of a question are built here, combined here into one
preference, and turned here into the records the store keeps. Backends only ever answer one ordered
comparison; every caller that needs a side from a probability uses `side`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import fields

from prefgen.judge.base import JUDGE_ERROR, OK, PARSE_ERROR, Comparison
from prefgen.records import Answer, Pair, PairAggregate, PairPreference, Preference, SwapResult

__all__ = [
    "DEFAULT_THRESHOLD", "ORDERINGS", "TIE_TOLERANCE", "PairAggregate", "SwapResult", "aggregate_orders",
    "aggregate_principles", "both_orders", "pair_preference", "preference", "side", "swap_answers",
]

DEFAULT_THRESHOLD = 0.5  # |2 P(a) - 1| >= 0.5 means P(chosen) >= 0.75 after averaging both orders
ORDERINGS = ("ab", "ba")  # "ab": response_a shown first; "ba": response_b shown first
# Swap-averaging two answers of equal confidence that disagree gives 0.5 only up to rounding
# ((0.9 + 1 - 0.9) / 2 == 0.49999999999999994): that is a tie, not a lean towards b.
TIE_TOLERANCE = 1e-9
_DROP_PRIORITY = ("pending", "judge_error", "parse_error", "inconsistent", "tie", "low_confidence")


def side(p_a: float) -> str:
    """The side a probability that a is better points to: "a", "b", or "tie" within `TIE_TOLERANCE` of 0.5."""
    if abs(p_a - 0.5) < TIE_TOLERANCE:
        return "tie"
    return "a" if p_a > 0.5 else "b"


def both_orders(pair: Pair, principle_text: str) -> tuple[tuple[str, Comparison], ...]:
    """The two questions asked about one (pair, principle), each with its ordering name."""
    return (
        ("ab", Comparison(pair.prompt, pair.response_a, pair.response_b, principle_text)),
        ("ba", Comparison(pair.prompt, pair.response_b, pair.response_a, principle_text)),
    )


def _side_of_order(p_first: float, first_is_a: bool) -> str:
    first_side = side(p_first)  # "a" here means "the first slot"
    if first_side == "tie" or first_is_a:
        return first_side
    return "b" if first_side == "a" else "a"


def aggregate_orders(
    status_ab: str | None, p_ab: float | None, status_ba: str | None, p_ba: float | None, threshold: float
) -> SwapResult:
    """Combine P(first better) from the a-first and the b-first call.

    P(a better) = (p_ab + 1 - p_ba) / 2; consistent when both orders prefer the same response;
    confidence = |2 P(a better) - 1|. Kept when consistent and confidence >= threshold.
    A missing order (not yet asked) is `pending`; errors win over every other reason.
    """
    statuses = (status_ab, status_ba)
    if JUDGE_ERROR in statuses:
        return SwapResult(None, False, None, None, False, "judge_error")
    if PARSE_ERROR in statuses:
        return SwapResult(None, False, None, None, False, "parse_error")
    if status_ab != OK or status_ba != OK or p_ab is None or p_ba is None:
        return SwapResult(None, False, None, None, False, "pending")
    p_a = (p_ab + 1.0 - p_ba) / 2.0
    confidence = abs(2.0 * p_a - 1.0)
    side_ab, side_ba = _side_of_order(p_ab, first_is_a=True), _side_of_order(p_ba, first_is_a=False)
    chosen = side(p_a)
    if "tie" in (side_ab, side_ba):  # the judge itself could not separate them in one order
        return SwapResult(p_a, False, confidence, "tie", False, "tie")
    if side_ab != side_ba:  # e.g. a judge that always names the first slot: p_a = 0.5, inconsistent
        return SwapResult(p_a, False, confidence, chosen, False, "inconsistent")
    if confidence < threshold:
        return SwapResult(p_a, True, confidence, chosen, False, "low_confidence")
    return SwapResult(p_a, True, confidence, chosen, True, None)


def swap_answers(ab: Answer | None, ba: Answer | None, threshold: float) -> SwapResult:
    """`aggregate_orders` over the answers of both orders; None is an order not answered yet."""
    return aggregate_orders(ab.status if ab else None, ab.p_first if ab else None,
                            ba.status if ba else None, ba.p_first if ba else None, threshold)


@functools.cache
def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))  # dataclasses.fields builds its tuple anew on every call


def _values(record: object, cls: type) -> dict[str, object]:
    return {name: getattr(record, name) for name in _names(cls)}


def preference(job_id: str, pair_id: str, principle_id: str, ab: Answer | None, ba: Answer | None,
               threshold: float) -> Preference:
    """The stored record of one (pair, principle): both answers combined, with the answers it came from."""
    sources = {a.confidence_source for a in (ab, ba) if a and a.confidence_source}
    return Preference(
        **_values(swap_answers(ab, ba, threshold), SwapResult),
        job_id=job_id, pair_id=pair_id, principle_id=principle_id,
        p_ab=ab.p_first if ab else None, p_ba=ba.p_first if ba else None,
        confidence_source="+".join(sorted(sources)) or None, threshold=threshold,
    )


def aggregate_principles(results: Sequence[tuple[SwapResult, float]], threshold: float) -> PairAggregate:
    """Combine a pair's per-principle results, each with its principle weight.

    The pair's P(a better) is the weight-averaged P over kept principles; the pair is kept when at least
    one principle is kept and the kept ones, averaged, still clear the threshold. `principle_agreement` is the share of
    principles with a verdict that chose the pair's side, so a user can see principles pulling apart.
    """
    kept = [(r, w) for r, w in results if r.kept]
    judged = [r for r, _ in results if r.chosen in ("a", "b")]
    if not kept:
        reasons = {r.drop_reason for r, _ in results}
        reason = next((x for x in _DROP_PRIORITY if x in reasons), "no_kept_principle")
        return PairAggregate(len(results), 0, None, None, None, None, False, reason)
    total = sum(w for _, w in kept)  # drawn principles always have weight > 0
    p_a = sum((r.p_a or 0.0) * w for r, w in kept) / total
    confidence = abs(2.0 * p_a - 1.0)
    chosen = side(p_a)
    agreement = sum(1 for r in judged if r.chosen == chosen) / len(judged) if judged else None
    if chosen == "tie" or confidence < threshold:
        return PairAggregate(len(results), len(kept), p_a, confidence, chosen, agreement, False, "principles_disagree")
    return PairAggregate(len(results), len(kept), p_a, confidence, chosen, agreement, True, None)


def pair_preference(job_id: str, pair_id: str, results: Sequence[tuple[SwapResult, float]],
                    threshold: float) -> PairPreference:
    """The stored record of one pair: its principles' results combined."""
    aggregate = aggregate_principles(results, threshold)
    return PairPreference(**_values(aggregate, PairAggregate), job_id=job_id, pair_id=pair_id)


def preferences_from_answers(job_id: str, orders: dict[tuple[str, str], tuple[Answer | None, Answer | None]],
                             weight: Callable[[str], float], threshold: float
                             ) -> tuple[list[Preference], list[PairPreference]]:
    """The preferences of (pair, principle) -> (answer A/B, answer B/A), and of each pair over its principles
    (weighted by `weight(principle_id)`): what a run derives, and `prefgen ingest` too."""
    prefs = []
    by_pair: dict[str, list[tuple[SwapResult, float]]] = {}
    for (pair_id, principle_id), (ab, ba) in orders.items():
        pref = preference(job_id, pair_id, principle_id, ab, ba, threshold)
        prefs.append(pref)
        by_pair.setdefault(pair_id, []).append((pref, weight(principle_id)))
    pair_prefs = [pair_preference(job_id, pair_id, results, threshold) for pair_id, results in by_pair.items()]
    return prefs, pair_prefs

