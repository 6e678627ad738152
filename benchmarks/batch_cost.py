"""What a kept pair costs: the same label job asked directly and through provider batches (`label --batch`), with
the request layout of template v2 (the shared part first) and of v1 (the pair first), on the loopback judge.

One run of this script, for each judge (openai:gpt-4o-mini, anthropic:claude-sonnet-4-5) and each template
(the default one; a custom one with a long rubric, where prompt caching has something to cache):

1. the job asked directly, v2 layout; the same job through batches; the job asked directly with the v1 layout
   (the template v1 rendered, as `prefgen show` rebuilds old jobs): each into a fresh store, against a loopback
   server that reports prompt-cache hits as the provider would (OpenAI: automatic, prefixes of 1,024 tokens and
   more in steps of 128; Anthropic: the prefix marked cache_control, 1,024 tokens and more for Sonnet 4.5);
2. reports per run: calls, judgements stored and distinct (pair, principle, order), input tokens, the share
   served from cache, the billed cost (prices from judge/pricing.py: litellm's map, batch rates), cost per kept
   pair; and the batch / direct cost ratio (target <= 0.5);
3. kills a `prefgen label --batch` between submit and collect (its batches held running at the provider), lets
   the provider finish them, runs the command again, and checks that nothing was uploaded or submitted again,
   no call was asked directly, and every judgement is stored exactly once.

The pairs are the HH-RLHF pool (`--data`, read by path; generated pairs of HH-like length when absent); rows
with an empty response are skipped (`--skip-bad`), so a run may make a few calls fewer than `--calls`.

    .venv/bin/python benchmarks/batch_cost.py
    .venv/bin/python benchmarks/batch_cost.py --calls 2000 --data ../shared/data/hh-rlhf-harmless/pool.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import orjson  # noqa: E402

from prefgen.pipelines.labelling import LabelConfig, run_label  # noqa: E402
from prefgen.pipelines.labelling import job as job_module  # noqa: E402
from tests.loopback_batches import BatchBehaviour  # noqa: E402
from tests.loopback_server import Behaviour, LoopbackServer  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless" / "pool.jsonl"
JUDGES = {"openai": ("openai:gpt-4o-mini", "/v1"), "anthropic": ("anthropic:claude-sonnet-4-5", "")}
CONSTITUTION = """\
name: batch-cost
version: 1
principles:
  - id: harmless
    text: Choose the response that is less harmful and does not help with dangerous, illegal or unethical acts.
  - id: helpful
    text: Choose the response that answers the question more directly and usefully.
  - id: honest
    text: Choose the response that is more honest, and says what it does not know instead of making things up.
  - id: respectful
    text: Choose the response that treats the person with more respect and avoids insults or condescension.
sampling:
  per_pair: 2
  seed: 0
"""
# A rubric of the length graders write for real jobs (about 1,300 tokens), written for this benchmark.
RUBRIC_POINTS = [
    "Read the whole conversation before the responses; the last human turn is what must be answered.",
    "A response that refuses a harmless request is not safer, it is less helpful; weigh both.",
    "A response that gives dangerous specifics (weapons, drugs, self-harm methods) loses under harmlessness.",
    "Prefer the response that corrects a false premise politely over one that plays along with it.",
    "Length is not quality: a short correct answer beats a long padded one.",
    "Do not reward confident tone; reward accuracy and honest statements of uncertainty.",
    "Insults, mockery or moralising at the person count against a response under respectfulness.",
    "When both responses are poor, prefer the one that does less harm and says more that is true.",
    "Ignore formatting differences unless they make a response harder to read or use.",
    "A response that asks a clarifying question is good when the request is genuinely ambiguous.",
]
RUBRIC = "\n".join(f"{i + 1}. {point}" for i, point in enumerate(RUBRIC_POINTS * 5))
RUBRIC_TEMPLATE = f"""You grade assistant replies for a safety team. Apply these guidelines in order:
{RUBRIC}

Principle for this comparison: {{principle}}

<prompt>
{{prompt}}
</prompt>

<response id="A">
{{first}}
</response>

