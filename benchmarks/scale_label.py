"""Labelling at scale: peak memory and wall time by input size, and one process against Ray with 2 workers.

One run of this script:

1. starts the loopback judge (`tests/loopback_server.py`) in its own process with zero latency, so that the
   rate measured is the client's CPU cost per call: the ceiling of one process;
2. writes short generated pairs (a constitution drawing 1 of 2 principles per pair: 2 calls a pair) at each
   size of `--sizes`;
3. for each size runs `prefgen label --dry-run` and (up to `--real-max` pairs) a real run, 128 calls in flight,
   each in a fresh child process into a fresh store, and reports the child's peak RSS (`ru_maxrss`) and wall
   time; a size past `--real-max` gets an extrapolated real wall time, labelled as such (the measured per-call
   rate of the largest real run applied to its call count);
4. runs `--ray-pairs` pairs once in one process and once with `--engine ray --workers 2` (a local Ray instance),
   and reports calls/s of each and their ratio, as the server saw them while calls flowed (its request count
   sampled 4 times a second), so that Ray's start-up and the final merge are left out; whole-run times too.

The machine's 2 cores are shared with the server process (and whatever else runs), so rates are indicative.

    .venv/bin/python benchmarks/scale_label.py
    .venv/bin/python benchmarks/scale_label.py --sizes 10000,100000 --real-max 10000 --ray-pairs 5000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.label_throughput import loopback_server, server_count  # noqa: E402

CONSTITUTION = """\
name: scale-bench
principles:
  - id: helpful
    text: Choose the more helpful response.
  - id: honest
    text: Choose the more honest response.
sampling:
  per_pair: 1
  seed: 0
