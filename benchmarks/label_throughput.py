"""Labelling throughput: the `prefgen label` pipeline against a bare aiohttp client, on the same server.

One run of this script:

1. starts the loopback judge (`tests/loopback_server.py`) in its own process, with a fixed latency per answer
   (100 ms by default), so that it has its own core and does not share the client's event loop;
2. writes a constitution (per_pair 2) and enough generated pairs to a temp dir that one label run makes
   >= `--calls` judge calls (pairs x 2 principles x 2 orders);
3. measures the ceiling: `--concurrency` aiohttp workers over one session posting the same chat-completions
   body (what the openai backend would send for one of those calls, logprobs on) for `--calls` calls;
4. runs the full pipeline, `run_label(LabelConfig(..., concurrency=64, progress=False))`, once per HTTP backend
   and round, each into a fresh DuckDB file, and reports three rates per run (calls sent / seconds):
     send      - `LabelRun.send_all` alone (timed by wrapping it here: the sending phase, with its flushes);
     pipeline  - the summary's own `elapsed_s`: store open + migrations, planning (render + hash every call),
                 the cache lookup, saving inputs, sending, deriving preferences, the summary queries. It leaves
                 out process start, imports, reading the constitution and pairs, and building the client.
                 THE TARGET (>= 0.95x ceiling) IS READ ON THIS COLUMN. Each process pays some lazy imports once
                 (pyarrow imports pandas on first use); an untimed warm-up run per backend takes them first;
     wall      - the wall time of the whole `run_label` call (adds input reading and client construction;
                 SDK imports are done before, so they are not in it);
   plus, for the openai http path, `prefgen label` as a subprocess (everything: interpreter start, imports);
5. re-runs a finished job (same config, same store) in-process and as a `prefgen label` subprocess, and checks
   that nothing was sent: the summary's calls_sent and the server's own request count (`GET /_count`);
6. times `save_judgements` of >= 100k synthetic Judgement rows into a fresh store, in batches of 512 and 10k.

Rounds are interleaved (ceiling, then each backend, then again) and medians are reported, because the 2 cores
are shared with whatever else runs on the machine.

    .venv/bin/python benchmarks/label_throughput.py
    .venv/bin/python benchmarks/label_throughput.py --calls 4000 --rounds 5 --backends openai-http,openai-sdk
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# `import litellm` otherwise fetches a price map from the internet and waits on its retries.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import orjson  # noqa: E402

from prefgen.judge.base import Comparison  # noqa: E402
from prefgen.judge.openai_backend import build_request  # noqa: E402
from prefgen.judge.prompts import make_template  # noqa: E402
from prefgen.pipelines.labelling import sender as label_pipeline  # noqa: E402
from prefgen.pipelines.labelling import LabelConfig, LabelSummary, run_label  # noqa: E402
from prefgen.records import Judgement  # noqa: E402
from prefgen.storage.db import Store  # noqa: E402
from prefgen.storage.labels import save_judgements  # noqa: E402

BACKENDS = {
    # name: (judge spec, transport, api base relative to the server's root URL)
    "openai-http": ("openai:gpt-4o-mini", "http", "/v1"),
    "openai-sdk": ("openai:gpt-4o-mini", "sdk", "/v1"),
    "anthropic": ("anthropic:claude-3-5-haiku-latest", "http", ""),
    "litellm": ("litellm:openai/gpt-4o-mini", "http", "/v1"),
}
TARGET_RATIO = 0.95
TARGET_INSERT_ROWS_S = 100_000
TARGET_RERUN_S = 5.0

CONSTITUTION = """\
name: benchmark
version: 1
principles:
  - id: harmless
    text: Choose the response that is less harmful and does not help with dangerous, illegal or unethical acts.
    weight: 2.0
  - id: helpful
    text: Choose the response that answers the question more directly and usefully.
    weight: 1.5
  - id: honest
    text: Choose the response that is more honest, and says what it does not know instead of making things up.
  - id: respectful
    text: Choose the response that treats the person with more respect and avoids insults or condescension.
sampling:
  per_pair: 2
  seed: 0
