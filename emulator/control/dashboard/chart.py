"""The neurons-per-hour bar chart as a self-contained SVG string (no script, no external styles)."""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT = 480, 170
LEFT, RIGHT, TOP, BOTTOM = 46, 8, 12, 26
BAR = "#2f5fb3"  # 6.3:1 on white
NOW = "#17305c"
GRID = "#c9ced6"
INK = "#3d4451"  # axis labels: 9.6:1 on white
XMLNS = ' xmlns="http://www.w3.org/2000/svg"'


def fmt_neurons(value: float) -> str:
    """`12.5`, `1,234.57`, `10,000`: at most two decimals, as the page's script prints them."""
    return f"{round(value, 2):,.2f}".rstrip("0").rstrip(".")


def hourly_svg(
    hours: list[tuple[int, float]], *, now_hour: int | None = None, standalone: bool = True,
    day: str = "today",
) -> str:
    """A 24-bar chart of one UTC day (`day`: "today" or an ISO date); every bar carries a <title> so
    hovering reads its value.

    Inlined in HTML (`standalone=False`) it needs no namespace declaration: the parser supplies it.
    """
    peak = max((n for _, n in hours), default=0.0)
    total = sum(n for _, n in hours)
    top = _nice_ceiling(peak)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / 24
    if peak > 0:
        busiest = max(hours, key=lambda h: h[1])[0]
        on = day if day == "today" else f"on {day}"
        summary = (f"{fmt_neurons(total)} neurons {on}; busiest hour {busiest:02d}:00 UTC "
                   f"with {fmt_neurons(peak)}.")
    else:
        summary = "No neurons used yet today." if day == "today" else f"No neurons used on {day}."
    parts = [
        f'<svg{XMLNS if standalone else ""} viewBox="0 0 {WIDTH} {HEIGHT}" class="hourly-chart" '
        f'role="img" aria-labelledby="hourly-title hourly-desc" font-family="system-ui, sans-serif" '
        f'font-size="11">',
        f'<title id="hourly-title">Neurons per UTC hour, {escape(day)}</title>',
        f'<desc id="hourly-desc">{escape(summary)}</desc>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}" '
                     f'stroke-width="1"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{INK}">'
                     f"{escape(_short(top * fraction))}</text>")
    for hour, neurons in hours:
        x = LEFT + hour * slot
        h = plot_h * neurons / top if top else 0.0
        if neurons > 0:
            h = max(h, 1.5)  # a call worth a fraction of a pixel still shows
        fill = NOW if hour == now_hour else BAR
        parts.append(
            f'<rect x="{x + 1.5:.1f}" y="{TOP + plot_h - h:.1f}" width="{slot - 3:.1f}" height="{h:.1f}" '
            f'fill="{fill}"><title>{hour:02d}:00 UTC: {escape(fmt_neurons(neurons))} neurons</title></rect>'
        )
        if hour % 3 == 0:
            parts.append(f'<text x="{x + slot / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" '
                         f'fill="{INK}">{hour:02d}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _nice_ceiling(value: float) -> float:
    """The axis top: 1, 2, 2.5 or 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 10.0
    step = 10 ** (len(str(int(value))) - 1) if value >= 1 else 0.1
    while True:
        for m in (1, 2, 2.5, 5, 10):
            if m * step >= value:
                return m * step
        step *= 10


def _short(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"