"""
CALLS_PER_PAIR = 2


def write_pairs(path: Path, n: int) -> None:
    """Short pairs (a few dozen characters each): what is measured is the per-call overhead, not the text."""
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps({"prompt": f"Question {i}?", "response_a": f"Answer {i}, plainly.",
                                  "response_b": f"Reply {i}, vaguely."}) + "\n")


def child(spec: str) -> None:
    """Run one label job in this process and print its figures as JSON (peak RSS is this process's own)."""
    from prefgen.pipelines.label import LabelConfig, run_label

    started = time.perf_counter()
    summary = run_label(LabelConfig(**json.loads(spec)))
    print(json.dumps({
        "wall_s": time.perf_counter() - started, "elapsed_s": summary.elapsed_s, "status": summary.status,
        "pairs": summary.pairs, "calls_sent": summary.calls_sent, "calls_planned": summary.calls_planned,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def measure(settings: dict, base: str | None = None) -> dict:
    """Run one job in a child process. With `base`, the server's request count is sampled meanwhile, and
    `flow_calls_per_s` is the rate between the first and the last call it saw: what the judging itself
    sustained, without start-up (Ray's, the workers') or the final merge."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child_process = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(settings)], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = []
    while base is not None and child_process.poll() is None:
        samples.append((time.perf_counter(), server_count(base)))
        time.sleep(0.25)
    stdout, stderr = child_process.communicate()
    if child_process.returncode != 0:
        raise RuntimeError(f"child failed: {stderr[-2000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    if samples:
        first = next(i for i, (_, n) in enumerate(samples) if n > samples[0][1])
        last = next(i for i in range(len(samples) - 1, -1, -1) if samples[i][1] > samples[i - 1][1])
        (t0, n0), (t1, n1) = samples[first - 1], samples[last]
        result["flow_calls_per_s"] = (n1 - n0) / (t1 - t0)
    return result


def settings_for(directory: Path, pairs: Path, base: str, db: str, **extra) -> dict:
    return {"constitution": str(directory / "c.yaml"), "pairs": str(pairs), "db": str(directory / db),
            "judge": "openai:gpt-4o-mini", "api_base": f"{base}/v1", "api_key": "bench", "concurrency": 128,
            "progress": False, **extra}


def size_table(directory: Path, base: str, sizes: list[int], real_max: int) -> list[dict]:
    rows = []
    rate = None
    for n in sizes:
        pairs = directory / f"pairs-{n}.jsonl"
        write_pairs(pairs, n)
        dry = measure(settings_for(directory, pairs, base, f"dry-{n}.duckdb", dry_run=True))
        row = {"pairs": n, "calls": n * CALLS_PER_PAIR, "dry_rss_mb": dry["max_rss_mb"], "dry_wall_s": dry["wall_s"]}
        if n <= real_max:
            before = server_count(base)
            real = measure(settings_for(directory, pairs, base, f"real-{n}.duckdb"))
            assert server_count(base) - before == real["calls_sent"] == n * CALLS_PER_PAIR, real
            rate = real["calls_sent"] / real["wall_s"]
            row |= {"real_rss_mb": real["max_rss_mb"], "real_wall_s": real["wall_s"], "calls_per_s": rate,
                    "store_mb": (directory / f"real-{n}.duckdb").stat().st_size / 2**20}
            (directory / f"real-{n}.duckdb").unlink()
        elif rate:
            row |= {"real_wall_s_extrapolated": n * CALLS_PER_PAIR / rate}
        pairs.unlink()
        rows.append(row)
        print(row, flush=True)
    return rows


def ray_comparison(directory: Path, base: str, n: int) -> dict:
    pairs = directory / f"ray-{n}.jsonl"
    write_pairs(pairs, n)
    one = measure(settings_for(directory, pairs, base, "one.duckdb"), base)
    ray = measure(settings_for(directory, pairs, base, "ray.duckdb", engine="ray", workers=2, chunk_pairs=2048), base)
    return {"pairs": n, "calls": ray["calls_sent"], "one_wall_s": one["wall_s"], "ray_wall_s": ray["wall_s"],
            "one_calls_per_s": one["flow_calls_per_s"], "ray_calls_per_s": ray["flow_calls_per_s"],
            "ratio": ray["flow_calls_per_s"] / one["flow_calls_per_s"], "ray_driver_rss_mb": ray["max_rss_mb"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--real-max", type=int, default=100_000, help="largest size run for real")
    parser.add_argument("--ray-pairs", type=int, default=20_000)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory() as tmp, loopback_server(0.0) as base:
        directory = Path(tmp)
        (directory / "c.yaml").write_text(CONSTITUTION, encoding="utf-8")
        rows = size_table(directory, base, [int(s) for s in args.sizes.split(",") if s], args.real_max)
        ray = ray_comparison(directory, base, args.ray_pairs) if args.ray_pairs else None
    print("\npairs      calls   dry-run RSS MB  dry-run s   real RSS MB   real s   calls/s   store MB")
    for r in rows:
        real = (f"{r['real_rss_mb']:>11.0f} {r['real_wall_s']:>8.1f} {r['calls_per_s']:>9.0f} {r['store_mb']:>10.1f}"
                if "real_rss_mb" in r else
                f"{'-':>11} {r.get('real_wall_s_extrapolated', float('nan')):>8.0f} (extrapolated, not measured)")
        print(f"{r['pairs']:>8} {r['calls']:>9} {r['dry_rss_mb']:>14.0f} {r['dry_wall_s']:>10.1f} {real}")
    if ray:
        print(f"\nRay vs one process, {ray['pairs']} pairs ({ray['calls']} calls), zero-latency server; calls/s is "
              "the rate the server saw while calls flowed (start-up and the final merge left out):")
        print(f"  one process        {ray['one_calls_per_s']:8.0f} calls/s   (whole run {ray['one_wall_s']:.0f} s)")
        print(f"  Ray, 2 workers     {ray['ray_calls_per_s']:8.0f} calls/s   (whole run {ray['ray_wall_s']:.0f} s); "
              f"ratio {ray['ratio']:.2f}; driver peak RSS {ray['ray_driver_rss_mb']:.0f} MB")
    print("\n" + json.dumps({"sizes": rows, "ray": ray}))


if __name__ == "__main__":
    main()