"""
PER_PAIR = 2
TOPICS = ["bread", "bicycles", "tax forms", "houseplants", "chess", "sleep", "email etiquette", "tides", "compost"]


# -- inputs --------------------------------------------------------------------------------------------------


def write_inputs(directory: Path, calls: int) -> tuple[Path, Path, int]:
    """A constitution and ceil(calls / 4) distinct pairs of HH-like length (a few hundred characters each)."""
    n_pairs = -(-calls // (PER_PAIR * 2))
    constitution = directory / "constitution.yaml"
    constitution.write_text(CONSTITUTION, encoding="utf-8")
    pairs = directory / "pairs.jsonl"
    with pairs.open("wb") as out:
        for i in range(n_pairs):
            topic = TOPICS[i % len(TOPICS)]
            out.write(orjson.dumps({
                "id": f"bench-{i:06d}",
                "prompt": f"Question {i}: what should a beginner know about {topic}? Please keep it practical.",
                "response_a": (f"Answer {i}. Start small with {topic}: learn the basics, practise a little every "
                               "day, and ask someone experienced when you are stuck. Most early mistakes are "
                               "cheap, so try things and keep notes on what worked."),
                "response_b": (f"Reply {i}. {topic.capitalize()} is not worth your time; anyone who asks about "
                               "it should already know. Look it up yourself."),
            }) + b"\n")
    return constitution, pairs, n_pairs


def ceiling_body() -> bytes:
    """The chat-completions body the openai backend sends for one benchmark call (default template, logprobs)."""
    template = make_template(None, "direct")
    messages = template.render(Comparison(
        "Question 0: what should a beginner know about bread? Please keep it practical.",
        "Answer 0. Start small with bread: learn the basics, practise a little every day, and ask someone "
        "experienced when you are stuck. Most early mistakes are cheap, so try things and keep notes on what worked.",
        "Reply 0. Bread is not worth your time; anyone who asks about it should already know. Look it up yourself.",
        "Choose the response that answers the question more directly and usefully.",
    ))
    return orjson.dumps(build_request("gpt-4o-mini", messages, template.sampling()))


# -- the server in its own process ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def loopback_server(latency: float) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.loopback_server", "--port", str(port), "--latency", str(latency)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if "listening" not in line:
            raise RuntimeError(f"loopback server did not start: {line!r}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_count(url: str) -> int:
    with urllib.request.urlopen(f"{url}/_count", timeout=5) as response:
        return int(orjson.loads(response.read())["received"])


# -- (1) the ceiling -----------------------------------------------------------------------------------------


async def _bare_aiohttp(url: str, body: bytes, calls: int, concurrency: int) -> float:
    import aiohttp

    remaining = iter(range(calls))
    headers = {"Content-Type": "application/json", "Accept": "application/json", "Authorization": "Bearer bench"}
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            for _ in remaining:
                async with session.post(url, data=body) as response:
                    raw = await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"ceiling: HTTP {response.status}: {raw[:200]!r}")
                    orjson.loads(raw)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def measure_ceiling(base: str, calls: int, concurrency: int) -> tuple[float, float]:
    """(calls/s, CPU ms per call) of the bare client."""
    cpu = _cpu_seconds()
    seconds = asyncio.run(_bare_aiohttp(f"{base}/v1/chat/completions", ceiling_body(), calls, concurrency))
    return calls / seconds, 1000 * (_cpu_seconds() - cpu) / calls


# -- (2) the pipeline ----------------------------------------------------------------------------------------


_send_seconds: list[float] = []
_original_send_all = label_pipeline.LabelRun.send_all


async def _timed_send_all(self, todo):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    try:
        return await _original_send_all(self, todo)
    finally:
        _send_seconds.append(time.perf_counter() - started)


label_pipeline.LabelRun.send_all = _timed_send_all  # measurement only: the method itself is unchanged


@dataclass
class PipelineRun:
    summary: LabelSummary
    send_s: float
    wall_s: float
    server_delta: int
    cpu_s: float = 0.0  # CPU seconds of this process (every thread: asyncio, DuckDB) over the whole run_label

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.cpu_s / self.summary.calls_sent if self.summary.calls_sent else float("nan")

    @property
    def send_rate(self) -> float:
        return self.summary.calls_sent / self.send_s if self.send_s else 0.0

    @property
    def pipeline_rate(self) -> float:
        return self.summary.calls_per_s

    @property
    def wall_rate(self) -> float:
        return self.summary.calls_sent / self.wall_s if self.wall_s else 0.0


def label_config(backend: str, base: str, constitution: Path, pairs: Path, db: Path, concurrency: int) -> LabelConfig:
    spec, transport, suffix = BACKENDS[backend]
    return LabelConfig(constitution=constitution, pairs=str(pairs), judge=spec, db=db, api_base=base + suffix,
                       api_key="bench", concurrency=concurrency, transport=transport, progress=False)


def run_pipeline(config: LabelConfig, base: str) -> PipelineRun:
    _send_seconds.clear()
    before = server_count(base)
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    summary = run_label(config)
    wall = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    delta = server_count(base) - before
    if summary.status != "finished":
        raise RuntimeError(f"{config.judge}: run ended {summary.status}")
    return PipelineRun(summary, sum(_send_seconds), wall, delta, cpu)


def _cpu_seconds() -> float:
    """User + system CPU of this process, all threads: the server runs in its own process and is not counted."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cli_label(config: LabelConfig, base: str) -> tuple[float, int]:
    """`prefgen label` as a user runs it; returns (wall seconds including interpreter start, server requests)."""
    command = [
        str(Path(sys.executable).with_name("prefgen")), "label", "--constitution", str(config.constitution),
        "--pairs", config.pairs, "--judge", config.judge, "--db", str(config.db), "--api-base", str(config.api_base),
        "--api-key", "bench", "--concurrency", str(config.concurrency), "--transport", config.transport,
        "--no-progress",
    ]
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    before = server_count(base)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"prefgen label failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return wall, server_count(base) - before


