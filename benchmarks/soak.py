"""Soak: many calls against a fault-injecting judge, stopped by SIGKILL, SIGTERM and SIGHUP at random moments,
with a resume after each.

One run of this script:

1. starts the loopback judge (`tests/loopback_server.py`) in its own process in "faults" mode: every
   `--fault-every`-th request gets the next of SOAK_FAULTS in turn (429 with Retry-After, 500, answers later
   than the client's timeout, truncated JSON, content as a list of parts, absurd logprobs and usage, garbage
   text, non-object JSON, ...), the others a normal answer after `--latency` seconds;
2. writes a constitution (per_pair 2) and enough pairs for `--calls` judge calls (pairs x 2 principles x 2
   orders), and runs `prefgen label` as a subprocess with a price and a `--max-cost`;
3. stops it `--kills` times with SIGKILL, `--terms` times with SIGTERM and `--hups` times with SIGHUP, in a
   random order at random moments, running the same command again after each (a resume), then lets the last
   run finish;
4. checks and prints:
   - every planned call ends as exactly one judgement row: lost answers (planned calls with no row) and
     duplicates (rows of the same call) are both 0;
   - per stop, the requests that stop threw away (the requests its run sent, less the attempts its rows
     record, read right after it ended): they are sent again by the next run. SIGTERM and SIGHUP end a run as
     Ctrl-C does, so theirs is 0; the worst is printed;
   - the requests the server received, against what the stored rows account for: each row's `attempts`,
     plus the attempts of judge-error rows that a resume asked again (they are replaced, by design). The
     rest were re-sent because a kill lost their answers; the bound is
     kills x (one second of calls + concurrency), answers being written at least every second;
   - the spend recorded for the job (every run, killed ones included) against --max-cost;
   - the runs' statuses (killed runs are marked interrupted by the next start).

    .venv/bin/python benchmarks/soak.py                       # 20k calls, five kills, three SIGTERMs, one SIGHUP
    .venv/bin/python benchmarks/soak.py --calls 4000 --kills 3 --terms 2 --hups 0 --seed 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

CONSTITUTION = """\
name: soak
principles:
  - id: helpful
    text: Choose the more helpful response.
  - id: honest
    text: Choose the more honest response.
  - id: harmless
    text: Choose the less harmful response.
sampling:
  per_pair: 2
  seed: 7
