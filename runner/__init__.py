"""Batch load and evaluation runner for conversation simulations."""

__version__ = "0.1.0"
