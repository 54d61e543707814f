"""End-to-end: real models compile whole and compute what eager PyTorch computes.

Models come from ``benchmarks.zoo`` (random-weight `transformers` models and a CNN trained here on
scikit-learn's digits). Each model is exported and compiled once with
``require_full_compilation``; fp32 outputs on fresh inputs must reach cosine >= 0.9999 and
max |diff| <= 1e-3 x max |reference| (issues 2 and 4).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

import compiler
from benchmarks import zoo
from compiler import InputMismatchError

STATIC_MODELS = (
    "digits_cnn",
    "resnet50",
    "mobilenet_v2",
    "bert_base",
    "vit_b16",
    "convnext_tiny",
    "efficientnet_b0",
    "gpt2_small",
    "distilbert",
)
# kept compiled for the whole module: the save/load tests reuse them after the other models ran
KEEP = frozenset({"digits_cnn", "distilbert"})


@dataclass
class Compiled:
    case: zoo.ModelCase
    module: compiler.CompiledModule


class CompiledModels:
    """One compile per model. Large models are dropped once the next one is asked for (tests on
    the same model run one after another), so the process holds a couple of models at a time."""

    def __init__(self) -> None:
        self._done: dict[str, Compiled | BaseException] = {}

    def get(self, name: str) -> Compiled:
        if name not in self._done:
            for other in [k for k in self._done if k not in KEEP]:
                del self._done[other]
            gc.collect()
            try:
                self._done[name] = _compile(zoo.build(name))
            except Exception as exc:  # remembered, so later tests on the model fail fast
                self._done[name] = exc
        result = self._done[name]
        if isinstance(result, BaseException):
            raise result
        return result


def _compile(case: zoo.ModelCase, **partitioning: Any) -> Compiled:
    program = zoo.export(case)
    spec = compiler.CompileSpec.parse(zoo.compile_spec(case, require_full_compilation=True, **partitioning))
    return Compiled(case, compiler.compile(program, spec))


@pytest.fixture(scope="module")
def models() -> Iterator[CompiledModels]:
    cache = CompiledModels()
    yield cache
    del cache
    gc.collect()


def eager(case: zoo.ModelCase, inputs: tuple[torch.Tensor, ...]) -> Any:
    with torch.inference_mode():
        return case.module(*inputs)


def assert_matches(actual: Any, expected: Any) -> None:
    """The issues' fp32 criteria, after checking the reference says something."""
    zoo.assert_not_degenerate(expected)
    problems = zoo.compare(actual, expected)
    assert not problems, "; ".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("name", STATIC_MODELS)
def test_model_compiles_whole_and_matches_eager(models: CompiledModels, name: str) -> None:
    compiled = models.get(name)
    report = compiled.module.report
    assert report.fully_compiled, report.fallback_ops
    assert report.num_engines == 1
    inputs = compiled.case.fresh_inputs(seed=1)
    with torch.inference_mode():
        actual = compiled.module(*inputs)
    assert_matches(actual, eager(compiled.case, inputs))


def test_digits_cnn_compiled_accuracy_equals_eager(models: CompiledModels) -> None:
    compiled = models.get("digits_cnn")
    assert compiled.case.accuracy is not None and compiled.case.held_out is not None
    images, labels = compiled.case.held_out
    assert compiled.case.accuracy > 0.9  # the CNN really learned the digits
    # compiled for batch 1: classify the held-out images one at a time
    with torch.inference_mode():
        predictions = torch.cat([compiled.module(image[None]).argmax(dim=1) for image in images])
    assert float((predictions == labels).float().mean()) == compiled.case.accuracy


@pytest.mark.parametrize("name", sorted(KEEP))
def test_saved_and_loaded_program_gives_the_same_outputs(models: CompiledModels, name: str, tmp_path: Path) -> None:
    compiled = models.get(name)
    path = compiler.save(compiled.module, tmp_path / f"{name}.engine.pt2")
    loaded = compiler.load(path)
    inputs = compiled.case.fresh_inputs(seed=2)
    with torch.inference_mode():
        before = compiled.module(*inputs)
        after = loaded(*inputs)
    torch.testing.assert_close(after, before, atol=0, rtol=0)
    assert_matches(after, eager(compiled.case, inputs))


# ---------------------------------------------------------------------- dynamic shapes
@pytest.fixture(scope="module")
def bert_dynamic() -> Compiled:
    return _compile(zoo.bert_base_dynamic())


