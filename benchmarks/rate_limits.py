"""Rate-limit-aware sending against a server that enforces a token budget: 429s and answered calls/s of the
adaptive setting and of a fixed `--concurrency`, in interleaved rounds (the machine's other work moves both
alike), medians printed with their ratio.

    .venv/bin/python benchmarks/rate_limits.py [--rounds 5] [--pairs 60]

Target (issue 23): fewer 429s, and answered calls/s of adaptive >= 0.9x fixed (both are bound by the server's
budget, so they should match; the fixed setting pays in 429s and, past --max-attempts, in failed calls).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prefgen.pipelines.labelling import LabelConfig, run_label  # noqa: E402
from tests.loopback_server import Behaviour, LoopbackServer  # noqa: E402
from tests.test_label_pipeline import CONSTITUTION, truth, write_pairs  # noqa: E402


def one_round(server: LoopbackServer, work: Path, pairs: Path, adaptive: bool, n: int) -> tuple[int, float, int]:
    server.reset(Behaviour(truth=truth, latency_s=0.03, token_budget=24 * 170, budget_window_s=0.25))
    db = work / f"r-{adaptive}-{n}.duckdb"
    summary = run_label(LabelConfig(constitution=work / "c.yaml", pairs=str(pairs), db=db, judge="openai:m",
                                    api_base=server.openai_base, api_key="k", concurrency=48, max_attempts=50,
                                    progress=False, adaptive_concurrency=adaptive))
    answered = summary.calls_sent - summary.judge_errors
    return server.throttled, answered / summary.elapsed_s, summary.judge_errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LoopbackServer() as server:
        work = Path(tmp)
        (work / "c.yaml").write_text(CONSTITUTION)
        pairs = write_pairs(work / "p.jsonl", args.pairs)
        rows = {False: [], True: []}
        for n in range(args.rounds):
            for adaptive in (False, True):
                rows[adaptive].append(one_round(server, work, pairs, adaptive, n))
    for adaptive, name in ((False, "fixed"), (True, "adaptive")):
        throttled, rate, errors = zip(*rows[adaptive])
        print(f"{name:>8}: 429s median {statistics.median(throttled):.0f}, answered calls/s median "
              f"{statistics.median(rate):.1f} (rounds {', '.join(f'{r:.1f}' for r in rate)}), failed calls "
              f"{sum(errors)}")
    ratio = statistics.median(r for _, r, _ in rows[True]) / statistics.median(r for _, r, _ in rows[False])
    print(f"adaptive / fixed calls/s: {ratio:.2f} ({'PASS' if ratio >= 0.9 else 'FAIL'} at >= 0.9); "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
