"""Import formats are one registry: one class per format, one module each, and every `--format` choice and
config type read from it, so a new format is one class in one file."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from prefgen import formats
from prefgen.cli import cli
from prefgen.errors import InputError
from prefgen.pipelines.configs import EvalConfig, ImportConfig, RouteConfig
from prefgen.storage.db import Store

FORMATS_DIR = Path(formats.__file__).parent


def choices(command: str, option: str) -> list[str]:
    param = next(p for p in cli.commands[command].params if option in p.opts)
    return list(param.type.choices)


def test_every_module_of_the_formats_package_is_one_registered_format():
    modules = sorted(p.stem for p in FORMATS_DIR.glob("*.py") if not p.stem.startswith("_"))
    registered = sorted(type(f).__module__.rsplit(".", 1)[1] for f in formats.FORMATS.values())
    assert modules == registered
    for module in modules:
        tree = ast.parse((FORMATS_DIR / f"{module}.py").read_text())
        classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
        assert len(classes) == 1, f"{module}.py: one format class per module"


def test_the_format_choices_of_every_command_and_config_come_from_the_registry():
    every = ["auto", *formats.names()]
    files = ["auto", *formats.names(formats.file_formats())]
    tools = list(formats.names(formats.tool_formats()))
    assert set(every) == {"auto", "hh", "trl", "pairwise", "annotators", "label-studio", "argilla"}
    assert choices("import-human", "--format") == every
    assert choices("eval", "--format") == files and "label-studio" not in files
    assert choices("route", "--format") == tools
    assert list(ImportConfig.model_fields["fmt"].annotation.__args__) == every
    assert list(EvalConfig.model_fields["fmt"].annotation.__args__) == files
    assert list(RouteConfig.model_fields["format"].annotation.__args__) == tools
    help_text = next(p for p in cli.commands["import-human"].params if "--format" in p.opts).help
    assert all(f"{f.name}: {f.help}" in help_text for f in formats.FORMATS.values())


@pytest.mark.parametrize("row, name", [
    ({"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": "\n\nHuman: hi\n\nAssistant: b"}, "hh"),
    ({"prompt": "hi", "chosen": "a", "rejected": "b"}, "trl"),
    ({"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a"}],
      "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "b"}]}, "trl"),
    ({"prompt": "hi", "response_a": "a", "response_b": "b", "winner": "a"}, "pairwise"),
    ({"prompt": "hi", "response_a": "a", "response_b": "b", "annotator_1": "a", "winner": "a"}, "annotators"),
    ({"id": 1, "data": {"prompt": "hi", "pair_id": "p", "shown": "ab"}, "annotations": []}, "label-studio"),
    ({"id": "p", "fields": {"prompt": "hi"}, "metadata": {"pair_id": "p", "shown": "ba"}, "responses": {}},
     "argilla"),
])
def test_exactly_one_format_claims_a_row_of_its_own(row, name):
    assert [f.name for f in formats.FORMATS.values() if f.detect(row)] == [name]
    assert formats.detect(row, "f.jsonl", 1).name == name


def test_a_row_no_format_claims_asks_for_a_format_and_suggests_columns():
    with pytest.raises(InputError, match="--format") as failure:
        formats.detect({"question": "hi", "answer1": "a", "answer2": "b", "pick": "a"}, "f.jsonl", 3)
    assert failure.value.line == 3 and "--column prompt=question" in str(failure.value.render())


def test_import_human_tells_a_label_studio_export_from_its_first_row(tmp_path):
    from tests.test_route import judged_pool, label_studio_export, routed_batch

    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        judged_pool(store)
        _, tasks = routed_batch(store, tmp_path)
    export = tmp_path / "export.json"
    export.write_text(json.dumps(label_studio_export(tasks, {tasks[0]["data"]["pair_id"]: [(1, "Response 1")]})))
    result = CliRunner().invoke(cli, ["import-human", str(export), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "1 labelled pairs" in result.output and "format label-studio" in result.output


NEW_FORMAT = '''
import json, sys
from prefgen.formats import SINGLE, ImportFormat, Votes

class QA(ImportFormat):
    name = "qa"
    help = "q, good, bad"

    def detect(self, row):
        return {"q", "good", "bad"} <= set(row)

    def read(self, row, path, line):
        return Votes(row["q"], row["good"], row["bad"], {SINGLE: "a"})

from click.testing import CliRunner
from prefgen.cli import cli

runner = CliRunner()
db, data = sys.argv[1], sys.argv[2]
named = runner.invoke(cli, ["import-human", data, "--db", db, "--format", "qa", "--source", "named"])
auto = runner.invoke(cli, ["import-human", data, "--db", db, "--source", "auto"])
evaluate = [p for p in cli.commands["eval"].params if "--format" in p.opts][0]
print(json.dumps({"named": named.output, "auto": auto.output, "codes": [named.exit_code, auto.exit_code],
                  "eval": list(evaluate.type.choices)}))

class Twin(QA):
    name = "qa-twin"

ambiguous = runner.invoke(cli, ["import-human", data, "--db", db])
print(json.dumps({"ambiguous": ambiguous.output, "code": ambiguous.exit_code}))
'''


def test_a_new_format_is_one_class_and_every_command_takes_it(tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"q": f"question {i}", "good": "kind", "bad": "rude"}) + "\n"
                            for i in range(3)))
    script = tmp_path / "new_format.py"
    script.write_text(NEW_FORMAT)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "s.duckdb"), str(data)], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    first, second = (json.loads(line) for line in out.stdout.splitlines())
    assert first["codes"] == [0, 0], first
    assert "imported 3 labelled pairs" in first["named"] and "(format qa)" in first["auto"]
    assert "qa" in first["eval"]
    assert second["code"] == 2 and "fit several formats (qa, qa-twin)" in second["ambiguous"]
