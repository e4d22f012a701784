"""Load benchmark of the runner against the local API: ``make bench`` (``python -m bench``).

Every measurement runs in its own process (``bench.worker``) against a local API in another
(``python -m runner serve``), so CPU time and peak RSS are the client's alone. See
``bench/suite.py`` for the sections and docs/benchmarks.md for figures.
"""
