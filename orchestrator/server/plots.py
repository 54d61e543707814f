"""The geometry of the dashboard's plots, drawn as inline SVG by the templates.

No chart library and no script: a plot is a list of rectangles computed here, on the server, so
the page shows the same thing with scripts off and a test can count the bars.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: The phases a build goes through, in order, each with a colour of its own (``phase-N``);
#: a phase not listed here gets a colour picked from its name.
KNOWN_PHASES = (
    "fetch", "frontend", "lowering", "partitioning", "conversion", "build", "save", "upload", "validate",
)
PALETTE_SIZE = 10


def phase_order(phase: str) -> tuple[int, str]:
    """Sort key: the known phases in build order, then the others by name."""
    known = KNOWN_PHASES.index(phase) if phase in KNOWN_PHASES else len(KNOWN_PHASES)
    return known, phase


def phase_class(phase: str) -> str:
    if phase in KNOWN_PHASES:
        return f"phase-{KNOWN_PHASES.index(phase)}"
    return f"phase-{zlib.crc32(phase.encode()) % PALETTE_SIZE}"


@dataclass(frozen=True)
class Segment:
    """One phase on a job's timeline: ``x`` and ``width`` in pixels."""

    phase: str
    seconds: float
    x: float
    width: float
    css_class: str


def timeline(phase_timings: Mapping[str, float], scale_s: float, width: float) -> list[Segment]:
    """A job's phases end to end, in the order they ran; ``scale_s`` seconds fill ``width``
    pixels, so that the jobs on one page share a scale. Every phase is at least a pixel wide
    (a 1 ms phase is still there to hover)."""
    segments = []
    x = 0.0
    per_second = width / scale_s if scale_s > 0 else 0.0
    for phase, seconds in phase_timings.items():
        seconds = max(0.0, float(seconds))
        w = max(1.0, seconds * per_second)
        segments.append(Segment(phase, seconds, round(x, 2), round(w, 2), phase_class(phase)))
        x += w
    return segments


def timeline_scale(all_timings: Sequence[Mapping[str, float]]) -> float:
    """The longest total among the jobs shown (at least a millisecond)."""
    totals = [sum(max(0.0, float(v)) for v in timings.values()) for timings in all_timings]
    return max([0.001, *totals])


@dataclass(frozen=True)
class Bar:
    """One bar of a horizontal bar chart: ``row`` is its line, ``y`` and ``height`` in pixels."""

    row: int
    series: str
    value: float
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class BarChart:
    """A horizontal bar chart: one line per label, one bar per series that has a value there.

    ``reference`` (e.g. 1.0 for a speedup) is drawn as a vertical line at ``reference_x``."""

    labels: list[str]
    series: list[str]
    bars: list[Bar]
    missing: list[tuple[int, float]]  # (row, y) of lines with no value at all: drawn as "–"
    width: float
    height: float
    plot_x: float
    plot_width: float
    row_height: float
    maximum: float
    reference_x: float | None
    unit: str

    def ticks(self, count: int = 4) -> list[tuple[float, float]]:
        """(x, value) of the axis ticks."""
        if self.maximum <= 0:
            return []
        return [
            (round(self.plot_x + self.plot_width * i / count, 2), self.maximum * i / count)
            for i in range(count + 1)
        ]


def bar_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    unit: str,
    reference: float | None = None,
    width: float = 640,
    label_width: float = 240,
    row_height: float = 26,
) -> BarChart:
    """``series`` maps a series name to one value (or None: not measured) per label."""
    names = list(series)
    values = [v for vs in series.values() for v in vs if v is not None and v >= 0]
    maximum = max([*values, reference or 0.0, 0.0])
    plot_x = label_width
    plot_width = width - label_width - 60  # room for the value printed after a bar
    gap = 4.0
    bar_height = (row_height - 2 * gap) / max(1, len(names))
    bars: list[Bar] = []
    missing: list[tuple[int, float]] = []
    for row in range(len(labels)):
        top = row * row_height + gap
        found = False
        for index, name in enumerate(names):
            value = series[name][row]
            if value is None or value < 0:
                continue
            found = True
            w = plot_width * value / maximum if maximum > 0 else 0.0
            bars.append(
                Bar(row, name, value, plot_x, round(top + index * bar_height, 2), round(max(1.0, w), 2), round(bar_height - 1, 2))
            )
        if not found:
            missing.append((row, round(top + row_height / 2, 2)))
    reference_x = None
    if reference is not None and maximum > 0:
        reference_x = round(plot_x + plot_width * reference / maximum, 2)
    return BarChart(
        labels=list(labels),
        series=names,
        bars=bars,
        missing=missing,
        width=width,
        height=len(labels) * row_height + 20,  # and the axis
        plot_x=plot_x,
        plot_width=plot_width,
        row_height=row_height,
        maximum=maximum,
        reference_x=reference_x,
        unit=unit,
    )