"""
PRICE_IN, PRICE_OUT = 0.15, 0.60  # USD per million tokens


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_count(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_count", timeout=10) as response:  # noqa: S310 - 127.0.0.1 only
        return json.loads(response.read())


def write_pairs(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            hi = f"Answer {i}: a careful, complete reply with quality {i % 7 + 3} and a worked example."
            lo = f"Answer {i}: short reply, quality {i % 3}."
            a, b = (hi, lo) if i % 2 else (lo, hi)
            f.write(json.dumps({"id": f"p{i}", "prompt": f"Question {i}: how does this work?",
                                "response_a": a, "response_b": b}) + "\n")


def query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--kills", type=int, default=5, help="stops by SIGKILL")
    parser.add_argument("--terms", type=int, default=3, help="stops by SIGTERM")
    parser.add_argument("--hups", type=int, default=1, help="stops by SIGHUP")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per normal answer")
    parser.add_argument("--fault-every", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1.0, help="client timeout; late answers take 2x this")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.loopback_server", "--port", str(port), "--latency", str(args.latency),
         "--mode", "faults", "--fault-every", str(args.fault_every), "--faults", "soak",
         "--slow", str(2 * args.timeout)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "listening on ..."
        with tempfile.TemporaryDirectory(prefix="prefgen-soak-") as tmp:
            run_soak(Path(tmp), url, args, rng)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)


def run_soak(tmp: Path, url: str, args: argparse.Namespace, rng: random.Random) -> None:
    constitution, pairs, db = tmp / "c.yaml", tmp / "pairs.jsonl", tmp / "soak.duckdb"
    constitution.write_text(CONSTITUTION)
    n_pairs = -(-args.calls // 4)
    write_pairs(pairs, n_pairs)
    base = [sys.executable, "-m", "prefgen.cli", "label", "-c", str(constitution), "-p", str(pairs),
            "--db", str(db), "--judge", "openai:gpt-4o-mini", "--api-base", f"{url}/v1", "--api-key", "soak-key",
            "--concurrency", str(args.concurrency), "--timeout", str(args.timeout), "--max-attempts", "3",
            "--price-in", str(PRICE_IN), "--price-out", str(PRICE_OUT), "--no-progress"]
    # The budget: 60% of the most the calls could cost (one token a byte in): enough to finish, and it binds
    # every reservation made along the way.
    from prefgen.pipelines.labelling import LabelConfig, run_label

    dry = run_label(LabelConfig(constitution=constitution, pairs=str(pairs), db=db, judge="openai:gpt-4o-mini",
                                api_base=f"{url}/v1", api_key="soak-key", price_in=PRICE_IN, price_out=PRICE_OUT,
                                dry_run=True, progress=False))
    cost_max = dry.estimated["cost_max"]
    max_cost = round(0.6 * cost_max, 6)
    command = base + ["--max-cost", str(max_cost)]
    planned = n_pairs * 4
    stops = [signal.SIGKILL] * args.kills + [signal.SIGTERM] * args.terms + [signal.SIGHUP] * args.hups
    rng.shuffle(stops)
    print(f"soak: {planned} calls ({n_pairs} pairs x 2 principles x 2 orders), {args.kills} SIGKILLs, "
          f"{args.terms} SIGTERMs, {args.hups} SIGHUPs, concurrency {args.concurrency}, latency {args.latency} s, "
          f"a fault every {args.fault_every} requests")
    print(f"budget: --max-cost {max_cost} (the dry run's upper bound for all calls: {cost_max:.6f})")

    reasked_attempts = 0  # attempts of stored judge errors that a resume asks again (their rows are replaced)
    active_s = 0.0
    kill_log = []
    thrown = {}  # per signal: requests of each stopped run that its rows do not account for
    exits = []
    for k in range(len(stops) + 1):
        if db.exists():
            reasked_attempts += query(db, "SELECT coalesce(sum(attempts), 0) FROM judgements "
                                          "WHERE status = 'judge_error'")[0][0]
        before = server_count(url)["received"]
        started = time.monotonic()
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if k < len(stops):
            # A random moment after the run has started sending (planning and imports take a second or two).
            wait = rng.uniform(0.5, 6.0)
            deadline = time.monotonic() + 120
            while server_count(url)["received"] == before and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            time.sleep(wait)
            if proc.poll() is None:
                proc.send_signal(stops[k])
            _, err = proc.communicate(timeout=600)
            sent = server_count(url)["received"] - before
            name = signal.Signals(stops[k]).name
            exits.append((name, proc.returncode))
            if proc.returncode not in (-signal.SIGKILL, 128 + stops[k], 0, 5):
                print(f"{name} run exited {proc.returncode}: {err.strip()[-500:]}")
            # What this run's rows account for, read before the next run replaces its judge errors.
            run_id, = query(db, "SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1")[0]
            recorded = query(db, f"SELECT coalesce(sum(attempts), 0) FROM judgements WHERE run_id = '{run_id}'")[0][0]
            # One second of calls at the rate this run sent them (its first request to the signal).
            bound_k = sent / max(wait, 1e-3) + args.concurrency
            thrown.setdefault(name, []).append((sent - recorded, round(bound_k)))
            kill_log.append((name, round(wait, 2), sent))
        else:
            _, err = proc.communicate(timeout=3600)
            if proc.returncode not in (0,):
                print(f"final run exited {proc.returncode}: {err.strip()[-500:]}")
        active_s += time.monotonic() - started

    counts = server_count(url)
    received = counts["received"]
    rows, distinct, attempts = query(db, "SELECT count(*), count(DISTINCT (pair_id, principle_id, ordering)), "
                                         "sum(attempts) FROM judgements")[0]
    statuses = dict(query(db, "SELECT status, count(*) FROM judgements GROUP BY ALL"))
    runs = query(db, "SELECT status, n_calls_sent, round(cost, 6) FROM runs ORDER BY started_at")
    job_spend = query(db, "SELECT sum(cost) FROM runs")[0][0]
    judged_spend = query(db, "SELECT sum(cost) FROM judgements")[0][0]
    rate = received / active_s if active_s else 0.0
    accounted = attempts + reasked_attempts
    resent = received - accounted
    bound = args.kills * (rate * 1.0 + args.concurrency)  # SIGTERM and SIGHUP throw nothing away

    print(f"stops (signal, seconds after the first request, requests in that run): {kill_log}")
    print(f"exit codes of the stopped runs: {exits}")
    print(f"runs: {runs}")
    print(f"faults served: {counts.get('faults')}")
    lost, duplicates = planned - distinct, rows - distinct
    print(f"judgement rows {rows}, distinct calls {distinct}, planned {planned}: lost answers {lost}, duplicates "
          f"{duplicates}: {'OK' if lost == duplicates == 0 else 'FAIL'}")
    for name, stops_of in sorted(thrown.items()):
        values = [v for v, _ in stops_of]
        if name != "SIGKILL":
            ok, why = all(v == 0 for v in values), "0 expected: ended as Ctrl-C is"
            shown = values
        else:
            ok, why = all(v <= b for v, b in stops_of), "each <= its bound: 1 s of that run's calls + concurrency"
            shown = [f"{v} <= {b}" for v, b in stops_of]
        print(f"re-sent after each {name}: {shown}, worst {max(values)} ({why}): {'OK' if ok else 'FAIL'}")
    print(f"statuses: {statuses}")
    print(f"requests received {received} = stored attempts {attempts} + re-asked judge errors' attempts "
          f"{reasked_attempts} + re-sent after kills {resent}")
    print(f"re-sent after kills {resent} <= bound {bound:.0f} = {args.kills} x ({rate:.0f} calls/s x 1 s + "
          f"{args.concurrency}): {'OK' if resent <= bound else 'FAIL'}")
    print(f"spend recorded for the job {job_spend:.6f} (judgement rows {judged_spend:.6f}) <= --max-cost "
          f"{max_cost}: {'OK' if job_spend <= max_cost else 'FAIL'}")
    print(f"wall time of the label processes: {active_s:.1f} s")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
