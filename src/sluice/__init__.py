"""Sluice: a streaming gateway and operations center for LLM responses."""

__version__ = "0.1.0"
