"""Options built from config fields: one default, one help text, one rule, for pydantic and dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import click
import pytest
from click.testing import CliRunner
from pydantic import BaseModel, Field, model_validator

from prefgen.cli_options import config_from_options, option_from_field, range_text


class Settings(BaseModel):
    name: str = Field(description="What to call it.")
    ratio: float = Field(default=0.25, ge=0.0, lt=1.0, description="Share held out.")
    kind: Literal["x", "y"] = Field(default="x", description="Which kind.")
    verbose: bool = Field(default=True, description="Say more.")
    size: int | None = Field(default=None, gt=0, description="At most this many.")

    @model_validator(mode="after")
    def _y_needs_a_size(self) -> Settings:
        if self.kind == "y" and self.size is None:
            raise ValueError("--kind y needs --size")
        return self


@dataclass
class TrlStyle:
    epochs: float = field(default=1.0, metadata={"help": "Passes over the data."})


def command_for(model, *options):
    @click.command()
    def run(**values):
        click.echo(repr(config_from_options(model, **values)))

    for option in reversed(options):
        run = option(run)
    return run


SETTINGS = command_for(Settings, option_from_field(Settings, "name", "--name"),
                       option_from_field(Settings, "ratio", "--ratio"), option_from_field(Settings, "kind", "--kind"),
                       option_from_field(Settings, "verbose", "--verbose"), option_from_field(Settings, "size", "--size"))


def test_defaults_reach_the_model_unchanged():
    result = CliRunner().invoke(SETTINGS, ["--name", "n"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == repr(Settings(name="n"))


def test_field_without_default_is_a_required_option():
    result = CliRunner().invoke(SETTINGS, [])
    assert result.exit_code == 2 and "Missing option '--name'" in result.output


def test_help_shows_description_default_and_choices():
    text = CliRunner().invoke(SETTINGS, ["--help"]).output
    assert "Share held out." in text and "[default: 0.25]" in text
    assert "[x|y]" in text and "--verbose / --no-verbose" in text


def test_value_outside_the_range_names_option_and_range():
    result = CliRunner().invoke(SETTINGS, ["--name", "n", "--ratio", "1"])
    assert result.exit_code == 2
    assert "Invalid value for '--ratio': must be in [0, 1) (got 1.0)" in result.output


def test_rule_across_fields_is_a_usage_error():
    result = CliRunner().invoke(SETTINGS, ["--name", "n", "--kind", "y"])
    assert result.exit_code == 2 and result.output.splitlines()[-1] == "Error: --kind y needs --size"


def test_dataclass_fields_give_default_and_help_from_metadata():
    run = command_for(TrlStyle, option_from_field(TrlStyle, "epochs", "--epochs"))
    assert CliRunner().invoke(run, ["--epochs", "2"]).output.strip() == repr(TrlStyle(epochs=2.0))
    assert "Passes over the data." in CliRunner().invoke(run, ["--help"]).output


@pytest.mark.parametrize(("field_name", "text"), [("ratio", "in [0, 1)"), ("size", "> 0"), ("kind", None)])
def test_range_text_reads_pydantic_bounds(field_name, text):
    assert range_text(tuple(Settings.model_fields[field_name].metadata)) == text


def test_options_declared_by_hand_are_checked_when_the_model_is_built():
    @click.command()
    @click.option("--ratio", type=float, default=0.25)
    def run(ratio):
        config_from_options(Settings, name="n", ratio=ratio)

    result = CliRunner().invoke(run, ["--ratio", "2"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: Invalid value for '--ratio': must be in [0, 1) (got 2.0)"
