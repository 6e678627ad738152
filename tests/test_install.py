"""What a fresh machine installs is what the tests passed with, and a DuckDB error reaches the user as itself."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import duckdb
import pytest

from prefgen.storage.db import Store, cleanup, registered
from prefgen.storage.labels import save_constitution

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import check_lock  # noqa: E402


def test_installed_versions_equal_the_lock():
    assert check_lock.drift(ROOT / "requirements.lock", complete=True) == []


def test_the_lock_pins_every_range_bounded_dependency_within_its_range():
    from packaging.requirements import Requirement
    import tomllib

    pins = check_lock.pins(ROOT / "requirements.lock")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    for text in declared:
        requirement = Requirement(text)
        name = check_lock.normalise(requirement.name)
        assert name in pins, f"{name} is a dependency but not in the lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name], text)


@pytest.mark.parametrize("name", ["duckdb", "torch", "transformers", "trl"])
def test_dependencies_that_broke_us_at_a_major_have_an_upper_bound(name):
    text = (ROOT / "pyproject.toml").read_text()
    line = re.search(rf'"{name}(\[[^\]]*\])?([^"]*)"', text)[2]
    assert "<" in line, f"{name} has no upper bound: {line}"


def test_a_failed_write_reports_its_own_error_not_the_cleanup_that_followed(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        with pytest.raises(duckdb.BinderException, match="no_such_column"):
            with store.transaction():
                store.insert_rows("principles", [{"constitution_id": "c", "no_such_column": "x"}])
        # The store is usable afterwards: the batch was unregistered and the transaction rolled back.
        save_constitution(store, cid="c", name="n", version=None, source="s", body={},
                          principles=[{"principle_id": "p", "text": "t", "weight": 1.0, "category": None}])
        assert store.query("SELECT principle_id FROM principles")[1] == [("p",)]


def test_cleanup_runs_after_success_and_failure_and_never_hides_the_cause():
    con = duckdb.connect()
    undone = []
    with cleanup(lambda: undone.append("ok")):
        pass
    with pytest.raises(ValueError, match="cause"):
        with cleanup(lambda: (undone.append("failed"), con.execute("SELECT * FROM nowhere"))):
            raise ValueError("cause")
    assert undone == ["ok", "failed"]
    with registered(con, "_t", __import__("pyarrow").table({"x": [1]})):
        assert con.execute("SELECT x FROM _t").fetchall() == [(1,)]
    with pytest.raises(duckdb.CatalogException):
        con.execute("SELECT x FROM _t")
