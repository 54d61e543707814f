"""The conversion context: the ONNX graph under construction and helpers converters share.

Converters are thin functions of ``(ctx, node, args, kwargs)``. ``args``/``kwargs`` are the fx
node's arguments with every fx node replaced by what it converted to (an ``ir.Value``, a tuple of
them for multi-output ops, or a 0-d int64 ``ir.Value`` for a symbolic integer). Python constants
stay as they are. A converter returns an ``ir.Value`` (or a tuple for multi-output ops).

Every emitted value carries its ONNX element type where the context can know it, so that
converters can apply PyTorch's type promotion before emitting strict ONNX ops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir
import torch
from torch import fx

OPSET = 20

TORCH_TO_ONNX: dict[torch.dtype, ir.DataType] = {
    torch.float32: ir.DataType.FLOAT,
    torch.float16: ir.DataType.FLOAT16,
    torch.bfloat16: ir.DataType.BFLOAT16,
    torch.float64: ir.DataType.DOUBLE,
    torch.int64: ir.DataType.INT64,
    torch.int32: ir.DataType.INT32,
    torch.int16: ir.DataType.INT16,
    torch.int8: ir.DataType.INT8,
    torch.uint8: ir.DataType.UINT8,
    torch.bool: ir.DataType.BOOL,
}
ONNX_TO_TORCH: dict[ir.DataType, torch.dtype] = {v: k for k, v in TORCH_TO_ONNX.items()}

# Ops whose single output has the element type of their first input.
_SAME_TYPE_OPS = frozenset(
    """Abs Add And Ceil Clip Concat Cos CumSum Div Dropout Elu Erf Exp Expand Flatten Floor Gather
    GatherElements GatherND Gelu Gemm HardSigmoid HardSwish Identity LeakyRelu Log LogSoftmax MatMul
    Max MaxPool AveragePool Min Mish Mod Mul Neg Or Pad Pow Reciprocal ReduceMax ReduceMean ReduceMin
    ReduceProd ReduceSum ReduceL2 Relu Reshape Resize Round ScatterElements ScatterND Sigmoid Sign Sin
    Slice Softmax Softplus Sqrt Squeeze Sub Tanh Tile Transpose Trilu Unsqueeze Where Xor Conv
    ConvTranspose BatchNormalization LayerNormalization InstanceNormalization GroupNormalization
    GlobalAveragePool GlobalMaxPool Not Einsum Tan Asin Acos Atan Sinh Cosh Asinh Acosh Atanh
    BitwiseAnd BitwiseOr BitwiseXor BitwiseNot Range ReduceLogSumExp Selu Celu ThresholdedRelu
    PRelu ReduceSumSquare ReduceL1 Range""".split()
)
_BOOL_OPS = frozenset("Equal Greater GreaterOrEqual Less LessOrEqual Not And Or Xor IsNaN IsInf".split())
_INT64_OPS = frozenset("Shape Size ArgMax ArgMin NonZero".split())


# Every emitted ONNX node records the fx target it was emitted for under this metadata key, so
# that tests can hold each converter to the op set its registry entry declares (the partitioner
# trusts that declaration) and a reader can trace an ONNX node back to its ATen node.
ORIGIN_KEY = "pkg.orchestrate.target"


class ConversionError(Exception):
    """A node could not be converted; the partition it belongs to falls back to PyTorch."""


def onnx_dtype(dtype: torch.dtype) -> ir.DataType:
    try:
        return TORCH_TO_ONNX[dtype]
    except KeyError:
        raise ConversionError(f"dtype {dtype} has no ONNX equivalent here") from None


def torch_dtype(dtype: ir.DataType) -> torch.dtype:
    return ONNX_TO_TORCH[dtype]


def sym_dim(dim: Any) -> int | str:
    """A static int, or the printed sympy expression of a symbolic dimension."""
    if isinstance(dim, int):
        return dim
    if isinstance(dim, torch.SymInt):
        expr = dim.node.expr
        if expr.is_number:
            return int(expr)
        return str(expr)
    raise ConversionError(f"unsupported dimension {dim!r}")


def ir_shape(shape: Sequence[Any]) -> ir.Shape:
    return ir.Shape([sym_dim(d) for d in shape])


def fake_of(node: Any) -> Any:
    """The FakeTensor (or SymInt / scalar) recorded by torch.export for ``node``."""
    if isinstance(node, fx.Node):
        return node.meta.get("val")
    return node


class ConversionContext:
    def __init__(self, name: str = "engine") -> None:
        self.name = name
        self.tape = ir.tape.Tape()
        self.inputs: list[ir.Value] = []
        self.outputs: list[ir.Value] = []
        # fx node -> what it converted to
        self.env: dict[fx.Node, Any] = {}
        self._const_cache: dict[tuple[Any, ...], ir.Value] = {}
        self._shape_cache: dict[int, ir.Value] = {}
        # symbol name -> (input value, dim index) for resolving symbolic integers
        self.symbol_sources: dict[str, tuple[ir.Value, int]] = {}
        # the fx target being converted; recorded on every node emitted meanwhile (ORIGIN_KEY)
        self.origin: str | None = None
        self._counter = 0

    # ------------------------------------------------------------------ emission
    def op(
        self, op_type: str, *inputs: ir.Value | None, dtype: torch.dtype | None = None, **attrs: Any
    ) -> ir.Value:
        """Emit one single-output ONNX node. ``dtype`` annotates the output type when the
        context cannot infer it (e.g. ``Cast`` infers it from ``to``)."""
        attributes = {k: v for k, v in attrs.items() if v is not None}
        out = self.tape.op(op_type, _trim(inputs), attributes or None)
        out.name = self._fresh(op_type)
        self._mark_origin(out)
        self._annotate(out, op_type, inputs, attributes, dtype)
        return out

    def op_multi(
        self,
        op_type: str,
        *inputs: ir.Value | None,
        num_outputs: int,
        dtypes: Sequence[torch.dtype | None] | None = None,
        **attrs: Any,
    ) -> Sequence[ir.Value]:
        attributes = {k: v for k, v in attrs.items() if v is not None}
        outs = self.tape.op_multi_out(op_type, _trim(inputs), attributes or None, num_outputs=num_outputs)
        self._mark_origin(outs[0])
        for i, out in enumerate(outs):
            out.name = self._fresh(op_type)
            given = dtypes[i] if dtypes is not None else None
            if given is not None:
                out.dtype = onnx_dtype(given)
            elif i == 0:
                self._annotate(out, op_type, inputs, attributes, None)
        return outs

    def _annotate(
        self,
        out: ir.Value,
        op_type: str,
        inputs: Sequence[ir.Value | None],
        attributes: Mapping[str, Any],
        dtype: torch.dtype | None,
    ) -> None:
        if dtype is not None:
            out.dtype = onnx_dtype(dtype)
        elif op_type == "Cast":
            out.dtype = ir.DataType(attributes["to"])
        elif op_type in _BOOL_OPS:
            out.dtype = ir.DataType.BOOL
        elif op_type in _INT64_OPS:
            out.dtype = ir.DataType.INT64
        elif op_type == "Where" and len(inputs) > 1 and inputs[1] is not None:
            if inputs[1].dtype is not None:
                out.dtype = inputs[1].dtype
        elif op_type in _SAME_TYPE_OPS and inputs and inputs[0] is not None and inputs[0].dtype is not None:
            out.dtype = inputs[0].dtype

    def _mark_origin(self, out: ir.Value) -> None:
        producer = out.producer()
        if self.origin is not None and producer is not None:
            producer.metadata_props[ORIGIN_KEY] = self.origin

    def _fresh(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix.lower()}_{self._counter}"

    # ------------------------------------------------------------------ values
    def dtype(self, value: ir.Value) -> torch.dtype:
        if value.dtype is None:
            raise ConversionError(f"element type of {value.name} is unknown")
        return torch_dtype(value.dtype)

    def const(self, value: Any, dtype: torch.dtype | None = None, name: str | None = None) -> ir.Value:
        """An initializer holding ``value`` (Python scalar or list, numpy array, torch tensor).

        Small constants are shared, so converters may ask for the same one freely.
        """
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu()
            if dtype is not None:
                tensor = tensor.to(dtype)
            if tensor.dtype == torch.bfloat16:
                array = tensor.view(torch.int16).numpy().view(np.uint16)
                ir_tensor = ir.tensor(array, dtype=ir.DataType.BFLOAT16)
                out_dtype = torch.bfloat16
            else:
                array = tensor.numpy()
                ir_tensor = ir.tensor(array)
                out_dtype = tensor.dtype
        else:
            torch_dt = dtype or _infer_dtype(value)
            array = np.asarray(value, dtype=_numpy_dtype(torch_dt))
            if torch_dt == torch.bfloat16:
                array = torch.tensor(value, dtype=torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
                ir_tensor = ir.tensor(array, dtype=ir.DataType.BFLOAT16)
            else:
                ir_tensor = ir.tensor(array)
            out_dtype = torch_dt
        key = None
        if array.size <= 16:
            key = (str(out_dtype), array.shape, array.tobytes())
            cached = self._const_cache.get(key)
            if cached is not None:
                return cached
        value_obj = self.tape.initializer(ir_tensor, name=name or self._fresh("const"))
        value_obj.dtype = onnx_dtype(out_dtype)
        value_obj.shape = ir.Shape(list(array.shape))
        if key is not None:
            self._const_cache[key] = value_obj
        return value_obj

    def scalar_like(self, value: Any, like: ir.Value | torch.dtype) -> ir.Value:
        """A 0-d constant with the element type of ``like``."""
        dtype = like if isinstance(like, torch.dtype) else self.dtype(like)
        return self.const(value, dtype)

    def cast(self, value: ir.Value, dtype: torch.dtype) -> ir.Value:
        if value.dtype == onnx_dtype(dtype):
            return value
        return self.op("Cast", value, to=onnx_dtype(dtype))

    def as_tensor(self, value: Any, dtype: torch.dtype) -> ir.Value:
        """An ``ir.Value`` of ``dtype`` from a tensor value or a Python scalar."""
        if isinstance(value, ir.Value):
            return self.cast(value, dtype)
        return self.const(value, dtype)

    def ints(self, values: Sequence[int]) -> ir.Value:
        return self.const(list(values), torch.int64)

    def shape(self, value: ir.Value) -> ir.Value:
        cached = self._shape_cache.get(id(value))
        if cached is None:
            cached = self.op("Shape", value)
            self._shape_cache[id(value)] = cached
        return cached

    def dim(self, value: ir.Value, index: int) -> ir.Value:
        """The size of one dimension of ``value`` as a 1-D int64 tensor of length one."""
        return self.op("Gather", self.shape(value), self.ints([index]), axis=0)

    def shape_tensor(self, dims: Sequence[Any]) -> ir.Value:
        """A 1-D int64 shape from a mix of Python ints and 0-d/1-d int64 values."""
        if all(isinstance(d, int) for d in dims):
            return self.ints(list(dims))
        pieces: list[ir.Value] = []
        run: list[int] = []
        for d in dims:
            if isinstance(d, int):
                run.append(d)
                continue
            if run:
                pieces.append(self.ints(run))
                run = []
            pieces.append(self.to_1d(d))
        if run:
            pieces.append(self.ints(run))
        return pieces[0] if len(pieces) == 1 else self.op("Concat", *pieces, axis=0)

    def to_1d(self, value: ir.Value) -> ir.Value:
        value = self.cast(value, torch.int64)
        if value.shape is not None and len(value.shape) == 1:
            return value
        return self.op("Reshape", value, self.ints([1]))

    # ------------------------------------------------------------------ metadata
    def node_dtype(self, node: fx.Node, index: int | None = None) -> torch.dtype:
        val = fake_of(node)
        if index is not None:
            val = val[index]
        if isinstance(val, torch.Tensor):
            return val.dtype
        if isinstance(val, (bool, torch.SymBool)):
            return torch.bool
        if isinstance(val, (int, torch.SymInt)):
            return torch.int64
        if isinstance(val, (float, torch.SymFloat)):
            return torch.float32
        raise ConversionError(f"{node} has no recorded dtype")

    def node_shape(self, node: fx.Node) -> list[int | str]:
        return [sym_dim(d) for d in fake_of(node).shape]

    def node_rank(self, node: Any) -> int:
        val = fake_of(node)
        return val.dim() if isinstance(val, torch.Tensor) else 0

    def is_static(self, node: fx.Node) -> bool:
        return all(isinstance(d, int) for d in self.node_shape(node))


def _trim(inputs: Sequence[ir.Value | None]) -> list[ir.Value | None]:
    """Drop trailing absent optional inputs: ONNX Runtime 1.32 crashes the process on some ops
    (LayerNormalization) given a trailing empty input name."""
    values = list(inputs)
    while values and values[-1] is None:
        values.pop()
    return values


def _infer_dtype(value: Any) -> torch.dtype:
    flat = np.asarray(value)
    if flat.dtype == np.bool_:
        return torch.bool
    if np.issubdtype(flat.dtype, np.integer):
        return torch.int64
    return torch.float32


def _numpy_dtype(dtype: torch.dtype) -> Any:
    if dtype == torch.bfloat16:
        return np.float32
    return torch.empty((), dtype=dtype).numpy().dtype
