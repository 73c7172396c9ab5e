"""Deterministic SVG charts: the same figures give the same bytes (tests compare them), no script
inside (the pages' strict Content-Security-Policy holds), and each chart carries a title and a
description for screen readers; the pages show the same numbers as a table beside it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

ROW_HEIGHT = 28
LABEL_WIDTH = 180
BAR_WIDTH = 300
VALUE_WIDTH = 70


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None  # 0–1; None: nothing to show (drawn as a dash)
    text: str  # the value as the page writes it ("66.7 %")


def rate_bars(title: str, description: str, bars: Sequence[Bar]) -> str:
    """Horizontal bars from 0 to 100 %, one row per bar, with a line at 100 %."""
    return _bars(title, description, bars, target=True)


def amount_bars(title: str, description: str, amounts: Sequence[tuple[str, int, str]]) -> str:
    """Horizontal bars of whole amounts (label, amount, text), the largest filling the width;
    no target line."""
    largest = max((amount for _, amount, _ in amounts), default=0)
    bars = [
        Bar(label, amount / largest if largest > 0 else 0.0, text)
        for label, amount, text in amounts
    ]
    return _bars(title, description, bars, target=False)


def _bars(title: str, description: str, bars: Sequence[Bar], target: bool) -> str:
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    height = ROW_HEIGHT * max(len(bars), 1) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="chart-title chart-desc" '
        'class="chart">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{escape(description)}</desc>',
    ]
    for n, bar in enumerate(bars):
        y = 4 + n * ROW_HEIGHT
        middle = y + ROW_HEIGHT // 2
        parts.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{middle + 5}" text-anchor="end">'
            f"{escape(bar.label)}</text>"
        )
        parts.append(
            f'<rect x="{LABEL_WIDTH}" y="{y + 4}" width="{BAR_WIDTH}" height="{ROW_HEIGHT - 8}" '
            'class="track"/>'
        )
        if bar.value is not None:
            filled = round(BAR_WIDTH * min(max(bar.value, 0.0), 1.0))
            parts.append(
                f'<rect x="{LABEL_WIDTH}" y="{y + 4}" width="{filled}" '
                f'height="{ROW_HEIGHT - 8}" class="bar"/>'
            )
        parts.append(
            f'<text x="{LABEL_WIDTH + BAR_WIDTH + 8}" y="{middle + 5}">{escape(bar.text)}</text>'
        )
    if target:
        parts.append(
            f'<line x1="{LABEL_WIDTH + BAR_WIDTH}" y1="0" x2="{LABEL_WIDTH + BAR_WIDTH}" '
            f'y2="{height}" class="target"/>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
