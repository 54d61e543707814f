"""The aotinductor backend on a real CUDA GPU (marker ``cuda``; skipped where there is none).

Run on the GPU machine with ``bash scripts/gpu-tests.sh``; README.md records the command and its
output, because CI has no GPU.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import compiler
from benchmarks import zoo
from compiler.errors import InputMismatchError

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run scripts/gpu-tests.sh on the GPU machine)"),
]

REPO = Path(__file__).resolve().parents[3]

# precision -> (minimum cosine, max |diff| / max |reference|) against eager fp32 with TF32 off
TOLERANCE = {"fp32": (0.99999, 2e-3), "fp16": (0.999, 3e-2), "bf16": (0.99, 8e-2)}


def cuda_spec(**keys: object) -> compiler.CompileSpec:
    return compiler.CompileSpec.parse({"backend": "aotinductor", "device": "cuda", **keys})


@pytest.fixture(autouse=True)
def _fp32_is_fp32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv1(x))
        y = torch.relu(self.conv2(y)).mean((2, 3))
        return self.head(y)


def _metrics(got: torch.Tensor, want: torch.Tensor) -> tuple[float, float]:
    got64, want64 = got.detach().double().cpu().flatten(), want.detach().double().cpu().flatten()
    cos = float(torch.nn.functional.cosine_similarity(got64, want64, dim=0))
    return cos, float((got64 - want64).abs().max() / want64.abs().max())


def _check(got: torch.Tensor, want: torch.Tensor, precision: str, eager: tuple[float, float] | None = None) -> None:
    """Within the precision's tolerance of fp32, or — for deep models whose reduced-precision
    error grows with depth — within twice the error of eager PyTorch in that precision."""
    min_cos, rel = TOLERANCE[precision]
    if eager is not None:
        min_cos, rel = min(min_cos, 1 - 2 * (1 - eager[0])), max(rel, 2 * eager[1])
    cos, err = _metrics(got, want)
    assert cos >= min_cos and err <= rel, f"{precision}: cosine {cos:.6f}, max|diff|/max|ref| {err:.3g} (eager {eager})"


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("name", ["resnet50", "bert_base"])
def test_model_matches_eager_within_its_precision(name: str, precision: str) -> None:
    case = zoo.build(name)
    with torch.no_grad():
        program = torch.export.export(case.module, case.example_inputs)
        reference = torch.utils._pytree.tree_leaves(case.module(*case.example_inputs))[0]
    zoo.assert_not_degenerate(reference)
    compiled = compiler.compile(program, cuda_spec(precision=precision))
    assert compiled.report.fallback_ops == {}, compiled.report.fallback_reasons
    with torch.no_grad():
        out = compiled(*(t.cuda() for t in case.example_inputs))
    got = torch.utils._pytree.tree_leaves(out)[0]
    assert got.is_cuda and got.dtype == reference.dtype  # calling convention and dtypes kept
    eager = None
    if precision != "fp32":  # what eager PyTorch itself gets in that precision, on the GPU
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        low = copy.deepcopy(case.module).to("cuda", dtype)
        with torch.no_grad():
            inputs = [t.to("cuda", dtype) if t.is_floating_point() else t.cuda() for t in case.example_inputs]
            eager = _metrics(torch.utils._pytree.tree_leaves(low(*inputs))[0].float(), reference)
    _check(got, reference, precision, eager)


def test_dynamic_batch_engine_serves_two_batch_sizes() -> None:
    model = ConvNet().eval()
    batch = torch.export.Dim("batch", min=1, max=16)
    program = torch.export.export(model, (torch.randn(4, 3, 32, 32),), dynamic_shapes=({0: batch},))
    compiled = compiler.compile(program, cuda_spec())
    for size in (2, 11):
        x = torch.randn(size, 3, 32, 32)
        _check(compiled(x.cuda()), model(x), "fp32")
    with pytest.raises(InputMismatchError, match="outside the compiled range 1..16"):
        compiled(torch.randn(17, 3, 32, 32, device="cuda"))


def test_tensors_stay_on_the_gpu_and_host_tensors_are_refused() -> None:
    model = ConvNet().eval()
    compiled = compiler.compile(torch.export.export(model, (torch.randn(1, 3, 32, 32),)), cuda_spec())
    out = compiled(torch.randn(1, 3, 32, 32, device="cuda"))
    assert out.device.type == "cuda"
    with pytest.raises(InputMismatchError, match="runs on cuda"):
        compiled(torch.randn(1, 3, 32, 32))


def test_saved_engine_loads_and_runs_in_a_new_process(tmp_path: Path) -> None:
    model = ConvNet().eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = compiler.compile(torch.export.export(model, (x,)), cuda_spec())
    path = compiler.save(compiled, tmp_path / "convnet.engine.pt2")
    torch.save({"x": x, "want": model(x).detach()}, tmp_path / "io.pt")
    # a fresh interpreter that imports nothing but the compiler (no onnxruntime first): the load
    # that once segfaulted in such processes must work
    script = textwrap.dedent(
        f"""
        import sys, torch
        import compiler
        assert "onnxruntime" not in sys.modules
        io = torch.load({str(tmp_path / 'io.pt')!r})
        loaded = compiler.load({str(path)!r})
        got = loaded(io["x"].cuda()).cpu()
        torch.testing.assert_close(got, io["want"], rtol=2e-3, atol=2e-4)
        print("loaded-ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", script],
        capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))},
        timeout=300,
    )
    assert result.returncode == 0 and "loaded-ok" in result.stdout, result.stderr[-3000:]


