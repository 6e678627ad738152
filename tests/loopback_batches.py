"""The two batch wire protocols for the loopback judge: OpenAI's Batch API and Anthropic's Message Batches.

OpenAI: `POST /v1/files` (multipart, purpose "batch") takes the JSONL of requests, `POST /v1/batches` starts a
batch on it, `GET /v1/batches/{id}` polls it, `GET /v1/batches` lists them, `GET /v1/files/{id}/content` gives
the output and error files. Anthropic: `POST /v1/messages/batches` takes the requests inline, `GET
/v1/messages/batches/{id}` polls, `GET /v1/messages/batches/{id}/results` streams the JSONL results, `GET
/v1/messages/batches` lists. Each request is answered as the same request asked directly would be
(`LoopbackServer.reply`), once the batch ends.

How a batch goes is set by `BatchBehaviour`, which tests change between polls: how many polls see it running,
holding it running (a test kills the client meanwhile), expiring it with only part of it answered, failing
some of its requests.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from tests.loopback_server import LoopbackServer

_JSON = "application/json"


@dataclass
class BatchBehaviour:
    polls_to_end: int = 1  # polls that see a batch running before it ends
    hold: bool = False  # keep every batch running, whatever the polls
    answered_share: float = 1.0  # below 1: a batch expires with this share of its requests answered
    error_every: int = 0  # every k-th request of a batch fails with a 400 (0: none)
    results_unreadable: bool = False  # an ended batch's results come back as lines no client can read


@dataclass
class _Batch:
    id: str
    protocol: str
    requests: list[dict[str, Any]]  # {"custom_id", "body"}
    created_at: float
    metadata: dict[str, str] = field(default_factory=dict)
    input_file_id: str | None = None
    polls: int = 0
    results: list[dict[str, Any]] | None = None  # once ended
    output_file_id: str | None = None
    error_file_id: str | None = None


class BatchDesk:
    def __init__(self, server: LoopbackServer) -> None:
        self.server = server
        self.behaviour = BatchBehaviour()
        self._ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.behaviour = BatchBehaviour()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, _Batch] = {}
        self.uploads = 0
        self.created = 0
        self.polls = 0
        self.batch_requests = 0  # requests answered (or failed) inside batches

    def counts(self) -> dict[str, int]:
        return {"uploads": self.uploads, "created": self.created, "polls": self.polls,
                "requests": self.batch_requests}

    def add_routes(self, app: web.Application) -> None:
        for prefix in ("/v1", ""):  # with or without /v1 in the base URL, as for the chat endpoints
            app.router.add_post(f"{prefix}/files", self._upload)
            app.router.add_get(f"{prefix}/files/{{file_id}}/content", self._file_content)
            app.router.add_post(f"{prefix}/batches", self._openai_create)
            app.router.add_get(f"{prefix}/batches", self._list)
            app.router.add_get(f"{prefix}/batches/{{batch_id}}", self._openai_retrieve)
        app.router.add_post("/v1/messages/batches", self._anthropic_create)
        app.router.add_get("/v1/messages/batches", self._list)
        app.router.add_get("/v1/messages/batches/{batch_id}", self._anthropic_retrieve)
        app.router.add_get("/v1/messages/batches/{batch_id}/results", self._anthropic_results)

    # -- OpenAI ------------------------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        if upload is None or form.get("purpose") != "batch":
            return _error(400, "a file with purpose 'batch' is required")
        data = upload.file.read()
        file_id = f"file-loopback-{next(self._ids)}"
        self.files[file_id] = data
        self.uploads += 1
        return _json({"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                      "filename": upload.filename, "purpose": "batch", "status": "processed"})

    async def _file_content(self, request: web.Request) -> web.Response:
        data = self.files.get(request.match_info["file_id"])
        if data is None:
            return _error(404, "no such file")
        if self.behaviour.results_unreadable and data.startswith(b'{"id":"batch_req'):
            data = b"this is not JSON\n"
        return web.Response(body=data, content_type="application/octet-stream")

    async def _openai_create(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        data = self.files.get(body.get("input_file_id"))
        if data is None:
            return _error(400, "input_file_id names no uploaded file")
        lines = [orjson.loads(line) for line in data.splitlines() if line.strip()]
        batch = _Batch(f"batch_loopback_{next(self._ids)}", "openai",
                       [{"custom_id": line["custom_id"], "body": line["body"]} for line in lines], time.time(),
                       metadata=body.get("metadata") or {}, input_file_id=body["input_file_id"])
        self.batches[batch.id] = batch
        self.created += 1
        return _json(self._openai_object(batch, "validating"))

    async def _openai_retrieve(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return _error(404, "no such batch")
        return _json(self._openai_object(batch, self._poll(batch)))

    def _openai_object(self, batch: _Batch, status: str) -> dict[str, Any]:
        results = batch.results or []
        failed = sum(1 for r in results if r["outcome"] != "succeeded")
        if batch.results is not None and batch.output_file_id is None:
            batch.output_file_id, batch.error_file_id = self._openai_files(batch)
        ended = batch.results is not None
        return {
            "id": batch.id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
            "input_file_id": batch.input_file_id, "completion_window": "24h",
            "status": ("expired" if any(r["outcome"] == "expired" for r in results) else "completed")
            if ended else status,
            "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
            "created_at": int(batch.created_at), "in_progress_at": int(batch.created_at),
            "expires_at": int(batch.created_at) + 86400, "completed_at": int(time.time()) if ended else None,
            "request_counts": {"total": len(batch.requests), "completed": len(results) - failed, "failed": failed},
            "metadata": batch.metadata,
        }

    def _openai_files(self, batch: _Batch) -> tuple[str | None, str | None]:
        output, errors = [], []
        for i, result in enumerate(batch.results or []):
            line: dict[str, Any] = {"id": f"batch_req_{batch.id}_{i}", "custom_id": result["custom_id"]}
            if result["outcome"] == "succeeded":
                line |= {"response": {"status_code": 200, "request_id": f"req_{i}", "body": result["payload"]},
                         "error": None}
                output.append(line)
            elif result["outcome"] == "expired":
                errors.append(line | {"response": None, "error": {
                    "code": "batch_expired",
                    "message": "This request could not be executed before the completion window expired."}})
            else:
                errors.append(line | {"response": {"status_code": 400, "request_id": f"req_{i}", "body": {
                    "error": {"message": result["error"], "type": "invalid_request_error"}}}, "error": None})
        return self._file(output), self._file(errors)

    def _file(self, lines: list[dict[str, Any]]) -> str | None:
        if not lines:
            return None
        file_id = f"file-loopback-{next(self._ids)}"
        self.files[file_id] = b"".join(orjson.dumps(line) + b"\n" for line in lines)
        return file_id

    # -- Anthropic ---------------------------------------------------------------------------------

    async def _anthropic_create(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return _error(400, "requests: a non-empty list is required", "anthropic")
        batch = _Batch(f"msgbatch_loopback_{next(self._ids)}", "anthropic",
                       [{"custom_id": r["custom_id"], "body": r["params"]} for r in requests], time.time())
        self.batches[batch.id] = batch
        self.created += 1
        return _json(self._anthropic_object(batch, request, ended=False))

    async def _anthropic_retrieve(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return _error(404, "no such batch", "anthropic")
        return _json(self._anthropic_object(batch, request, ended=self._poll(batch) == "ended"))

    def _anthropic_object(self, batch: _Batch, request: web.Request, *, ended: bool) -> dict[str, Any]:
        results = batch.results or []
        kinds = [r["outcome"] for r in results]
        created = _iso(batch.created_at)
        return {
            "id": batch.id, "type": "message_batch", "processing_status": "ended" if ended else "in_progress",
            "request_counts": {"processing": 0 if ended else len(batch.requests),
                               "succeeded": kinds.count("succeeded"), "errored": kinds.count("errored"),
                               "canceled": 0, "expired": kinds.count("expired")},
            "created_at": created, "expires_at": _iso(batch.created_at + 86400),
            "ended_at": _iso(time.time()) if ended else None, "archived_at": None, "cancel_initiated_at": None,
            # An absolute URL, as the real API gives: the SDK fetches it as it is.
            "results_url": f"{request.url.origin()}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    async def _anthropic_results(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None or batch.results is None:
            return _error(404, "no results for this batch (yet)", "anthropic")
        lines = []
        for result in batch.results:
            outcome = result["outcome"]
            if outcome == "succeeded":
                body: dict[str, Any] = {"type": "succeeded", "message": result["payload"]}
            elif outcome == "expired":
                body = {"type": "expired"}
            else:
                body = {"type": "errored", "error": {"type": "error", "error": {
                    "type": "invalid_request_error", "message": result["error"]}}}
            lines.append(orjson.dumps({"custom_id": result["custom_id"], "result": body}) + b"\n")
        return web.Response(body=b"".join(lines), content_type="application/binary")

    # -- both --------------------------------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.Response:
        anthropic = "/messages/" in request.path
        protocol = "anthropic" if anthropic else "openai"
        found = [b for b in sorted(self.batches.values(), key=lambda b: -b.created_at) if b.protocol == protocol]
        data = [self._anthropic_object(b, request, ended=b.results is not None) if anthropic
                else self._openai_object(b, "in_progress") for b in found]
        ids = [b.id for b in found]
        page = {"data": data, "has_more": False, "first_id": ids[0] if ids else None,
                "last_id": ids[-1] if ids else None}
        return _json(page if anthropic else {"object": "list", **page})

    def _poll(self, batch: _Batch) -> str:
        """The batch's state after one more poll; ending it answers its requests."""
        self.polls += 1
        batch.polls += 1
        if batch.results is None and not self.behaviour.hold and batch.polls >= self.behaviour.polls_to_end:
            batch.results = self._answer(batch)
        if batch.results is not None:
            return "ended"
        return "in_progress"

    def _answer(self, batch: _Batch) -> list[dict[str, Any]]:
        from tests.loopback_server import _conversation

        behaviour = self.behaviour
        answered = round(len(batch.requests) * behaviour.answered_share)
        results = []
        for i, item in enumerate(batch.requests):
            result: dict[str, Any] = {"custom_id": item["custom_id"]}
            if i >= answered:
                results.append(result | {"outcome": "expired"})
                continue
            self.batch_requests += 1
            if behaviour.error_every and (i + 1) % behaviour.error_every == 0:
                results.append(result | {"outcome": "errored", "error": "loopback says this request is invalid"})
                continue
            turns = _conversation(item["body"])
            key = hashlib.blake2b("\x00".join(turns).encode(), digest_size=8).hexdigest()
            payload = self.server.reply(batch.protocol, item["body"], turns, key)
            results.append(result | {"outcome": "succeeded", "payload": payload})
        return results


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _json(payload: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type=_JSON)


def _error(status: int, message: str, protocol: str = "openai") -> web.Response:
    if protocol == "anthropic":
        return _json({"type": "error", "error": {"type": "invalid_request_error", "message": message}}, status)
    return _json({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}},
                 status)
