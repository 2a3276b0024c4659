"""The printed report: one row per (scheme, attack)."""

from __future__ import annotations

from dataclasses import dataclass

HOLDS, FALLS, RESIDUAL = "holds", "falls", "residual risk"


@dataclass(frozen=True)
class Row:
    scheme: str
    attack: str
    expected: str
    observed: str
    verdict: str  # holds, falls, residual risk


def render(rows: list[Row]) -> str:
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("scheme", "attack")]
    widths = [max(w, h) for w, h in zip(widths, (6, 6), strict=True)]
    lines = [
        f"{'scheme':<{widths[0]}}  {'attack':<{widths[1]}}  verdict        expected -> observed"
    ]
    for r in rows:
        lines.append(
            f"{r.scheme:<{widths[0]}}  {r.attack:<{widths[1]}}  {r.verdict:<13}  "
            f"{r.expected} -> {r.observed}"
        )
    return "\n".join(lines)