def test_pytorch_fallback_partition_between_two_gpu_engines() -> None:
    model = ConvNet().eval()
    x = torch.randn(2, 3, 32, 32)
    program = torch.export.export(model, (x,))
    compiled = compiler.compile(
        program, cuda_spec(partitioning={"min_block_size": 1, "torch_executed_ops": ["aten.mean.dim"]})
    )
    accelerated = [p for p in compiled.report.partitions if p["accelerated"]]
    assert len(accelerated) == 2 and len(compiled.engines) == 2
    assert compiled.report.fallback_ops == {"aten.mean.dim": 1}
    out = compiled(x.cuda())
    assert out.is_cuda
    _check(out, model(x), "fp32")


def test_cuda_graph_replay_matches_the_non_graphed_program() -> None:
    model = ConvNet().eval()
    program = torch.export.export(model, (torch.randn(1, 3, 32, 32),))
    plain = compiler.compile(program, cuda_spec())
    graphed = compiler.compile(program, cuda_spec(aotinductor={"cuda_graphs": True}))
    first, second = torch.randn(1, 3, 32, 32, device="cuda"), torch.randn(1, 3, 32, 32, device="cuda")
    out_first = graphed(first)
    out_second = graphed(second)  # a replay on new values
    torch.testing.assert_close(out_first, plain(first), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_second, plain(second), rtol=1e-5, atol=1e-6)
    assert not torch.equal(out_first, out_second)  # the first result was not overwritten
    assert len(graphed._graphs.graphs) == 1  # type: ignore[union-attr]


def test_cuda_graphs_over_a_program_with_fallback_code_and_dynamic_batch() -> None:
    model = ConvNet().eval()
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(model, (torch.randn(2, 3, 32, 32),), dynamic_shapes=({0: batch},))
    graphed = compiler.compile(
        program,
        cuda_spec(partitioning={"min_block_size": 1, "torch_executed_ops": ["aten.mean.dim"]}, aotinductor={"cuda_graphs": True}),
    )
    for size in (2, 5, 2):
        x = torch.randn(size, 3, 32, 32)
        _check(graphed(x.cuda()), model(x), "fp32")
    assert len(graphed._graphs.graphs) == 2  # type: ignore[union-attr]  # one per shape, reused


def test_reduced_precision_keeps_layers_out_of_the_engine_when_asked() -> None:
    # layers the user keeps in PyTorch (e.g. for accuracy) stay fp32 between fp16 engines
    model = ConvNet().eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = compiler.compile(
        torch.export.export(model, (x,)),
        cuda_spec(precision="fp16", partitioning={"min_block_size": 1, "torch_executed_modules": ["head"]}),
    )
    assert any(op.startswith("aten.linear") for op in compiled.report.fallback_ops)
    out = compiled(x.cuda())
    assert out.dtype == torch.float32
    _check(out, model(x), "fp16")


# ------------------------------------------------------------ the accuracy gate (issue 10)
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_engines_pass_their_gate(precision: str) -> None:
    model, x = ConvNet().eval(), torch.randn(2, 3, 32, 32)
    compiled = compiler.compile(torch.export.export(model, (x,)), cuda_spec(precision=precision), validate=True)
    gated = [r for r in compiled.report.validation if r["threshold"] is not None]
    assert {r["metric"] for r in gated} >= {"snr_db", "cosine_similarity"}
    assert all(r["passed"] for r in compiled.report.validation)
    assert compiled.report.kept_fp32 == []


def test_a_failing_fp16_gate_keeps_the_measured_nodes_in_fp32_and_passes() -> None:
    from tests.compiler.backends.test_aotinductor import Overflowing

    torch.manual_seed(0)
    model, x = Overflowing().eval(), torch.randn(4, 8)
    program = torch.export.export(model, (x,))
    spec = cuda_spec(precision="fp16", partitioning={"min_block_size": 1})
    # fp16 throughout: the Gram matrix overflows and the gate refuses the engine
    with pytest.raises(compiler.AccuracyGateError) as refused:
        compiler.compile(program, cuda_spec(precision="fp16", quantization={"max_retries": 0}), validate=True)
    assert any(not r.passed for r in refused.value.results)
    # with retries, the nodes measured as overflowing compute in fp32 inside the fp16 engine
    compiled = compiler.compile(program, spec, validate=True)
    kept = {name.split("/", 1)[1] for name in compiled.report.kept_fp32}
    # (how many of the overflowing chain must be kept depends on what Inductor fuses)
    assert "matmul" in kept and not kept & {"linear", "mul"}
    assert compiled.report.fallback_ops == {}  # one engine: nothing fell back to PyTorch
    _check(compiled(x.cuda()), model(x), "fp16")


def test_a_gate_the_engine_cannot_pass_raises_with_its_results() -> None:
    model, x = ConvNet().eval(), torch.randn(2, 3, 32, 32)
    spec = cuda_spec(precision="bf16", gate={"min_snr_db": 200.0}, quantization={"max_retries": 0})
    with pytest.raises(compiler.AccuracyGateError) as refused:
        compiler.compile(torch.export.export(model, (x,)), spec, validate=True)
    (failed,) = [r for r in refused.value.results if not r.passed]
    assert failed.metric == "snr_db" and failed.threshold == 200.0 and failed.value < 200.0
