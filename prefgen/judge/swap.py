"""Position-swap aggregation: the one place where the two orders of a question become one preference."""

from __future__ import annotations

from dataclasses import dataclass

from prefgen.judge.base import JUDGE_ERROR, OK, PARSE_ERROR

DEFAULT_THRESHOLD = 0.5  # |2 P(a) - 1| >= 0.5 means P(chosen) >= 0.75 after averaging both orders


@dataclass(frozen=True, slots=True)
class SwapResult:
    p_a: float | None
    consistent: bool
    confidence: float | None
    chosen: str | None  # "a" / "b" / "tie"
    kept: bool
    drop_reason: str | None


def _side(p_first: float, first_is_a: bool) -> str:
    if p_first == 0.5:
        return "tie"
    first_wins = p_first > 0.5
    return "a" if first_wins == first_is_a else "b"


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
    side_ab, side_ba = _side(p_ab, first_is_a=True), _side(p_ba, first_is_a=False)
    chosen = "tie" if p_a == 0.5 else ("a" if p_a > 0.5 else "b")
    if "tie" in (side_ab, side_ba):  # the judge itself could not separate them in one order
        return SwapResult(p_a, False, confidence, "tie", False, "tie")
    if side_ab != side_ba:  # e.g. a judge that always names the first slot: p_a = 0.5, inconsistent
        return SwapResult(p_a, False, confidence, chosen, False, "inconsistent")
    if confidence < threshold:
        return SwapResult(p_a, True, confidence, chosen, False, "low_confidence")
    return SwapResult(p_a, True, confidence, chosen, True, None)


@dataclass(frozen=True, slots=True)
class PairAggregate:
    n_principles: int
    n_kept: int
    p_a: float | None
    confidence: float | None
    chosen: str | None
    principle_agreement: float | None
    kept: bool
    drop_reason: str | None


def aggregate_principles(results: list[tuple[SwapResult, float]], threshold: float) -> PairAggregate:
    """Combine a pair's per-principle results, each with its principle weight.

    The pair's P(a better) is the weight-averaged P over kept principles; the pair is kept when at least
    one principle is kept and the kept ones, averaged, still clear the threshold. `principle_agreement` is the share of
    principles with a verdict that chose the pair's side, so a user can see principles pulling apart.
    """
    kept = [(r, w) for r, w in results if r.kept]
    judged = [r for r, _ in results if r.chosen in ("a", "b")]
    if not kept:
        reasons = {r.drop_reason for r, _ in results}
        reason = next(
            (x for x in ("pending", "judge_error", "parse_error", "inconsistent", "tie", "low_confidence")
             if x in reasons),
            "no_kept_principle",
        )
        return PairAggregate(len(results), 0, None, None, None, None, False, reason)
    total = sum(w for _, w in kept)  # drawn principles always have weight > 0
    p_a = sum((r.p_a or 0.0) * w for r, w in kept) / total
    confidence = abs(2.0 * p_a - 1.0)
    chosen = "tie" if p_a == 0.5 else ("a" if p_a > 0.5 else "b")
    agreement = sum(1 for r in judged if r.chosen == chosen) / len(judged) if judged else None
    if chosen == "tie" or confidence < threshold:
        return PairAggregate(len(results), len(kept), p_a, confidence, chosen, agreement, False, "principles_disagree")
    return PairAggregate(len(results), len(kept), p_a, confidence, chosen, agreement, True, None)
