"""``python -m runner view [RESULTS_DIR]``: a local, read-only web app over a results directory.

- ``source``: the I/O shell. Finds the runs of a results directory (by listing it, never by
  joining a name into a path), tells a running run from a finished one, and hands out lazy
  Polars scans of its tables (final tables when finalized, committed part files otherwise).
- ``queries``: pure functions from those LazyFrames to what a page shows (runs listing, run
  figures, the filtered case list, one job, the comparison of two runs).
- ``app``: the FastAPI routes and Jinja2 templates (autoescaped); ``server``: the entry point.
"""
