"""Constitution files: validation errors that name file, line and field; identity; seeded weighted sampling."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from prefgen.constitution import load_constitution, sample_principles
from prefgen.errors import InputError, PrefgenError

SHARED = Path(__file__).resolve().parents[2] / "shared"

GOOD = """\
name: test-constitution
version: 1
principles:
  - id: harmless
    text: Choose the less harmful response.
    weight: 2.0
    category: harmlessness
  - id: honest
    text: Choose the more honest response.
sampling:
  per_pair: 1
  seed: 0
"""


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_yaml_loads_with_defaults(tmp_path):
    c = load_constitution(write(tmp_path, GOOD))
    assert [p.id for p in c.principles] == ["harmless", "honest"]
    assert c.principles[1].weight == 1.0
    assert c.sampling.per_pair == 1


def test_yaml_and_json_with_the_same_content_have_the_same_identity(tmp_path):
    yaml_c = load_constitution(write(tmp_path, GOOD))
    json_c = load_constitution(write(tmp_path, json.dumps(yaml_c.model_dump()), "c.json"))
    assert yaml_c.id == json_c.id
    edited = load_constitution(write(tmp_path, GOOD.replace("less harmful", "safer"), "d.yaml"))
    assert edited.id != yaml_c.id


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    weight: 2.0\n", "    weight: -1\n", ":6 principles[0].weight: Input should be greater than or equal to 0 (got -1"),
        ("    text: Choose the more honest response.\n", "    text: '   '\n", ":9 principles[1].text: must not be empty"),
        ("  - id: honest\n", "  - id: harmless\n", "duplicate principle id 'harmless'"),
        ("  per_pair: 1\n", "  per_pair: 3\n", "sampling.per_pair is 3 but only 2 principle(s)"),
        ("  seed: 0\n", "  seed: 0\n  temperature: 1\n", ":13 sampling.temperature: unknown key"),
    ],
)
def test_invalid_constitution_names_line_and_field(tmp_path, old, new, expected):
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(PrefgenError) as info:
        load_constitution(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_bad_yaml_reports_the_line(tmp_path):
    path = write(tmp_path, GOOD.replace("  - id: honest\n", "  - id: [honest\n"))
    with pytest.raises(InputError) as info:
        load_constitution(path)
    assert info.value.line is not None and info.value.line >= 8
    assert "invalid YAML" in str(info.value)


def test_non_utf8_file_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(GOOD.encode("utf-8").replace(b"less harmful", b"less \xff harmful"))
    with pytest.raises(InputError, match="not UTF-8"):
        load_constitution(path)


def test_template_with_unknown_placeholder_is_refused(tmp_path):
    path = write(tmp_path, GOOD + "judge_template: 'Compare {first} and {second} for {audience}'\n")
    with pytest.raises(PrefgenError, match="unknown placeholder"):
        load_constitution(path)


def test_sampling_is_deterministic_per_pair_whatever_the_order(tmp_path):
    c = load_constitution(write(tmp_path, GOOD.replace("per_pair: 1", "per_pair: 1")))
    ids = [f"pair-{i}" for i in range(50)]
    forward = {i: [p.id for p in sample_principles(c, i)] for i in ids}
    backward = {i: [p.id for p in sample_principles(c, i)] for i in reversed(ids)}
    assert forward == backward


def test_sampling_follows_the_weights(tmp_path):
    c = load_constitution(write(tmp_path, GOOD))  # harmless weight 2, honest weight 1
    counts = Counter(sample_principles(c, f"pair-{i}")[0].id for i in range(3000))
    assert 0.62 < counts["harmless"] / 3000 < 0.72  # expected 2/3


def test_zero_weight_principles_are_never_drawn(tmp_path):
    c = load_constitution(write(tmp_path, GOOD.replace("    weight: 2.0\n", "    weight: 0\n")))
    assert {sample_principles(c, f"p{i}")[0].id for i in range(200)} == {"honest"}


def test_ultrafeedback_principle_lists_load_as_a_constitution():
    path = SHARED / "constitutions" / "ultrafeedback_principles.json"
    if not path.exists():
        pytest.skip("../shared/constitutions is not present")
    c = load_constitution(path)
    categories = Counter(p.category for p in c.principles)
    assert set(categories) == {"helpfulness", "harmlessness", "honesty", "truthfulness", "verbalized_calibration"}
    assert sum(categories.values()) == len(c.principles) > 20
