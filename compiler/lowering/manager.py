"""Runs the pass list; a failure names the failing pass and the ones that ran before it."""

from __future__ import annotations

import time
from collections.abc import Sequence

from torch import fx

from compiler.errors import LoweringError
from compiler.lowering.passes import LoweringSettings
from compiler.lowering.pipeline import PASSES, Pass


def run_passes(
    gm: fx.GraphModule, settings: LoweringSettings, passes: Sequence[Pass] = PASSES
) -> tuple[fx.GraphModule, dict[str, float]]:
    timings: dict[str, float] = {}
    done: list[str] = []
    modified = False
    for pass_fn in passes:
        name = pass_fn.__name__
        start = time.perf_counter()
        try:
            result = pass_fn(gm, settings)
        except Exception as exc:
            ran = ", ".join(done) or "none"
            raise LoweringError(
                f"lowering pass {name} failed ({type(exc).__name__}: {exc}); passes that ran before it: {ran}"
            ) from exc
        gm = result.graph_module
        if result.modified:
            gm.graph.lint()
            modified = True
        timings[name] = time.perf_counter() - start
        done.append(name)
    if modified:
        # once, not after every pass: passes work on the graph, and generating a large graph's
        # Python code takes a tenth of a second each time
        gm.recompile()
    return gm, timings
