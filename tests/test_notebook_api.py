"""The Python API from a notebook: pipeline functions work when the caller already runs an event loop (a Jupyter
cell does), and the async variant can be awaited there."""

from __future__ import annotations

import asyncio

from prefgen.pipelines.labelling import run_label
from prefgen.pipelines.labelling.local import label_async
from prefgen.pipelines.labelling.sync import run_coroutine
from tests.loopback_server import Behaviour
from tests.test_label_pipeline import config, files, truth  # noqa: F401


async def test_run_label_works_inside_a_running_event_loop(files, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    asyncio.get_running_loop()  # as in a Jupyter cell
    summary = run_label(config(files, loopback, limit=3))
    assert summary.status == "finished" and summary.calls_sent == 3 * 2 * 2


async def test_label_async_can_be_awaited_in_the_callers_loop(files, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    summary = await label_async(config(files, loopback, limit=2))
    assert summary.status == "finished" and summary.calls_sent == 2 * 2 * 2


async def test_run_coroutine_leaves_the_callers_loop_alone():
    loop = asyncio.get_running_loop()

    async def which_loop():
        return asyncio.get_running_loop()

    assert run_coroutine(which_loop()) is not loop
    assert asyncio.get_running_loop() is loop


def test_run_coroutine_without_a_loop_is_asyncio_run():
    async def answer():
        return 42

    assert run_coroutine(answer()) == 42
