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
   sampled 4 times a second), so that Ray's start-up and the final merge are left out; whole-run times too;
5. for each size of `--store-sizes`, the other commands that read every pair, each in a fresh child process on
   one store: `import-human` of that many pairwise labels, `split` (10% held out), then (after that many kept AI
   pair preferences are written straight into the store, untimed) `mix` of every row and `export` of the mix
   as JSON Lines; the baseline is a child that imports the same modules and opens the store, doing nothing.
   The sequence runs twice, on two stores: once for peak RSS and wall time, once under `tracemalloc` for the
   peak of Python's own heap (what prefgen holds, DuckDB's memory left out; slower, so not timed). A step
   holds its input in batches when its Python heap stays flat as the pairs grow tenfold; its RSS grows with what
   DuckDB keeps (primary-key indexes, cached pages, the open transaction of a one-transaction import).

The machine's 2 cores are shared with the server process (and whatever else runs), so rates are indicative.

    .venv/bin/python benchmarks/scale_label.py
    .venv/bin/python benchmarks/scale_label.py --sizes 10000,100000 --real-max 10000 --ray-pairs 5000
    .venv/bin/python benchmarks/scale_label.py --sizes '' --ray-pairs 0 --store-sizes 10000,100000,1000000
    .venv/bin/python benchmarks/scale_label.py ... --prefgen ../other-checkout   # the same figures for other code
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
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKOUT = "SCALE_LABEL_PREFGEN"  # --prefgen, passed to the children: the checkout they import prefgen from
# This checkout first, or the one --prefgen names (its `prefgen` then wins over this file's own).
sys.path.insert(0, os.environ.get(CHECKOUT) or str(ROOT))

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
    from prefgen.pipelines.labelling import LabelConfig, run_label

    started = time.perf_counter()
    summary = run_label(LabelConfig(**json.loads(spec)))
    print(json.dumps({
        "wall_s": time.perf_counter() - started, "elapsed_s": summary.elapsed_s, "status": summary.status,
        "pairs": summary.pairs, "calls_sent": summary.calls_sent, "calls_planned": summary.calls_planned,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def store_child(spec: str) -> None:
    """Run one store step in this process and print its wall time and this process's peak RSS as JSON."""
    from prefgen.pipelines.humans.imports import import_human
    from prefgen.pipelines.mixing.mix import MixConfig, build_mix
    from prefgen.pipelines.humans.split import split_human
    from prefgen.storage.db import Store
    from prefgen.storage.export import export_preferences

    step, db, path, n, trace = (json.loads(spec)[k] for k in ("step", "db", "path", "n", "trace"))
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    with Store(Path(db)) as store:
        if step == "import-human":
            import_human(store, path, fmt="pairwise")
        elif step == "split":
            split_human(store, heldout=0.1, seed=0)
        elif step == "ai-preferences":
            write_ai_preferences(store, n)
        elif step == "mix":
            build_mix(store, MixConfig(name="bench", human_ratio=None))
        elif step == "export":
            export_preferences(store, Path(path), fmt="jsonl", mix="bench")
        wall_s = time.perf_counter() - started
        # What DuckDB holds at the end of the step (its buffer pool: table pages, indexes): the store's own needs.
        duckdb_mb = store.con.execute("SELECT sum(memory_usage_bytes) / 2 ** 20 FROM duckdb_memory()").fetchall()[0][0]
    print(json.dumps({"wall_s": wall_s, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "duckdb_mb": duckdb_mb, "python_heap_mb": tracemalloc.get_traced_memory()[1] / 2**20,
                      "prefgen": str(Path(sys.modules["prefgen"].__file__).parents[1])}))


def write_ai_preferences(store, n: int) -> None:
    """`n` AI pairs on prompts no human labelled, each kept by one label job (one principle), written in SQL:
    the mix's AI side, without judging a million pairs first."""
    store.con.execute("""INSERT INTO label_jobs (job_id, constitution_id, judge_spec, backend, model,
                         template_version, confidence_mode, sampling)
                         VALUES ('bench-job', 'bench', 'openai:bench', 'openai', 'bench', 't1', 'logprobs', '{}')""")
    store.con.execute("""INSERT INTO pairs (id, prompt_id, prompt, is_chat, response_a, response_b, source)
                         SELECT 'ai-' || i, 'ai-prompt-' || i, 'AI question ' || i || '?', false, 'Answer ' || i,
                                'Reply ' || i, 'bench' FROM range(?) t(i)""", [n])
    probabilities = "SELECT i, (CASE WHEN i % 2 = 0 THEN 0.8 ELSE 0.25 END) + (i % 10) / 100 AS p FROM range(?) t(i)"
    store.con.execute(f"""INSERT INTO pair_preferences (job_id, pair_id, n_principles, n_kept, p_a, confidence,
                          chosen, principle_agreement, kept)
                          SELECT 'bench-job', 'ai-' || i, 1, 1, p, abs(2 * p - 1), if(p > 0.5, 'a', 'b'), 1.0, true
                          FROM ({probabilities})""", [n])
    store.con.execute(f"""INSERT INTO preferences (job_id, pair_id, principle_id, p_ab, p_ba, p_a, consistent,
                          confidence, confidence_source, chosen, kept, threshold)
                          SELECT 'bench-job', 'ai-' || i, 'helpful', p, 1 - p, p, true, abs(2 * p - 1), 'logprobs',
                                 if(p > 0.5, 'a', 'b'), true, 0.2
                          FROM ({probabilities})""", [n])


def write_human(path: Path, n: int) -> None:
    """Pairwise human labels of short pairs, half won by each side."""
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps({"prompt": f"Question {i}?", "response_a": f"Answer {i}, plainly.",
                                  "response_b": f"Reply {i}, vaguely.", "winner": "ab"[i % 2]}) + "\n")


STORE_STEPS = ("import-human", "split", "ai-preferences", "mix", "export")


def store_table(directory: Path, sizes: list[int]) -> list[dict]:
    """Per size: the baseline and each step's peak RSS and wall time, each step a child process on one store,
    then the same steps under tracemalloc on another store for the peak of the Python heap."""
    rows = []
    for n in sizes:
        human, out = directory / f"human-{n}.jsonl", directory / f"mix-{n}.jsonl"
        write_human(human, n)
        row: dict = {"pairs": n}
        for trace in (False, True):
            db = directory / f"store-{n}-{trace}.duckdb"
            for step in ("baseline", *STORE_STEPS):
                path = {"import-human": human, "export": out}.get(step, "")
                figures = measure({"step": step, "db": str(db), "path": str(path), "n": n, "trace": trace},
                                  flag="--store-child")
                row[step] = {**row.get(step, {}), "python_heap_mb": figures["python_heap_mb"]} if trace else figures
            db.unlink()
        for path in (human, out):
            path.unlink()
        rows.append(row)
        print({k: v if k == "pairs" else (round(v["max_rss_mb"]), round(v["python_heap_mb"]), round(v["wall_s"], 1))
               for k, v in row.items()}, flush=True)
    return rows


def print_store_table(rows: list[dict]) -> None:
    print(f"\nprefgen from {rows[0]['baseline']['prefgen']}")
    print("store commands, per size: peak RSS MB (+ over the baseline child: python + prefgen + an open store), "
          "peak Python heap MB (tracemalloc), DuckDB's buffer pool MB at the step's end, wall s; mix and export "
          "have as many AI pairs again (mix: every row). Last columns: largest size against the smallest, RSS over "
          "the baseline and Python heap.")
    print(f"{'step':<16}" + "".join(f"{r['pairs']:>40}" for r in rows)
          + (f"{'RSS+ ratio':>12}{'heap ratio':>12}" if len(rows) > 1 else ""))
    for step in ("baseline", *STORE_STEPS):
        cells = []
        for r in rows:
            over = r[step]["max_rss_mb"] - r["baseline"]["max_rss_mb"]
            cells.append(f"{r[step]['max_rss_mb']:>6.0f} ({over:>+5.0f}) heap {r[step]['python_heap_mb']:>5.0f} "
                         f"duck {r[step]['duckdb_mb']:>4.0f} {r[step]['wall_s']:>6.1f} s")
        line = f"{step:<16}" + "".join(f"{c:>40}" for c in cells)
        if len(rows) > 1 and step != "baseline":
            first, last = rows[0], rows[-1]
            over = [r[step]["max_rss_mb"] - r["baseline"]["max_rss_mb"] for r in (first, last)]
            heap = [r[step]["python_heap_mb"] for r in (first, last)]
            line += f"{over[1] / max(over[0], 1.0):>11.1f}x{heap[1] / max(heap[0], 1.0):>11.1f}x"
        print(line)


def measure(settings: dict, base: str | None = None, flag: str = "--child") -> dict:
    """Run one job in a child process. With `base`, the server's request count is sampled meanwhile, and
    `flow_calls_per_s` is the rate between the first and the last call it saw: what the judging itself
    sustained, without start-up (Ray's, the workers') or the final merge."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child_process = subprocess.Popen([sys.executable, __file__, flag, json.dumps(settings)], cwd=ROOT, env=env,
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
    parser.add_argument("--store-child", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--real-max", type=int, default=100_000, help="largest size run for real")
    parser.add_argument("--ray-pairs", type=int, default=20_000)
    parser.add_argument("--store-sizes", default="10000,100000", help="pairs of the import-human/mix/export table")
    parser.add_argument("--prefgen", help="measure the prefgen of this checkout instead (to compare code)")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    if args.store_child:
        store_child(args.store_child)
        return
    if args.prefgen:
        os.environ[CHECKOUT] = str(Path(args.prefgen).resolve())  # inherited by every child
    with tempfile.TemporaryDirectory() as tmp, loopback_server(0.0) as base:
        directory = Path(tmp)
        (directory / "c.yaml").write_text(CONSTITUTION, encoding="utf-8")
        rows = size_table(directory, base, [int(s) for s in args.sizes.split(",") if s], args.real_max)
        ray = ray_comparison(directory, base, args.ray_pairs) if args.ray_pairs else None
        stores = store_table(directory, [int(s) for s in args.store_sizes.split(",") if s])
    if stores:
        print_store_table(stores)
    if rows:
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
    print("\n" + json.dumps({"sizes": rows, "ray": ray, "stores": stores}))


if __name__ == "__main__":
    main()
