"""``python -m bench``: the load benchmark (``bench.suite``)."""

from bench.suite import main

raise SystemExit(main())
