"""Shared fixtures. Keep each one small and written for the tests that use it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.loopback_server import LoopbackServer


@pytest.fixture(scope="module")
def loopback_server() -> Iterator[LoopbackServer]:
    """One fake judge per test module: starting a server thread costs more than most tests."""
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def loopback(loopback_server: LoopbackServer) -> LoopbackServer:
    """The module's fake judge, with no requests seen and the default behaviour."""
    loopback_server.reset()
    return loopback_server


@pytest.fixture(autouse=True, scope="session")
def feature_cache_in_a_temporary_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Frozen-base features are cached on disk (`prefgen.train.head`); tests keep theirs out of ~/.cache."""
    import os

    previous = os.environ.get("PREFGEN_CACHE_DIR")
    os.environ["PREFGEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("prefgen-cache"))
    yield
    if previous is None:
        os.environ.pop("PREFGEN_CACHE_DIR", None)
    else:
        os.environ["PREFGEN_CACHE_DIR"] = previous
