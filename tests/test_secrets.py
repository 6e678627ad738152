"""Secrets hold: URL credentials are redacted wherever a URL is stored or printed, keys do not travel over
plain http off this machine unless the user says so, and no artifact carries a canary secret."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys

import duckdb
import pytest

from prefgen.errors import ExitCode, PrefgenError
from prefgen.judge.anthropic_backend import AnthropicBackend
from prefgen.judge.base import SamplingParams
from prefgen.judge.litellm_backend import LiteLLMBackend
from prefgen.judge.openai_backend import OpenAIBackend
from prefgen.redact import redact, split_credentials
from tests.test_label_pipeline import CONSTITUTION, REPO, write_pairs

KEY_CANARY = "sk-canary-KEY-91c2d4"
PASS_CANARY = "canaryPASS-6b1e0f"
USER = "alice"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redact_masks_url_credentials_and_named_secrets() -> None:
    text = f"error talking to http://{USER}:{PASS_CANARY}@host:8/v1 with {KEY_CANARY}"
    assert redact(text, [KEY_CANARY]) == "error talking to http://***@host:8/v1 with ***"
    assert redact("https://u:p@ss:w@rd@h/x") == "https://***@h/x"
    assert redact("https://gw/v1?api-version=2&api-key=s3cret&x=1") == "https://gw/v1?api-version=2&api-key=***&x=1"
    assert split_credentials(f"http://{USER}:{PASS_CANARY}@127.0.0.1:9/v1") == (
        "http://127.0.0.1:9/v1", (USER, PASS_CANARY))


async def test_url_credentials_with_an_env_key_are_sent_as_basic_auth_not_a_crash(loopback, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY_CANARY)
    base = loopback.openai_base.replace("http://", f"http://{USER}:{PASS_CANARY}@")
    for transport in ("http", "sdk"):
        backend = OpenAIBackend("judge", api_base=base, transport=transport)
        try:
            completion = await backend.complete([{"role": "user", "content": "hi"}], SamplingParams())
        finally:
            await backend.aclose()
        assert completion.texts == ["A"]
        sent = loopback.requests[-1].headers["Authorization"]
        assert sent == "Basic " + base64.b64encode(f"{USER}:{PASS_CANARY}".encode()).decode()
        assert KEY_CANARY not in str(loopback.requests[-1].headers)


@pytest.mark.parametrize("make", [
    lambda base, **kw: OpenAIBackend("m", api_base=base, **kw),
    lambda base, **kw: OpenAIBackend("m", api_base=base, transport="sdk", **kw),
    lambda base, **kw: AnthropicBackend("claude-haiku-4-5", api_base=base.removesuffix("/v1"), **kw),
    lambda base, **kw: LiteLLMBackend("openai/gpt-4o-mini", api_base=base, **kw),
])
def test_an_explicit_key_is_not_sent_over_plain_http_to_another_host(make) -> None:
    # Only constructed: nothing is sent, and 10.255.255.1 is never contacted.
    with pytest.raises(PrefgenError, match="--allow-http-key"):
        make("http://10.255.255.1:8000/v1", api_key=KEY_CANARY)
    make("http://10.255.255.1:8000/v1", api_key=KEY_CANARY, allow_http_key=True)
    make("https://10.255.255.1:8000/v1", api_key=KEY_CANARY)
    make("http://127.0.0.1:8000/v1", api_key=KEY_CANARY)


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "[::1]", "[::ffff:127.0.0.1]"])
def test_a_key_may_go_over_plain_http_to_this_machine(host) -> None:
    OpenAIBackend("m", api_base=f"http://{host}:8000/v1", api_key=KEY_CANARY)  # no refusal


@pytest.mark.parametrize("host", ["evil.localhost", "localhost.localdomain", "localhost.evil.example",
                                  "128.0.0.1", "[::2]", "0.0.0.0"])
def test_a_name_that_only_looks_local_is_another_host_for_the_key(host) -> None:
    # `*.localhost` is whatever a resolver, a hosts file or a proxy makes of it: the key may leave the machine.
    with pytest.raises(PrefgenError, match="--allow-http-key"):
        OpenAIBackend("m", api_base=f"http://{host}:8000/v1", api_key=KEY_CANARY)


def test_an_environment_key_is_withheld_from_plain_http_to_another_host(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY_CANARY)
    backend = OpenAIBackend("m", api_base="http://10.255.255.1:8000/v1")
    assert "Authorization" not in backend._transport._headers
    assert OpenAIBackend("m", api_base="https://10.255.255.1/v1")._transport._headers["Authorization"] == \
        f"Bearer {KEY_CANARY}"


def test_no_artifact_carries_a_canary_secret(tmp_path, loopback) -> None:
    """A run that fails against a dead port (errors mention the URL), then one that works; exports and reports;
    then every file, table and output is searched for the key and the URL password."""
    (tmp_path / "c.yaml").write_text(CONSTITUTION)
    pairs = write_pairs(tmp_path / "pairs.jsonl", 4)
    db = tmp_path / "store.duckdb"
    env = {**os.environ, "OPENAI_API_KEY": KEY_CANARY, "PYTHONUNBUFFERED": "1"}
    outputs = []

    def prefgen(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "prefgen.cli", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        outputs.append(done.stdout + done.stderr)
        return done

    stored_errors = []
    # The dead port stops the run early (exit 4), printing the URL it could not reach: redacted, as stored.
    live_port = int(loopback.url.rsplit(":", 1)[1])
    for port, exit_code in ((free_port(), ExitCode.ALL_CALLS_FAILED), (live_port, ExitCode.OK)):
        base = f"http://{USER}:{PASS_CANARY}@127.0.0.1:{port}/v1"
        done = prefgen("label", "-c", str(tmp_path / "c.yaml"), "-p", str(pairs), "--db", str(db),
                       "--judge", "openai:gpt-4o-mini", "--api-base", base, "--max-attempts", "1", "--no-progress")
        assert done.returncode == exit_code, done.stdout + done.stderr
        con = duckdb.connect(str(db), read_only=True)
        stored_errors += [e for (e,) in con.execute("SELECT error FROM judgements WHERE error IS NOT NULL").fetchall()]
        con.close()
    assert stored_errors and all("http://127.0.0.1" in e for e in stored_errors)  # the dead port: URL, no secret
    for fmt in ("csv", "json", "parquet"):
        prefgen("sql", "SELECT * FROM judgements", "--db", str(db), "--format", fmt, "--out", str(tmp_path / f"j.{fmt}"))
    prefgen("sql", "SELECT * FROM runs", "--db", str(db), "--format", "csv", "--out", str(tmp_path / "runs.csv"))
    outputs.append(prefgen("stats", "--db", str(db)).stdout)

    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
        tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        dumped = [str(con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables]
        errors = con.execute("SELECT count(*) FROM judgements WHERE status = 'judge_error'").fetchone()[0]
    finally:
        con.close()
    assert "***@127.0.0.1" in "".join(dumped)  # the URL was stored, redacted
    assert errors == 0  # the second run re-asked the first run's failures
    artifacts = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    for secret in (KEY_CANARY, PASS_CANARY):
        assert not any(secret in text for text in outputs + dumped + stored_errors)
        assert not any(secret.encode() in blob for blob in artifacts)


async def test_a_judge_error_naming_a_url_with_credentials_is_stored_redacted() -> None:
    from prefgen.judge.base import PermanentError
    from prefgen.judge.core import JudgeClient
    from prefgen.judge.prompts import make_template

    class Leaky:
        name, model, supports_logprobs, options = "leaky", "m", False, ()

        async def complete(self, messages, params):
            raise PermanentError(f"HTTP 401 from http://{USER}:{PASS_CANARY}@proxy/v1")

        async def aclose(self) -> None:
            pass

    template = make_template()
    verdict = await JudgeClient(Leaky(), template, template.sampling()).judge([{"role": "user", "content": "x"}])
    assert verdict.error == "PermanentError: HTTP 401 from http://***@proxy/v1"


@pytest.mark.parametrize("make", [
    lambda base: AnthropicBackend("claude-haiku-4-5", api_base=base),
    lambda base: LiteLLMBackend("openai/gpt-4o-mini", api_base=f"{base}/v1"),
    lambda base: LiteLLMBackend("anthropic/claude-haiku-4-5", api_base=base),
], ids=["anthropic", "litellm-openai", "litellm-anthropic"])
async def test_url_credentials_reach_the_server_as_basic_auth_through_every_sdk(make, loopback, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY_CANARY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY_CANARY)
    backend = make(loopback.url.replace("http://", f"http://{USER}:{PASS_CANARY}@"))
    try:
        completion = await backend.complete([{"role": "user", "content": "hi"}], SamplingParams(logprobs=False))
    finally:
        await backend.aclose()
    assert completion.texts == ["A"]
    headers = loopback.requests[-1].headers
    assert headers["Authorization"] == "Basic " + base64.b64encode(f"{USER}:{PASS_CANARY}".encode()).decode()
    assert KEY_CANARY not in str(headers)
