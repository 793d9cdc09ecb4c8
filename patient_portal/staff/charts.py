"""The completion-over-time chart, drawn on the server as SVG: no chart library in the browser.

The chart is an image with a title and a description; the same figures are in a table next to it
for screen readers and for anyone who prefers numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from markupsafe import Markup, escape

from patient_portal.staff.dashboard import ChartPoint

WIDTH = 640
HEIGHT = 260
LEFT = 48
RIGHT = 12
TOP = 16
BOTTOM = 40


def completion_chart(
    points: list[ChartPoint],
    *,
    title: str,
    description: str,
    percent: Callable[[float], str],
    week_label: Callable[[date], str],
    chart_id: str = "completion-chart",
) -> Markup:
    """Weekly completion rate as bars (a week with nothing due has no bar), 0–100 % axis."""
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>',
    ]
    for fraction in (0, 0.5, 1):
        y = TOP + plot_height * (1 - fraction)
        parts.append(
            f'<line class="chart-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="chart-axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(percent(fraction))}</text>"
        )
    count = max(len(points), 1)
    slot = plot_width / count
    label_every = max(1, round(count / 6))
    for index, point in enumerate(points):
        x = LEFT + index * slot
        if point.rate is not None:
            bar = plot_height * point.rate
            parts.append(
                f'<rect class="chart-bar" x="{x + slot * 0.15:.1f}" y="{TOP + plot_height - bar:.1f}" '
                f'width="{slot * 0.7:.1f}" height="{max(bar, 1):.1f}"/>'
            )
        if index % label_every == 0:
            parts.append(
                f'<text class="chart-axis" x="{x + slot / 2:.1f}" y="{HEIGHT - BOTTOM + 18}" '
                f'text-anchor="middle">{escape(week_label(point.week_start))}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text part above is escaped
