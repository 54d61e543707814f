"""Table-driven tests for matrix-product converters."""

from __future__ import annotations

import onnx_ir as ir
import pytest
import torch

from compiler.conversion import convert_graph
from compiler.lowering import LoweringSettings, lower
from tests.compiler.conversion.harness import Fn, OpCase, check_case


def _r(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    if dtype.is_floating_point:
        return torch.randn(*shape).to(dtype)
    return torch.randint(-4, 5, shape, dtype=dtype)


class Linear(torch.nn.Module):
    def __init__(self, bias: bool = True, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 6, bias=bias, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


FP16 = {"atol": 2e-2, "rtol": 2e-2}

CASES = [
    # linear: 2-D input goes to Gemm, others to MatMul + Add
    OpCase("linear_2d", Linear(), [_r(3, 8)]),
    OpCase("linear_3d", Linear(), [_r(2, 3, 8)]),
    OpCase("linear_1d", Linear(), [_r(8)]),
    OpCase("linear_no_bias_2d", Linear(bias=False), [_r(3, 8)]),
    OpCase("linear_no_bias_4d", Linear(bias=False), [_r(2, 2, 3, 8)]),
    OpCase("linear_fp16_2d", Linear(dtype=torch.float16), [_r(3, 8, dtype=torch.float16)], **FP16),
    OpCase("linear_fp16_3d", Linear(dtype=torch.float16), [_r(2, 3, 8, dtype=torch.float16)], **FP16),
    OpCase("linear_weight_is_input", Fn(torch.nn.functional.linear), [_r(2, 3, 8), _r(6, 8), _r(6)]),
    OpCase(
        "linear_dynamic_batch_seq",
        Linear(),
        [_r(2, 16, 8)],
        dynamic=[{0: (1, 8), 1: (16, 512)}],
        more_inputs=[[_r(8, 512, 8)], [_r(1, 17, 8)]],
    ),
    OpCase("linear_dynamic_2d", Linear(), [_r(4, 8)], dynamic=[{0: (1, 64)}], more_inputs=[[_r(1, 8)]]),
    # addmm / baddbmm with alpha and beta
    OpCase("addmm", Fn(torch.addmm), [_r(5), _r(3, 4), _r(4, 5)]),
    OpCase("addmm_alpha_beta", Fn(lambda b, x, y: torch.addmm(b, x, y, beta=0.5, alpha=2.0)), [_r(3, 5), _r(3, 4), _r(4, 5)]),
    OpCase("addmm_beta0_ignores_nan", Fn(lambda b, x, y: torch.addmm(b, x, y, beta=0)), [torch.full((5,), float("nan")), _r(3, 4), _r(4, 5)]),
    OpCase("addmm_int64", Fn(lambda b, x, y: torch.addmm(b, x, y, beta=2, alpha=3)), [_r(3, 1, dtype=torch.int64), _r(3, 4, dtype=torch.int64), _r(4, 5, dtype=torch.int64)]),
    OpCase("addmm_fp16", Fn(torch.addmm), [_r(5, dtype=torch.float16), _r(3, 4, dtype=torch.float16), _r(4, 5, dtype=torch.float16)], **FP16),
    OpCase("addmm_dynamic", Fn(torch.addmm), [_r(5), _r(3, 4), _r(4, 5)], dynamic=[None, {0: (1, 16)}, None], more_inputs=[[_r(5), _r(9, 4), _r(4, 5)]]),
    OpCase("baddbmm", Fn(torch.baddbmm), [_r(2, 3, 5), _r(2, 3, 4), _r(2, 4, 5)]),
    OpCase("baddbmm_alpha_beta_broadcast", Fn(lambda b, x, y: torch.baddbmm(b, x, y, beta=0.25, alpha=-1.5)), [_r(5), _r(2, 3, 4), _r(2, 4, 5)]),
    OpCase("baddbmm_beta0", Fn(lambda b, x, y: torch.baddbmm(b, x, y, beta=0.0, alpha=2.0)), [torch.full((2, 3, 5), float("inf")), _r(2, 3, 4), _r(2, 4, 5)]),
    # mm / bmm / mv / dot
    OpCase("mm", Fn(torch.mm), [_r(3, 4), _r(4, 5)]),
    OpCase("mm_int64", Fn(torch.mm), [_r(3, 4, dtype=torch.int64), _r(4, 5, dtype=torch.int64)]),
    OpCase("mm_int32", Fn(torch.mm), [_r(3, 4, dtype=torch.int32), _r(4, 5, dtype=torch.int32)]),
    OpCase("mm_fp16", Fn(torch.mm), [_r(3, 4, dtype=torch.float16), _r(4, 5, dtype=torch.float16)], **FP16),
    OpCase("bmm", Fn(torch.bmm), [_r(2, 3, 4), _r(2, 4, 5)]),
    OpCase("bmm_dynamic", Fn(torch.bmm), [_r(2, 3, 4), _r(2, 4, 5)], dynamic=[{0: (1, 8)}, {0: (1, 8)}], more_inputs=[[_r(7, 3, 4), _r(7, 4, 5)]]),
    OpCase("mv", Fn(torch.mv), [_r(3, 4), _r(4)]),
    OpCase("dot", Fn(torch.dot), [_r(4), _r(4)]),
    OpCase("vdot", Fn(torch.vdot), [_r(4), _r(4)]),
    OpCase("dot_int64", Fn(torch.dot), [_r(4, dtype=torch.int64), _r(4, dtype=torch.int64)]),
    # matmul, every rank combination
    OpCase("matmul_1d_1d", Fn(torch.matmul), [_r(4), _r(4)]),
    OpCase("matmul_1d_2d", Fn(torch.matmul), [_r(4), _r(4, 5)]),
    OpCase("matmul_2d_1d", Fn(torch.matmul), [_r(3, 4), _r(4)]),
    OpCase("matmul_1d_3d", Fn(torch.matmul), [_r(4), _r(2, 4, 5)]),
    OpCase("matmul_3d_1d", Fn(torch.matmul), [_r(2, 3, 4), _r(4)]),
    OpCase("matmul_3d_2d", Fn(torch.matmul), [_r(2, 3, 4), _r(4, 5)]),
    OpCase("matmul_2d_3d", Fn(torch.matmul), [_r(3, 4), _r(2, 4, 5)]),
    OpCase("matmul_4d_3d_broadcast", Fn(torch.matmul), [_r(2, 1, 3, 4), _r(3, 4, 5)]),
    OpCase("matmul_4d_4d", Fn(torch.matmul), [_r(2, 3, 3, 4), _r(2, 3, 4, 5)]),
    OpCase("matmul_int64", Fn(torch.matmul), [_r(2, 3, 4, dtype=torch.int64), _r(4, 5, dtype=torch.int64)]),
    OpCase("matmul_fp16", Fn(torch.matmul), [_r(2, 3, 4, dtype=torch.float16), _r(2, 4, 5, dtype=torch.float16)], **FP16),
    OpCase(
        "matmul_dynamic_attention_scores",
        Fn(lambda q, k: q @ k.transpose(-1, -2)),
        [_r(2, 4, 16, 8), _r(2, 4, 16, 8)],
        dynamic=[{0: (1, 8), 2: (16, 512)}, {0: (1, 8), 2: (16, 512)}],
        more_inputs=[[_r(3, 4, 33, 8), _r(3, 4, 33, 8)]],
    ),
    # einsum
    OpCase("einsum_bmm", Fn(lambda a, b: torch.einsum("bij,bjk->bik", a, b)), [_r(2, 3, 4), _r(2, 4, 5)]),
    OpCase("einsum_spaces_upper", Fn(lambda a, b: torch.einsum("b iJ, b Jk -> b ik", a, b)), [_r(2, 3, 4), _r(2, 4, 5)]),
    OpCase("einsum_implicit", Fn(lambda a, b: torch.einsum("ij,jk", a, b)), [_r(3, 4), _r(4, 5)]),
    OpCase("einsum_implicit_upper_lower", Fn(lambda a, b: torch.einsum("aB,Bc", a, b)), [_r(3, 4), _r(4, 5)]),
    OpCase("einsum_ellipsis", Fn(lambda a, b: torch.einsum("...ij,...jk->...ik", a, b)), [_r(2, 2, 3, 4), _r(2, 2, 4, 5)]),
    OpCase("einsum_outer", Fn(lambda a, b: torch.einsum("i,j->ij", a, b)), [_r(3), _r(4)]),
    OpCase("einsum_single_transpose_sum", Fn(lambda a: torch.einsum("ijk->ki", a)), [_r(2, 3, 4)]),
    OpCase("einsum_three_operands", Fn(lambda a, b, c: torch.einsum("ij,jk,kl->il", a, b, c)), [_r(2, 3), _r(3, 4), _r(4, 5)]),
    OpCase("einsum_int64", Fn(lambda a, b: torch.einsum("ij,jk->ik", a, b)), [_r(3, 4, dtype=torch.int64), _r(4, 5, dtype=torch.int64)]),
    OpCase("einsum_fp16", Fn(lambda a, b: torch.einsum("ij,jk->ik", a, b)), [_r(3, 4, dtype=torch.float16), _r(4, 5, dtype=torch.float16)], **FP16),
    OpCase(
        "einsum_dynamic",
        Fn(lambda a, b: torch.einsum("bhld,bhsd->bhls", a, b)),
        [_r(2, 2, 5, 4), _r(2, 2, 5, 4)],
        dynamic=[{0: (1, 8)}, {0: (1, 8)}],
        more_inputs=[[_r(6, 2, 5, 4), _r(6, 2, 5, 4)]],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_matmul_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


def _lowered_ops(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[ir.Node]:
    program = torch.export.export(module.eval(), inputs)
    _, gm, _ = lower(program, LoweringSettings())
    return list(convert_graph(gm).model.graph)


def test_linear_on_2d_input_is_one_gemm_reading_the_stored_weight() -> None:
    nodes = _lowered_ops(Linear(), (_r(3, 8),))
    assert [n.op_type for n in nodes] == ["Gemm"]
    assert nodes[0].attributes["transB"].value == 1


def test_linear_on_3d_input_transposes_only_the_initializer() -> None:
    nodes = _lowered_ops(Linear(), (_r(2, 3, 8),))
    assert [n.op_type for n in nodes] == ["Transpose", "MatMul", "Add"]
    assert nodes[0].inputs[0] is not None and nodes[0].inputs[0].is_initializer()


def test_matmul_and_einsum_arrive_whole() -> None:
    assert [n.op_type for n in _lowered_ops(Fn(torch.matmul), (_r(2, 1, 3, 4), _r(3, 4, 5)))] == ["MatMul"]
    einsum = Fn(lambda a, b: torch.einsum("bij,bjk->bik", a, b))
    assert [n.op_type for n in _lowered_ops(einsum, (_r(2, 3, 4), _r(2, 4, 5)))] == ["Einsum"]