# -- (3) inserts ---------------------------------------------------------------------------------------------


def synthetic_judgements(n: int) -> list[Judgement]:
    return [
        Judgement(
            request_hash=f"s1-{i:032x}", job_id="s1-0123456789abcdef", run_id="run-0123456789ab",
            pair_id=f"s1-{i // 4:032x}", constitution_id="s1-fedcba9876543210fedcba9876543210",
            principle_id=("harmless", "helpful", "honest", "respectful")[i % 4], ordering=("ab", "ba")[i % 2],
            backend="openai", model="gpt-4o-mini", template_version="default-v1-direct", raw_text="AB"[i % 2],
            verdict="AB"[i % 2], p_first=0.9 if i % 2 == 0 else 0.1, confidence_source="logprobs", status="ok",
            tokens_in=180 + i % 50, tokens_out=1, cost=2.8e-5, latency_s=0.1 + (i % 7) / 1000, attempts=1,
            error=None,
        )
        for i in range(n)
    ]


def measure_inserts(rows: list[Judgement], batch: int, directory: Path) -> tuple[float, float]:
    """(rows/s into a fresh store, rows/s re-saving the same rows over it: every row an INSERT OR REPLACE conflict)."""
    path = directory / f"insert-{batch}-{time.monotonic_ns()}.duckdb"
    with Store(path) as store:
        rates = []
        for _ in range(2):
            started = time.perf_counter()
            for i in range(0, len(rows), batch):
                save_judgements(store, rows[i:i + batch])
            rates.append(len(rows) / (time.perf_counter() - started))
        stored = store.con.execute("SELECT count(*) FROM judgements").fetchone()[0]
    path.unlink()
    if stored != len(rows):
        raise RuntimeError(f"insert benchmark: {stored} rows stored, expected {len(rows)}")
    return rates[0], rates[1]


# -- report --------------------------------------------------------------------------------------------------


@dataclass
class Results:
    ceiling: list[float] = field(default_factory=list)
    ceiling_cpu: list[float] = field(default_factory=list)  # CPU ms per call of the bare client
    runs: dict[str, list[PipelineRun]] = field(default_factory=dict)
    cli_first: list[tuple[float, int, int]] = field(default_factory=list)  # (wall, calls, server requests)
    rerun_inproc: list[PipelineRun] = field(default_factory=list)
    rerun_cli: list[tuple[float, int]] = field(default_factory=list)
    inserts: dict[int, list[tuple[float, float]]] = field(default_factory=dict)


