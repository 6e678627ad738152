"""Constitution files: format, loading with line-precise errors, and seeded principle sampling."""

from prefgen.constitution.load import load_constitution
from prefgen.constitution.model import Constitution, Principle, Sampling
from prefgen.constitution.sample import sample_principles

__all__ = ["Constitution", "Principle", "Sampling", "load_constitution", "sample_principles"]
