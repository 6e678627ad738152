"""prefgen: RLAIF preference labelling, a DuckDB store of every judgement, and TRL reward models."""

__version__ = "0.1.0"
