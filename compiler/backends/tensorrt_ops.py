"""What TensorRT's ONNX parser accepts: operators, element types, and documented restrictions.

The data follows the operator support matrix that onnx-tensorrt publishes for TensorRT 10.0 and
10.1 (ONNX opsets 9 to 20). It is plain data so that the partitioner can ask for the supported op
set on machines where TensorRT is not installed, and so that a model the parser would reject is
refused before the (slow, GPU-bound) build with a message that names the node and the fix.

Element types are ONNX ``TensorProto`` names. The parser casts DOUBLE down to FLOAT, so a DOUBLE
tensor is checked as FLOAT.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

# The opsets TensorRT 10.0/10.1 documents. Newer opsets are not refused by the parser, but it then
# imports ops with the semantics it knows, which may silently differ.
MIN_OPSET = 9
MAX_OPSET = 20
DOCUMENTED_VERSION = "10.1"

# Ops whose value is folded into the engine must be constant at build time; TensorRT accepts an
# initializer or a ``Constant`` node for those inputs.
TOPK_MAX_K = 3840

_F = "FLOAT FLOAT16 BFLOAT16"
_FI = _F + " INT32 INT64"
_FIB = _FI + " BOOL"
_BOOL = "BOOL"

_RESIZE_COORDINATE_MODES = frozenset(
    {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
)
_RESIZE_MODES = frozenset({"nearest", "linear"})
_RESIZE_NEAREST_MODES = frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"})


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    graphs: list[onnx.GraphProto] = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            graphs.append(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            graphs.extend(attr.graphs)
    return graphs


class GraphView:
    """What node checks need to know about the graph around a node: constants, types, shapes
    and which values something consumes."""

    def __init__(self, graph: onnx.GraphProto, outer: GraphView | None = None) -> None:
        self.graph = graph
        self.outer = outer
        self._initializers = {t.name: t for t in graph.initializer}
        self._constant_nodes = {
            n.output[0]: n
            for n in graph.node
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx")
        }
        self._types: dict[str, onnx.TypeProto] = {}
        for info in (*graph.input, *graph.value_info, *graph.output):
            self._types.setdefault(info.name, info.type)
        self._consumed = {name for n in graph.node for name in n.input if name}
        self._consumed.update(o.name for o in graph.output)
        # A subgraph may read any value of the enclosing graphs by name.
        pending = [sub for node in graph.node for sub in _subgraphs(node)]
        while pending:
            sub = pending.pop()
            self._consumed.update(name for n in sub.node for name in n.input if name)
            self._consumed.update(o.name for o in sub.output)
            pending.extend(s for n in sub.node for s in _subgraphs(n))

    def is_constant(self, name: str) -> bool:
        if name in self._initializers or name in self._constant_nodes:
            return True
        return self.outer.is_constant(name) if self.outer is not None else False

    def constant_value(self, name: str) -> np.ndarray | None:
        """The value of a constant input, or None when it is not constant or not a plain tensor."""
        if name in self._initializers:
            return numpy_helper.to_array(self._initializers[name])
        node = self._constant_nodes.get(name)
        if node is not None:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
                if attr.name == "value_int":
                    return np.asarray(attr.i, dtype=np.int64)
                if attr.name == "value_ints":
                    return np.asarray(list(attr.ints), dtype=np.int64)
                if attr.name == "value_float":
                    return np.asarray(attr.f, dtype=np.float32)
                if attr.name == "value_floats":
                    return np.asarray(list(attr.floats), dtype=np.float32)
            return None
        return self.outer.constant_value(name) if self.outer is not None else None

    def elem_type(self, name: str) -> str | None:
        if name in self._initializers:
            return onnx.TensorProto.DataType.Name(self._initializers[name].data_type)
        node = self._constant_nodes.get(name)
        if node is not None:
            for attr in node.attribute:
                if attr.name == "value":
                    return onnx.TensorProto.DataType.Name(attr.t.data_type)
                if attr.name in ("value_int", "value_ints"):
                    return "INT64"
                if attr.name in ("value_float", "value_floats"):
                    return "FLOAT"
            return None
        type_proto = self._types.get(name)
        if (
            type_proto is not None
            and type_proto.HasField("tensor_type")
            and type_proto.tensor_type.elem_type
        ):
            return onnx.TensorProto.DataType.Name(type_proto.tensor_type.elem_type)
        return self.outer.elem_type(name) if self.outer is not None else None

    def shape(self, name: str) -> list[int | str] | None:
        """Dims of a value (ints, or the symbol for a dynamic dim), or None when unknown."""
        if name in self._initializers:
            return list(self._initializers[name].dims)
        type_proto = self._types.get(name)
        if type_proto is None or not type_proto.tensor_type.HasField("shape"):
            return self.outer.shape(name) if self.outer is not None else None
        return [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in type_proto.tensor_type.shape.dim
        ]

    def is_consumed(self, name: str) -> bool:
        return bool(name) and name in self._consumed


NodeCheck = Callable[[onnx.NodeProto, GraphView], "str | None"]


@dataclass(frozen=True)
class OpSupport:
    """One ONNX op the parser imports: the element types of its main data input (``typed_input``,
    None when the op's types describe no single input), the documented restriction in words,
    and a check that finds a violation of that restriction in a node."""

    dtypes: frozenset[str]
    restriction: str = ""
    check: NodeCheck | None = None
    typed_input: int | None = 0


# ---------------------------------------------------------------------------------------- checks
def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _input(node: onnx.NodeProto, index: int) -> str:
    return node.input[index] if len(node.input) > index else ""


def _constant_input(index: int, what: str) -> NodeCheck:
    def check(node: onnx.NodeProto, view: GraphView) -> str | None:
        name = _input(node, index)
        if name and not view.is_constant(name):
            return f"input {what} must be an initializer or Constant, but {name!r} is computed"
        return None

    return check


def _unused_outputs(*indices: int, what: str) -> NodeCheck:
    def check(node: onnx.NodeProto, view: GraphView) -> str | None:
        for index in indices:
            if len(node.output) > index and view.is_consumed(node.output[index]):
                return f"output {what} is not supported, but {node.output[index]!r} is used"
        return None

    return check


def _all(*checks: NodeCheck) -> NodeCheck:
    def check(node: onnx.NodeProto, view: GraphView) -> str | None:
        for one in checks:
            problem = one(node, view)
            if problem:
                return problem
        return None

    return check


def _pooling(node: onnx.NodeProto, view: GraphView) -> str | None:
    kernel = _attr(node, "kernel_shape")
    if isinstance(kernel, list) and len(kernel) not in (2, 3):
        return f"only 2D or 3D pooling is supported, not {len(kernel)}D"
    dilations = _attr(node, "dilations")
    if isinstance(dilations, list) and any(d != 1 for d in dilations):
        return f"dilations must be all ones, not {dilations}"
    return None


def _zero_point(index: int, what: str) -> NodeCheck:
    def check(node: onnx.NodeProto, view: GraphView) -> str | None:
        name = _input(node, index)
        if not name:
            return None
        value = view.constant_value(name)
        if value is None or np.any(value.astype(np.float64) != 0):
            return f"{what} must be a constant zero"
        return None

    return check


def _resize(node: onnx.NodeProto, view: GraphView) -> str | None:
    coordinate = _text(_attr(node, "coordinate_transformation_mode", "half_pixel"))
    if coordinate not in _RESIZE_COORDINATE_MODES:
        return f"coordinate_transformation_mode {coordinate!r} is not supported ({', '.join(sorted(_RESIZE_COORDINATE_MODES))})"
    mode = _text(_attr(node, "mode", "nearest"))
    if mode not in _RESIZE_MODES:
        return f"mode {mode!r} is not supported (nearest, linear)"
    nearest = _text(_attr(node, "nearest_mode", "round_prefer_floor"))
    if mode == "nearest" and nearest not in _RESIZE_NEAREST_MODES:
        return f"nearest_mode {nearest!r} is not supported ({', '.join(sorted(_RESIZE_NEAREST_MODES))})"
    policy = _text(_attr(node, "keep_aspect_ratio_policy", "stretch"))
    if policy != "stretch":
        return f"keep_aspect_ratio_policy {policy!r} is not supported (stretch)"
    if _attr(node, "antialias", 0):
        return "antialias is not supported"
    axes = _attr(node, "axes")
    scales = _input(node, 2)
    if isinstance(axes, list) and scales and not view.is_constant(scales):
        rank = view.shape(node.input[0])
        if axes != list(range(len(axes))) or (rank is not None and len(axes) != len(rank)):
            return "with computed scales, axes must be 0, 1, ..., rank - 1"
    return None


def _topk(node: onnx.NodeProto, view: GraphView) -> str | None:
    if _attr(node, "sorted", 1) != 1:
        return "sorted must be 1"
    k = view.constant_value(_input(node, 1))
    if k is not None and int(np.asarray(k).reshape(-1)[0]) >= TOPK_MAX_K:
        return f"K must be less than {TOPK_MAX_K}, not {int(np.asarray(k).reshape(-1)[0])}"
    return None


def _dropout(node: onnx.NodeProto, view: GraphView) -> str | None:
    name = _input(node, 2)
    if not name:
        return None
    value = view.constant_value(name)
    if value is None or bool(np.asarray(value).reshape(-1)[0]):
        return "training_mode must be a constant False"
    return None


def _lstm(node: onnx.NodeProto, view: GraphView) -> str | None:
    if _attr(node, "input_forget", 0) != 0:
        return "input_forget must be 0"
    if _attr(node, "layout", 0) != 0:
        return "layout must be 0"
    return None


def _scatter_nd(node: onnx.NodeProto, view: GraphView) -> str | None:
    reduction = _text(_attr(node, "reduction", "none"))
    return None if reduction == "none" else f"reduction {reduction!r} is not supported"


def _constant(node: onnx.NodeProto, view: GraphView) -> str | None:
    for attr in node.attribute:
        if attr.name in ("sparse_value", "value_string", "value_strings"):
            return f"attribute {attr.name} is not supported"
    return None


def _static_input(node: onnx.NodeProto, view: GraphView) -> str | None:
    shape = view.shape(_input(node, 0))
    if shape is not None and any(not isinstance(d, int) for d in shape):
        return "the input must have static dimensions"
    return None


def _rank4_input(node: onnx.NodeProto, view: GraphView) -> str | None:
    shape = view.shape(_input(node, 0))
    if shape is not None and len(shape) != 4:
        return f"the input must be 4D, not {len(shape)}D"
    return None


_CAST_TARGETS = frozenset(
    {"FLOAT", "DOUBLE", "FLOAT16", "BFLOAT16", "INT32", "INT64", "UINT8", "BOOL"}
)


def _cast(node: onnx.NodeProto, view: GraphView) -> str | None:
    target = _attr(node, "to")
    if isinstance(target, int):
        name = onnx.TensorProto.DataType.Name(target)
        if name not in _CAST_TARGETS:
            return f"casting to {name} is not supported ({', '.join(sorted(_CAST_TARGETS))})"
    return None


def _reduce(node: onnx.NodeProto, view: GraphView) -> str | None:
    return _constant_input(1, "axes")(node, view)


# ------------------------------------------------------------------------------------- the table
def _op(
    dtypes: str, restriction: str = "", check: NodeCheck | None = None, typed_input: int | None = 0
) -> OpSupport:
    return OpSupport(frozenset(dtypes.split()), restriction, check, typed_input)


_POOL = "2D or 3D pooling only; dilations must be all ones"
_AXES = "axes must be an initializer"

SUPPORTED_OPS: dict[str, OpSupport] = {
    "Abs": _op(_FI),
    "Acos": _op(_F),
    "Acosh": _op(_F),
    "Add": _op(_FI),
    "And": _op(_BOOL),
    "ArgMax": _op(_FI),
    "ArgMin": _op(_FI),
    "Asin": _op(_F),
    "Asinh": _op(_F),
    "Atan": _op(_F),
    "Atanh": _op(_F),
    "AveragePool": _op(_F, _POOL, _pooling),
    "BatchNormalization": _op(_F),
    "Cast": _op(_FIB + " UINT8", "casts to FP32/FP16/BF16/INT32/INT64/UINT8/BOOL only", _cast),
    "CastLike": _op(_FIB + " UINT8"),
    "Ceil": _op(_F),
    "Celu": _op(_F),
    "Clip": _op(_F),
    "Concat": _op(_FIB),
    "Constant": _op(
        _FIB, "sparse_value, value_string and value_strings are unsupported", _constant, None
    ),
    "ConstantOfShape": _op(_FIB, typed_input=None),
    "Conv": _op(_F),
    "ConvTranspose": _op(_F),
    "Cos": _op(_F),
    "Cosh": _op(_F),
    "CumSum": _op(_F, "axis must be an initializer", _constant_input(1, "axis")),
    "DeformConv": _op("FLOAT FLOAT16", "1D or 2D spatial input; symmetric pads"),
    "DepthToSpace": _op(_FI),
    "DequantizeLinear": _op(
        "INT8 FLOAT8E4M3FN INT4", "x_zero_point must be zero", _zero_point(2, "x_zero_point")
    ),
    "Div": _op(_FI),
    "Dropout": _op(_F, "training_mode must be a constant False", _dropout),
    "Einsum": _op(_F),
    "Elu": _op(_F),
    "Equal": _op(_FI),
    "Erf": _op(_F),
    "Exp": _op(_F),
    "Expand": _op(_FIB),
    "EyeLike": _op(_FIB, "input must have static dimensions", _static_input),
    "Flatten": _op(_FIB),
    "Floor": _op(_F),
    "Gather": _op(_FIB),
    "GatherElements": _op(_FIB),
    "GatherND": _op(_FIB),
    "Gelu": _op(_FI + " INT8"),
    "Gemm": _op(_F),
    "GlobalAveragePool": _op(_F),
    "GlobalLpPool": _op(_F),
    "GlobalMaxPool": _op(_F),
    "Greater": _op(_FI),
    "GreaterOrEqual": _op(_FI),
    "GridSample": _op("FLOAT FLOAT16", "input must be 4D", _rank4_input),
    "GroupNormalization": _op(_F),
    "GRU": _op(_F, "bidirectional GRUs need the same activations in both directions"),
    "HardSigmoid": _op(_F),
    "HardSwish": _op(_F),
    "Hardmax": _op(_F, "the axis dimension must be known at build time"),
    "Identity": _op(_FIB),
    "If": _op(
        _FIB, "both branches' outputs must have the same rank and different names", typed_input=None
    ),
    "ImageScaler": _op(_F),
    "InstanceNormalization": _op(_F),
    "IsInf": _op(_F),
    "IsNaN": _op(_FI),
    "LayerNormalization": _op(
        _F, "only the first output Y is supported", _unused_outputs(1, 2, what="Mean/InvStdDev")
    ),
    "LeakyRelu": _op(_F),
    "Less": _op(_FI),
    "LessOrEqual": _op(_FI),
    "Log": _op(_F),
    "LogSoftmax": _op(_F),
    "Loop": _op(
        _FIB, "scan outputs need a static length; carried shapes must not change", typed_input=None
    ),
    "LRN": _op(_F),
    "LSTM": _op(_F, "input_forget and layout must be 0", _lstm),
    "LpNormalization": _op(_F),
    "LpPool": _op(_F, "dilations must be all ones", _pooling),
    "MatMul": _op(_F),
    "Max": _op(_FI),
    "MaxPool": _op(
        _F,
        _POOL + "; the Indices output is unsupported",
        _all(_pooling, _unused_outputs(1, what="Indices")),
    ),
    "Mean": _op(_FI + " FLOAT8E4M3FN"),
    "MeanVarianceNormalization": _op(_F),
    "Min": _op(_FI),
    "Mish": _op("FLOAT FLOAT16"),
    "Mod": _op(_FI),
    "Mul": _op(_FI),
    "Neg": _op(_FI),
    "NonMaxSuppression": _op("FLOAT FLOAT16"),
    "NonZero": _op("FLOAT FLOAT16"),
    "Not": _op(_BOOL),
    "OneHot": _op(_FIB, "depth must be an initializer", _constant_input(1, "depth"), typed_input=2),
    "Or": _op(_BOOL),
    "Pad": _op(_FI, _AXES, _constant_input(3, "axes")),
    "ParametricSoftplus": _op(_F),
    "Pow": _op(_F),
    "PRelu": _op(_F),
    "QuantizeLinear": _op(_F, "y_zero_point must be zero", _zero_point(2, "y_zero_point")),
    "RandomNormal": _op(_F, typed_input=None),
    "RandomNormalLike": _op(_F, typed_input=None),
    "RandomUniform": _op(_F, typed_input=None),
    "RandomUniformLike": _op(_F, typed_input=None),
    "Range": _op(_FI),
    "Reciprocal": _op(_F),
    "ReduceL1": _op(_FI, _AXES, _reduce),
    "ReduceL2": _op(_FI, _AXES, _reduce),
    "ReduceLogSum": _op(_FI, _AXES, _reduce),
    "ReduceLogSumExp": _op(_FI, _AXES, _reduce),
    "ReduceMax": _op(_FI, _AXES, _reduce),
    "ReduceMean": _op(_FI, _AXES, _reduce),
    "ReduceMin": _op(_FI, _AXES, _reduce),
    "ReduceProd": _op(_FI, _AXES, _reduce),
    "ReduceSum": _op(_FI, _AXES, _reduce),
    "ReduceSumSquare": _op(_FI, _AXES, _reduce),
    "Relu": _op(_FI),
    "Reshape": _op(_FIB),
    "Resize": _op(
        _F,
        "coordinate modes half_pixel/pytorch_half_pixel/tf_half_pixel_for_nn/asymmetric/align_corners; "
        "modes nearest/linear; aspect ratio policy stretch; no antialiasing",
        _resize,
    ),
    "ReverseSequence": _op(_FIB),
    "RNN": _op(_F, "bidirectional RNNs need the same activations in both directions"),
    "RoiAlign": _op("FLOAT FLOAT16"),
    "Round": _op(_F),
    "ScaledTanh": _op(_F),
    "Scan": _op(_F, typed_input=None),
    "Scatter": _op(_FI),
    "ScatterElements": _op(_FI),
    "ScatterND": _op(_FI, "reduction is not supported", _scatter_nd),
    "Selu": _op(_F),
    "Shape": _op(_FIB),
    "Shrink": _op(_FI),
    "Sigmoid": _op(_F),
    "Sign": _op(_FI),
    "Sin": _op(_F),
    "Sinh": _op(_F),
    "Size": _op(_FIB),
    "Slice": _op(_FIB, _AXES, _constant_input(3, "axes")),
    "Softmax": _op(_F),
    "Softplus": _op(_F),
    "Softsign": _op(_F),
    "SpaceToDepth": _op(_FI),
    "Split": _op(_FIB),
    "Sqrt": _op(_F),
    "Squeeze": _op(_FIB, _AXES, _constant_input(1, "axes")),
    "Sub": _op(_FI),
    "Sum": _op(_FI),
    "Tan": _op(_F),
    "Tanh": _op(_F),
    "ThresholdedRelu": _op(_F),
    "Tile": _op(_FIB),
    "TopK": _op(_FI, f"sorted must be 1; K must be less than {TOPK_MAX_K}", _topk),
    "Transpose": _op(_FIB),
    "Trilu": _op(_FIB),
    "Unsqueeze": _op(_FIB, "axes must be a constant", _constant_input(1, "axes")),
    "Upsample": _op(_F),
    "Where": _op(_FIB, typed_input=1),
    "Xor": _op(_BOOL),
}

SUPPORTED_OP_NAMES: frozenset[str] = frozenset(SUPPORTED_OPS)


# ------------------------------------------------------------------------------------ model check
def _walk(
    graph: onnx.GraphProto, view: GraphView, path: str
) -> Iterator[tuple[onnx.NodeProto, GraphView, str]]:
    for index, node in enumerate(graph.node):
        label = f"{path}node {node.name or index!r} ({node.op_type})"
        yield node, view, label
        for sub in _subgraphs(node):
            yield from _walk(sub, GraphView(sub, view), f"{label} / {sub.name or 'body'}: ")


def check_model(model: onnx.ModelProto) -> list[str]:
    """Every reason TensorRT's ONNX parser would refuse ``model``, one line each (empty: none).

    Checks the opset, that each node's op is supported in the default domain, the documented
    element types of its data input where the graph records them, and the documented
    attribute/constant-input restrictions."""
    problems = []
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    version = opsets.get("ai.onnx")
    if version is not None and not MIN_OPSET <= version <= MAX_OPSET:
        problems.append(
            f"ONNX opset {version} is outside the opsets TensorRT {DOCUMENTED_VERSION} documents "
            f"({MIN_OPSET}-{MAX_OPSET}); export with opset {MAX_OPSET}"
        )
    for node, view, label in _walk(model.graph, GraphView(model.graph), ""):
        if node.domain not in ("", "ai.onnx"):
            problems.append(
                f"{label}: custom domain {node.domain!r} needs a TensorRT plugin; run this op in PyTorch"
            )
            continue
        support = SUPPORTED_OPS.get(node.op_type)
        if support is None:
            problems.append(
                f"{label}: TensorRT's ONNX parser has no importer for {node.op_type}; run it in PyTorch"
            )
            continue
        if support.typed_input is not None and len(node.input) > support.typed_input:
            elem = view.elem_type(node.input[support.typed_input])
            if elem == "DOUBLE":
                elem = "FLOAT"
            if elem is not None and elem not in support.dtypes:
                problems.append(
                    f"{label}: element type {elem} is not supported (supported: {', '.join(sorted(support.dtypes))})"
                )
                continue
        if support.check is not None:
            problem = support.check(node, view)
            if problem:
                problems.append(f"{label}: {problem}")
    return problems
