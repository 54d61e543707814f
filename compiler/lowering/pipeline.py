"""The lowering pipeline: one ordered list of passes, read top to bottom."""

from __future__ import annotations

from collections.abc import Callable

from torch import fx

from compiler.lowering.passes import LoweringSettings, PassResult
from compiler.lowering.passes.eliminate_dead_code import eliminate_dead_code
from compiler.lowering.passes.flag_torch_executed_modules import flag_torch_executed_modules
from compiler.lowering.passes.fold_constants import fold_constants
from compiler.lowering.passes.remove_assertions import remove_assertions
from compiler.lowering.passes.remove_noop_ops import remove_noop_ops

Pass = Callable[[fx.GraphModule, LoweringSettings], PassResult]

PASSES: list[Pass] = [
    # 1. clean up what torch.export leaves for eager execution
    remove_assertions,
    remove_noop_ops,
    # 2. precompute everything that depends only on weights
    fold_constants,
    eliminate_dead_code,
    # 3. mark what the user wants kept in PyTorch, for the partitioner
    flag_torch_executed_modules,
]
