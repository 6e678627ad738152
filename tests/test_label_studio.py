"""A routed batch through a real Label Studio server and back (`make test-label-studio`).

Label Studio lives in its own virtual environment (its pins would fight prefgen's), named by
PREFGEN_LABEL_STUDIO_VENV (default: .venv-labelstudio in the repository root); without it this test is
skipped. The server starts on 127.0.0.1 with a temporary SQLite data directory. Legacy API tokens are off by
default, so the test uses Label Studio's current flow: log in, create a personal access token (a JWT refresh
token) at /api/token/, exchange it for an access token at /api/token/refresh/, and send that as a Bearer.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefgen.formats.label_studio import FIRST, LABEL_STUDIO_CONFIG, SECOND, TIE
from prefgen.pipelines.configs import RouteConfig
from prefgen.pipelines.humans.imports import import_human
from prefgen.pipelines.mixing.route import route
from prefgen.storage.db import Store
from tests.test_route import judged_pool

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("PREFGEN_LABEL_STUDIO_VENV", ROOT / ".venv-labelstudio"))
EXECUTABLE = VENV / "bin" / "label-studio"
USER, PASSWORD = "annotator@example.org", "prefgen-test-password"
START_TIMEOUT_S = 600  # the first start migrates a fresh SQLite database: minutes on two cores

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not EXECUTABLE.exists(), reason=f"no Label Studio at {EXECUTABLE} (make test-label-studio)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory) -> Iterator[str]:
    httpx = pytest.importorskip("httpx")
    data = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data), "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
           "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": ""}
    log = (data / "server.log").open("wb")
    server = subprocess.Popen(
        [str(EXECUTABLE), "start", "--no-browser", "--data-dir", str(data), "--internal-host", "127.0.0.1",
         "--port", str(port), "--username", USER, "--password", PASSWORD],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"Label Studio exited ({server.returncode}); see {data / 'server.log'}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Label Studio did not answer in {START_TIMEOUT_S} s; see {data / 'server.log'}")
            time.sleep(2)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def api_client(base: str):
    """An httpx client authorised with a personal access token, obtained the way a user would."""
    import httpx

    session = httpx.Client(base_url=base, timeout=60, follow_redirects=True)
    session.get("/user/login/")
    csrf = session.cookies["csrftoken"]
    session.post("/user/login/", data={"email": USER, "password": PASSWORD, "csrfmiddlewaretoken": csrf},
                 headers={"Referer": f"{base}/user/login/"})
    created = session.post("/api/token/", headers={"X-CSRFToken": session.cookies["csrftoken"]})
    assert created.status_code == 201, created.text
    refresh = created.json()["token"]
    access = httpx.post(f"{base}/api/token/refresh/", json={"refresh": refresh}, timeout=60)
    assert access.status_code == 200, access.text
    return httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {access.json()['access']}"})


def test_a_routed_batch_goes_through_label_studio_and_back(label_studio, tmp_path):
    with Store(tmp_path / "ls.duckdb") as store:
        judged_pool(store)
        batch = tmp_path / "batch.json"
        route(store, RouteConfig(budget=6, format="label-studio", out=batch, random_share=0.34, seed=4))
    config = (tmp_path / "batch.label_config.xml").read_text()
    assert config == LABEL_STUDIO_CONFIG

    api = api_client(label_studio)
    project = api.post("/api/projects", json={"title": "prefgen routed batch", "label_config": config})
    assert project.status_code == 201, project.text
    project_id = project.json()["id"]
    imported = api.post(f"/api/projects/{project_id}/import", json=json.loads(batch.read_text()))
    assert imported.status_code == 201, imported.text
    tasks = api.get("/api/tasks", params={"project": project_id, "page_size": 100}).json()["tasks"]
    assert len(tasks) == 6

    # The annotator answers: Response 1, Response 2, Tie, in turn; one task is skipped (cancelled).
    answers = {}
    for n, task in enumerate(sorted(tasks, key=lambda t: t["id"])):
        choice = (FIRST, SECOND, TIE)[n % 3]
        cancelled = n == 5
        body = {"result": [] if cancelled else [{"from_name": "preference", "to_name": "prompt", "type": "choices",
                                                  "value": {"choices": [choice]}}],
                "was_cancelled": cancelled}
        response = api.post(f"/api/tasks/{task['id']}/annotations/", json=body)
        assert response.status_code == 201, response.text
        if not cancelled:
            answers[task["data"]["pair_id"]] = (choice, task["data"]["shown"])

    export = api.get(f"/api/projects/{project_id}/export", params={"exportType": "JSON"})
    assert export.status_code == 200, export.text
    path = tmp_path / "label-studio-export.json"
    path.write_bytes(export.content)

    with Store(tmp_path / "ls.duckdb") as store:
        report = import_human(store, path, fmt="label-studio")
        assert report.pairs == 5 and report.rows == 6
        labels = dict(store.query("SELECT pair_id, winner FROM human_labels WHERE annotator = 'majority'")[1])
        again = import_human(store, path, fmt="label-studio")
        assert again.labels == report.labels
        assert store.query("SELECT count(*) FROM human_labels")[1][0][0] == report.labels
    annotators = [a for a in report.annotators if a != "majority"]
    assert len(annotators) == 1 and annotators[0].startswith("label-studio:")
    shown_first = {"ab": "a", "ba": "b"}
    for pair_id, (choice, shown) in answers.items():
        expected = {FIRST: shown_first[shown], SECOND: {"a": "b", "b": "a"}[shown_first[shown]], TIE: "tie"}[choice]
        assert labels[pair_id] == expected