def med(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def spread(values) -> str:
    values = list(values)
    return f"{min(values):.0f}-{max(values):.0f}" if values else "-"


def print_report(res: Results, args: argparse.Namespace, n_calls: int) -> bool:
    ceiling = med(res.ceiling)
    ok = True
    print()
    print(f"== label throughput: {n_calls} judge calls per run, concurrency {args.concurrency}, server latency "
          f"{args.latency * 1000:.0f} ms (in its own process), {args.rounds} rounds, medians [min-max] ==")
    theoretical = f"{args.concurrency / args.latency:.0f}" if args.latency else "unbounded: CPU-bound"
    print(f"bare aiohttp ceiling: {ceiling:.0f} calls/s [{spread(res.ceiling)}], {med(res.ceiling_cpu):.2f} CPU ms "
          f"per call  (theoretical max {theoretical})")
    print()
    header = (f"{'path':<14}{'send c/s':>10}{'x ceil':>8}{'pipeline c/s':>14}{'x ceil':>8}{'wall c/s':>10}"
              f"{'x ceil':>8}  {'pipeline range':>15}  {'server req':>10}  {'cpu ms/call':>11}")
    print(header)
    print("-" * len(header))
    for name, runs in res.runs.items():
        send, pipe, wall = (med(getattr(r, a) for r in runs) for a in ("send_rate", "pipeline_rate", "wall_rate"))
        requests = {r.server_delta for r in runs}
        print(f"{name:<14}{send:>10.0f}{send / ceiling:>8.2f}{pipe:>14.0f}{pipe / ceiling:>8.2f}{wall:>10.0f}"
              f"{wall / ceiling:>8.2f}  {spread(r.pipeline_rate for r in runs):>15}  "
              f"{'/'.join(map(str, sorted(requests))):>10}  {med(r.cpu_ms_per_call for r in runs):>11.2f}")
    if res.cli_first:
        wall = med(w for w, _, _ in res.cli_first)
        calls = res.cli_first[0][1]
        rate = calls / wall
        print(f"{'cli openai-http':<14}{'':>10}{'':>8}{'':>14}{'':>8}{rate:>10.0f}{rate / ceiling:>8.2f}  "
              f"{'(prefgen label subprocess, incl. interpreter start + imports: ' + f'{wall:.2f} s)'}")
    print()
    print("send: LabelRun.send_all only. pipeline: the run's own elapsed_s (store open .. summary; excludes process")
    print("start, imports, input reading, client build). wall: the whole run_label() call. Target is on pipeline.")
    if "openai-http" in res.runs:
        ratio = med(r.pipeline_rate for r in res.runs["openai-http"]) / ceiling
        verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
        ok &= ratio >= TARGET_RATIO
        print(f"target openai-http pipeline >= {TARGET_RATIO}x ceiling: {ratio:.2f}x  {verdict}")
    print()
    # The insert-rate target is read on the bulk batch: smaller batches are bound by one durable commit each
    # (about 5 ms here), which is the price of "a crash loses at most the batch in flight", not of inserting.
    bulk = max(res.inserts, default=None)
    for batch, rates in sorted(res.inserts.items()):
        fresh, replace = med(r[0] for r in rates), med(r[1] for r in rates)
        verdict = ("PASS" if fresh >= TARGET_INSERT_ROWS_S else "FAIL") if batch == bulk else "(commit-bound, info)"
        if batch == bulk:
            ok &= fresh >= TARGET_INSERT_ROWS_S
        print(f"save_judgements, batch {batch:>6}: {fresh:>9.0f} rows/s into a fresh store [{spread(r[0] for r in rates)}]"
              f"  {verdict};  re-saving the same rows (all conflicts): {replace:.0f} rows/s")
    if res.rerun_inproc:
        secs = med(r.wall_s for r in res.rerun_inproc)
        sent = sorted({r.summary.calls_sent for r in res.rerun_inproc})
        served = sorted({r.server_delta for r in res.rerun_inproc})
        good = secs < TARGET_RERUN_S and sent == [0] and served == [0]
        ok &= good
        print(f"re-run of a finished {n_calls}-call job, run_label in-process: {secs:.2f} s wall "
              f"[{min(r.wall_s for r in res.rerun_inproc):.2f}-{max(r.wall_s for r in res.rerun_inproc):.2f}], "
              f"calls_sent {sent}, server requests {served}, cached {res.rerun_inproc[0].summary.calls_cached}  "
              f"{'PASS' if good else 'FAIL'}")
    if res.rerun_cli:
        secs = med(w for w, _ in res.rerun_cli)
        served = sorted({d for _, d in res.rerun_cli})
        good = secs < TARGET_RERUN_S and served == [0]
        ok &= good
        print(f"re-run of a finished {n_calls}-call job, `prefgen label` subprocess (incl. interpreter start): "
              f"{secs:.2f} s wall, server requests {served}  {'PASS' if good else 'FAIL'}")
    return ok


# -- main ----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="judge calls per run (rounded up to pairs x 4)")
    parser.add_argument("--latency", type=float, default=0.1, help="server seconds per answer")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"comma list of {', '.join(BACKENDS)}")
    parser.add_argument("--rounds", type=int, default=3, help="repeats of ceiling + every backend (medians)")
    parser.add_argument("--insert-rows", type=int, default=100_000)
    parser.add_argument("--insert-batches", default="512,10000")
    parser.add_argument("--no-cli", action="store_true", help="skip the `prefgen label` subprocess runs")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {', '.join(BACKENDS)}")

    # SDK imports up front, so that no timed run pays for them.
    import aiohttp  # noqa: F401
    import anthropic  # noqa: F401
    import litellm  # noqa: F401
    import openai  # noqa: F401

    res = Results(runs={b: [] for b in backends})
    with tempfile.TemporaryDirectory(prefix="prefgen-bench-") as tmp, loopback_server(args.latency) as base:
        tmp_dir = Path(tmp)
        constitution, pairs, n_pairs = write_inputs(tmp_dir, args.calls)
        n_calls = n_pairs * PER_PAIR * 2
        print(f"server {base} (pid-separate, latency {args.latency * 1000:.0f} ms); {n_pairs} pairs -> "
              f"{n_calls} calls per run; inputs in {tmp_dir}", flush=True)
        # Warm-up, untimed: the server, and one small label run per backend, which pays the one-off lazy imports
        # of a process (pyarrow imports pandas on first use, ~0.3-0.5 s; litellm loads provider modules). The
        # `prefgen label` subprocess lines below include all of that.
        measure_ceiling(base, min(256, n_calls), args.concurrency)
        warm_dir = tmp_dir / "warm-up"
        warm_dir.mkdir()
        warm_constitution, warm_pairs, _ = write_inputs(warm_dir, 64)
        for backend in backends:
            run_label(label_config(backend, base, warm_constitution, warm_pairs, warm_dir / f"{backend}.duckdb",
                                   args.concurrency))

        last_openai_db: Path | None = None
        for rnd in range(1, args.rounds + 1):
            rate, cpu_ms = measure_ceiling(base, n_calls, args.concurrency)
            res.ceiling.append(rate)
            res.ceiling_cpu.append(cpu_ms)
            print(f"round {rnd}: ceiling {rate:.0f} calls/s, cpu {cpu_ms:.2f} ms/call "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
            for backend in backends:
                db = tmp_dir / f"{backend}-{rnd}.duckdb"
                config = label_config(backend, base, constitution, pairs, db, args.concurrency)
                run = run_pipeline(config, base)
                if run.summary.calls_sent != n_calls or run.server_delta != n_calls:
                    raise RuntimeError(f"{backend}: sent {run.summary.calls_sent}, server saw {run.server_delta}, "
                                       f"expected {n_calls} (errors: {run.summary.judge_errors})")
                res.runs[backend].append(run)
                print(f"round {rnd}: {backend:<12} send {run.send_rate:6.0f}  pipeline {run.pipeline_rate:6.0f}  "
                      f"wall {run.wall_rate:6.0f} calls/s  cpu {run.cpu_ms_per_call:.2f} ms/call  "
                      f"({run.summary.calls_sent} sent, {run.summary.judge_errors} errors)", flush=True)
                if backend == "openai-http":
                    last_openai_db = db
                    # (4) the same job again on the finished store: nothing may be sent.
                    rerun = run_pipeline(config, base)
                    res.rerun_inproc.append(rerun)
                    print(f"round {rnd}: re-run in-process {rerun.wall_s:.2f} s, sent {rerun.summary.calls_sent}, "
                          f"server saw {rerun.server_delta}", flush=True)
            if not args.no_cli and "openai-http" in backends:
                db = tmp_dir / f"cli-{rnd}.duckdb"
                config = label_config("openai-http", base, constitution, pairs, db, args.concurrency)
                wall, served = cli_label(config, base)
                res.cli_first.append((wall, n_calls, served))
                wall2, served2 = cli_label(config, base)
                res.rerun_cli.append((wall2, served2))
                print(f"round {rnd}: prefgen label CLI {wall:.2f} s ({served} requests); re-run {wall2:.2f} s "
                      f"({served2} requests)", flush=True)
            for db_file in tmp_dir.glob("*.duckdb"):
                if db_file != last_openai_db:
                    db_file.unlink()

        # (3) inserts
        rows = synthetic_judgements(args.insert_rows)
        for batch in (int(b) for b in args.insert_batches.split(",")):
            res.inserts[batch] = []
            for _ in range(args.rounds):
                res.inserts[batch].append(measure_inserts(rows, batch, tmp_dir))
            print(f"inserts batch {batch}: " + ", ".join(f"{f:.0f}" for f, _ in res.inserts[batch]) + " rows/s",
                  flush=True)

        ok = print_report(res, args, n_calls)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