@pytest.mark.slow
@pytest.mark.parametrize(("batch", "seq"), [(1, 16), (4, 384), (3, 77)])
def test_dynamic_bert_compiled_once_serves_shapes_in_range(bert_dynamic: Compiled, batch: int, seq: int) -> None:
    assert bert_dynamic.module.report.fully_compiled, bert_dynamic.module.report.fallback_ops
    inputs = bert_dynamic.case.fresh_inputs(seed=batch * 1000 + seq, batch=batch, seq=seq)
    with torch.inference_mode():
        actual = bert_dynamic.module(*inputs)
    assert actual.shape == (batch, seq, 768)
    assert_matches(actual, eager(bert_dynamic.case, inputs))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("batch", "seq", "message"),
    [
        (9, 16, r"input 'input_ids' dimension 0 is 9, outside the compiled range 1\.\.8"),
        (1, 513, r"input 'input_ids' dimension 1 is 513, outside the compiled range 16\.\.512"),
        (1, 8, r"input 'input_ids' dimension 1 is 8, outside the compiled range 16\.\.512"),
    ],
)
def test_dynamic_bert_rejects_shapes_out_of_range_naming_input_dim_and_range(
    bert_dynamic: Compiled, batch: int, seq: int, message: str
) -> None:
    inputs = bert_dynamic.case.fresh_inputs(seed=0, batch=batch, seq=seq)
    with pytest.raises(InputMismatchError, match=message):
        bert_dynamic.module(*inputs)


@pytest.mark.slow
def test_dynamic_bert_saved_and_loaded_keeps_its_ranges(bert_dynamic: Compiled, tmp_path: Path) -> None:
    loaded = compiler.load(compiler.save(bert_dynamic.module, tmp_path / "bert_dynamic.engine.pt2"))
    for batch, seq in ((1, 16), (2, 200)):
        inputs = bert_dynamic.case.fresh_inputs(seed=seq, batch=batch, seq=seq)
        with torch.inference_mode():
            torch.testing.assert_close(loaded(*inputs), bert_dynamic.module(*inputs), atol=0, rtol=0)
    with pytest.raises(InputMismatchError, match=r"input 'input_ids' dimension 0 is 9, outside the compiled range 1\.\.8"):
        loaded(*bert_dynamic.case.fresh_inputs(seed=0, batch=9, seq=16))


# ---------------------------------------------------------------------- PyTorch fallback
class SortedFeatures(torch.nn.Module):
    """Convolutions around a sort along the channel dimension, which stays in PyTorch."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
        self.head = torch.nn.Sequential(torch.nn.Conv2d(8, 4, 1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = torch.sort(h, dim=1, descending=True).values
        return self.head(h)


def test_model_with_an_op_kept_in_pytorch_compiles_and_matches_eager() -> None:
    torch.manual_seed(0)
    module = zoo.reinit_vision_weights(SortedFeatures()).eval()
    x = torch.randn(1, 3, 6, 6)
    spec = compiler.CompileSpec.parse(
        {"partitioning": {"min_block_size": 1, "torch_executed_ops": ["aten.sort.default"]}}
    )
    compiled = compiler.compile(torch.export.export(module, (x,)), spec)
    assert compiled.report.fallback_ops == {"aten.sort.default": 1}
    assert compiled.report.num_engines == 2  # before and after the sort
    fresh = torch.randn(1, 3, 6, 6)
    with torch.inference_mode():
        assert_matches(compiled(fresh), module(fresh))


def test_submodule_kept_in_pytorch_runs_there_and_the_cnn_still_classifies(models: CompiledModels) -> None:
    case = models.get("digits_cnn").case
    partial = _compile_partial(case, torch_executed_modules=["features.3"])
    assert partial.report.fallback_ops == {"aten.convolution.default": 1}
    assert partial.report.num_engines == 2
    inputs = case.fresh_inputs(seed=3)
    with torch.inference_mode():
        assert_matches(partial(*inputs), eager(case, inputs))


def _compile_partial(case: zoo.ModelCase, **partitioning: Any) -> compiler.CompiledModule:
    spec = compiler.CompileSpec.parse(zoo.compile_spec(case, min_block_size=1, **partitioning))
    return compiler.compile(zoo.export(case), spec)
