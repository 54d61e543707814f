"""The geometry behind the dashboard's SVG plots."""

from __future__ import annotations

import pytest

from orchestrator.server.plots import (
    KNOWN_PHASES,
    bar_chart,
    phase_class,
    phase_order,
    timeline,
    timeline_scale,
)


def test_timeline_lays_phases_end_to_end_on_a_shared_scale() -> None:
    timings = [{"fetch": 1.0, "build": 3.0}, {"fetch": 2.0, "build": 6.0, "validate": 2.0}]
    scale = timeline_scale(timings)
    assert scale == 10.0
    short, long = (timeline(t, scale, 200) for t in timings)
    assert [(s.phase, s.x, s.width) for s in short] == [("fetch", 0.0, 20.0), ("build", 20.0, 60.0)]
    assert sum(s.width for s in long) == pytest.approx(200)
    assert [s.css_class for s in long] == [phase_class("fetch"), phase_class("build"), phase_class("validate")]


def test_a_tiny_or_negative_phase_is_still_a_pixel_and_unknown_phases_get_a_stable_colour() -> None:
    (segment,) = timeline({"fetch": -1.0}, 10.0, 100)
    assert segment.width == 1.0 and segment.seconds == 0.0
    assert timeline({}, timeline_scale([{}]), 100) == []
    assert phase_class("fetch") == "phase-0" and len(set(map(phase_class, KNOWN_PHASES))) == len(KNOWN_PHASES)
    assert phase_class("a-new-phase") == phase_class("a-new-phase")
    assert sorted(["zeta", "validate", "alpha", "fetch"], key=phase_order) == ["fetch", "validate", "alpha", "zeta"]


def test_bar_chart_scales_to_the_largest_value_and_marks_lines_without_any() -> None:
    chart = bar_chart(
        ["a", "b", "c"], {"compiled": [1.0, None, 4.0], "eager": [2.0, None, None]}, unit="ms", width=400, label_width=100
    )
    assert chart.maximum == 4.0 and chart.plot_width == 240
    assert [(b.row, b.series, b.width) for b in chart.bars] == [
        (0, "compiled", 60.0), (0, "eager", 120.0), (2, "compiled", 240.0)
    ]
    assert [row for row, _ in chart.missing] == [1]
    # Two series share a line: the second bar sits below the first.
    first, second = chart.bars[:2]
    assert second.y >= first.y + first.height
    assert chart.ticks(4)[-1] == (340.0, 4.0)


def test_a_reference_line_fits_even_when_every_value_is_below_it() -> None:
    chart = bar_chart(["slow"], {"speedup": [0.5]}, unit="×", reference=1.0, width=400, label_width=100)
    assert chart.maximum == 1.0 and chart.reference_x == 340.0
    assert chart.bars[0].width == 120.0
    empty = bar_chart(["x"], {"speedup": [None]}, unit="×")
    assert empty.bars == [] and empty.ticks() == [] and empty.reference_x is None
