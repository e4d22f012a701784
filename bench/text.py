"""The benchmarks' plain-text tables: one renderer for every section's side-by-side figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Column = tuple[str, str, str]
"""(key in a row, title, format): a missing or None value prints empty."""


def render_table(
    columns: Sequence[Column], rows: Sequence[Mapping[str, Any]], titles: Sequence[str] = ()
) -> str:
    """Left-aligned columns two spaces apart, a dashed rule under the titles."""
    cells = [list(titles) or [title for _, title, _ in columns]]
    for row in rows:
        cells.append(
            [fmt.format(row[key]) if row.get(key) is not None else "" for key, _, fmt in columns]
        )
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