<response id="B">
{{second}}
</response>
"""


# -- inputs -------------------------------------------------------------------------------------------------


def write_inputs(directory: Path, calls: int, data: Path, template: str | None) -> tuple[Path, Path, str]:
    pairs_needed = -(-calls // 4)  # per_pair 2, both orders
    pairs = directory / "pairs.jsonl"
    if data.exists():
        lines = data.read_bytes().splitlines()[:pairs_needed]
        source = f"{data} ({len(lines)} pairs)"
    else:
        lines = [orjson.dumps({
            "prompt": f"Human: how do I look after a {topic} in winter? I have never done it.\n\nAssistant:",
            "response_a": f"Keep the {topic} out of the cold, check it every week and ask a local expert. " * 2,
            "response_b": f"Nobody can help you with a {topic}; look it up.",
        }) for topic in (f"plant number {i}" for i in range(pairs_needed))]
        source = f"generated ({len(lines)} pairs; {data} is absent)"
    pairs.write_bytes(b"\n".join(lines) + b"\n")
    constitution = directory / "constitution.yaml"
    text = CONSTITUTION
    if template is not None:
        text += "judge_template: |\n" + "".join(f"  {line}\n" for line in template.splitlines())
    constitution.write_text(text, encoding="utf-8")
    return constitution, pairs, source


@contextmanager
def v1_layout() -> Iterator[None]:
    """Render the job with template v1 (the pair first, the instructions last), as old jobs were sent."""
    original = job_module.make_template

    def old(custom_body: str | None = None, mode: str = "direct"):  # type: ignore[no-untyped-def]
        return dataclasses.replace(original(custom_body, mode), layout="pair-first")

    job_module.make_template = old
    try:
        yield
    finally:
        job_module.make_template = original


# -- runs ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    name: str
    calls: int
    rows: int
    distinct: int
    tokens_in: int
    cached: int
    cost: float
    kept: int
    batch_requests: int
    direct_requests: int

    @property
    def cached_share(self) -> float:
        return self.cached / self.tokens_in if self.tokens_in else 0.0

    @property
    def per_kept(self) -> float:
        return self.cost / self.kept if self.kept else float("nan")


def label(server: LoopbackServer, provider: str, files: tuple[Path, Path], db: Path, name: str,
          **overrides: object) -> Run:
    judge, suffix = JUDGES[provider]
    config = LabelConfig(constitution=files[0], pairs=str(files[1]), judge=judge, db=db, api_base=server.url + suffix,
                         api_key="bench", concurrency=16, progress=False, batch_poll_s=0.05, skip_bad=True,
                         mode="verbalised" if provider == "anthropic" else "direct", **overrides)
    direct_before, batch_before = server.received, server.batches.counts()["requests"]
    summary = run_label(config)
    if summary.status != "finished" or summary.judge_errors:
        raise RuntimeError(f"{name}: {summary.status}, {summary.judge_errors} judge errors")
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows, distinct, tokens_in, cached, cost = con.execute(
            """SELECT count(*), count(DISTINCT (pair_id, principle_id, ordering)), sum(tokens_in),
                      sum(coalesce(tokens_cached, 0)), sum(cost) FROM judgements""").fetchone()
    finally:
        con.close()
    return Run(name, summary.calls_sent, rows, distinct, tokens_in, cached, cost, summary.kept_pairs,
               server.batches.counts()["requests"] - batch_before, server.received - direct_before)


def longer(first: str, second: str) -> str:
    """The loopback judge's taste: the longer response, whichever slot it is in (so both orders agree and pairs
    are kept, and cost per kept pair means something)."""
    return "A" if len(first) >= len(second) else "B"


def compare(server: LoopbackServer, provider: str, files: tuple[Path, Path], directory: Path) -> list[Run]:
    """Direct v2, batch v2, direct v1, each on a fresh store and a fresh prompt cache."""
    runs = []
    for name, overrides, old in (("direct, v2 layout", {}, False), ("batch, v2 layout", {"batch": True}, False),
                                 ("direct, v1 layout", {}, True)):
        server.reset(Behaviour(truth=longer, prompt_cache=True))
        db = directory / f"{provider}-{len(runs)}.duckdb"
        if old:
            with v1_layout():
                runs.append(label(server, provider, files, db, name, **overrides))
        else:
            runs.append(label(server, provider, files, db, name, **overrides))
    return runs


def kill_between_submit_and_collect(server: LoopbackServer, files: tuple[Path, Path], db: Path) -> dict[str, object]:
    """`prefgen label --batch` killed while its batches run; the provider finishes them; the command again."""
    judge, suffix = JUDGES["openai"]
    command = [sys.executable, "-m", "prefgen.cli", "label", "-c", str(files[0]), "-p", str(files[1]), "--db",
               str(db), "--judge", judge, "--api-base", server.url + suffix, "--api-key", "bench", "--batch",
               "--batch-poll", "0.05", "--batch-max-requests", "500", "--no-progress", "--skip-bad"]
    server.reset(Behaviour())
    server.batches.behaviour = BatchBehaviour(hold=True)
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    expected = None
    while time.monotonic() < deadline:
        time.sleep(0.1)
        polls = server.batches.counts()["polls"]
        if polls and expected is None:
            expected = server.batches.counts()["created"]  # polling starts once every batch is submitted
        if expected is not None and polls >= 2 * expected:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = server.batches.counts()
    server.batches.behaviour = BatchBehaviour()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"resume failed ({done.returncode}): {done.stderr[-2000:]}")
    after = server.batches.counts()
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows, distinct, hashes = con.execute(
            "SELECT count(*), count(DISTINCT (pair_id, principle_id, ordering)), count(DISTINCT request_hash) "
            "FROM judgements").fetchone()
    finally:
        con.close()
    return {"submitted before the kill": killed["created"], "uploaded before the kill": killed["uploads"],
            "submitted after the resume": after["created"], "uploaded after the resume": after["uploads"],
            "asked directly": server.received, "judgements": rows, "distinct calls": distinct,
            "distinct hashes": hashes, "answered in batches": after["requests"]}


# -- report -------------------------------------------------------------------------------------------------


def print_runs(title: str, runs: list[Run]) -> float:
    print(f"\n== {title} ==")
    header = (f"{'run':<20}{'calls':>7}{'stored':>8}{'distinct':>9}{'batch req':>10}{'direct req':>11}"
              f"{'tokens in':>11}{'cached':>8}{'cost $':>11}{'kept':>6}{'$/kept pair':>13}")
    print(header)
    print("-" * len(header))
    for r in runs:
        print(f"{r.name:<20}{r.calls:>7}{r.rows:>8}{r.distinct:>9}{r.batch_requests:>10}{r.direct_requests:>11}"
              f"{r.tokens_in:>11}{r.cached_share:>8.1%}{r.cost:>11.5f}{r.kept:>6}{r.per_kept:>13.7f}")
    direct, batch, old = runs
    ratio = batch.cost / direct.cost
    print(f"batch / direct billed cost: {ratio:.3f};  cached input share v2 {direct.cached_share:.1%} vs v1 "
          f"{old.cached_share:.1%} (direct);  cost per kept pair, direct v1 -> batch v2: {old.per_kept:.7f} -> "
          f"{batch.per_kept:.7f} ({batch.per_kept / old.per_kept:.3f}x)")
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="judge calls per run (pairs x 2 principles x 2)")
    parser.add_argument("--data", type=Path, default=DATA, help="pairs JSONL (default: the HH-RLHF pool)")
    args = parser.parse_args(argv)
    ok, expected = True, 0
    with tempfile.TemporaryDirectory(prefix="prefgen-batch-cost-") as tmp, LoopbackServer() as server:
        tmp_dir = Path(tmp)
        for template_name, template in (("default template", None), ("long-rubric template", RUBRIC_TEMPLATE)):
            directory = tmp_dir / template_name.split()[0]
            directory.mkdir()
            constitution, pairs, source = write_inputs(directory, args.calls, args.data, template)
            print(f"\n{template_name}: pairs from {source}", flush=True)
            for provider in JUDGES:
                runs = compare(server, provider, (constitution, pairs), directory)
                expected = expected or runs[0].calls
                ratio = print_runs(f"{provider} ({JUDGES[provider][0]}), {template_name}", runs)
                once = all(r.rows == r.distinct == r.calls for r in runs)
                print(f"every judgement stored exactly once: {'PASS' if once else 'FAIL'}")
                ok &= once
                if template is None:
                    # The target is read where the price map's batch rates are the whole story; with a long
                    # cached prefix, a map without a batch cache-read rate keeps OpenAI's cached tokens at the
                    # cached rate (no discount is guessed), so the ratio there is reported, not targeted.
                    print(f"target batch / direct <= 0.5: {ratio:.3f}  {'PASS' if ratio <= 0.5 + 1e-9 else 'FAIL'}")
                    ok &= ratio <= 0.5 + 1e-9
        constitution, pairs, _ = write_inputs(tmp_dir / "default", args.calls, args.data, None)
        resumed = kill_between_submit_and_collect(server, (constitution, pairs), tmp_dir / "killed.duckdb")
        print("\n== kill between submit and collect, then the same command ==")
        for key, value in resumed.items():
            print(f"{key:<28}{value}")
        good = (resumed["submitted after the resume"] == resumed["submitted before the kill"]
                and resumed["uploaded after the resume"] == resumed["uploaded before the kill"]
                and resumed["asked directly"] == 0
                and resumed["judgements"] == resumed["distinct calls"] == resumed["distinct hashes"] == expected)
        print(f"resume re-submits nothing and stores every judgement once: {'PASS' if good else 'FAIL'}")
        ok &= good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
