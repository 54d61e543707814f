"""Accuracy on real labelled data: int8 by static QDQ quantization, the gate, data files.

The model is a CNN trained here on scikit-learn's digits (benchmarks/zoo.py); the held-out
quarter is the validation data, and the training rows are the calibration data.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from safetensors.torch import save_file

import compiler
from benchmarks.zoo import ModelCase, digits_cnn
from compiler.backends import onnxruntime as ort_backend
from compiler.backends.base import Calibration

SPEC = {
    "inputs": [{"name": "x", "dtype": "float32", "min": [1, 1, 8, 8], "opt": [32, 1, 8, 8], "max": [64, 1, 8, 8]}],
}


@pytest.fixture(scope="module")
def digits() -> ModelCase:
    return digits_cnn()


@pytest.fixture(scope="module")
def held_out(digits: ModelCase) -> dict[str, torch.Tensor]:
    assert digits.held_out is not None
    images, labels = digits.held_out
    return {"x": images, "labels": labels}


@pytest.fixture(scope="module")
def calibration(digits: ModelCase, held_out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # rows the model was trained on (not the held-out ones): what a user would calibrate on
    from sklearn.datasets import load_digits

    images = torch.from_numpy((load_digits().images[:512] / 16.0).astype("float32")[:, None])
    return {"x": images}


def _example(case: ModelCase) -> tuple[torch.Tensor, ...]:
    # batch 4: an example at batch 1 would specialize the dynamic batch axis
    assert case.held_out is not None
    return (case.held_out[0][:4],)


def _spec(precision: str, **extra: Any) -> compiler.CompileSpec:
    return compiler.CompileSpec.parse({**SPEC, "precision": precision, **extra})


def _metric(compiled: compiler.CompiledModule, metric: str) -> dict[str, Any]:
    return next(r for r in compiled.report.validation if r["metric"] == metric)


def _has_qdq(compiled: compiler.CompiledModule) -> bool:
    for _, engine in compiled.engines.values():
        model = onnx.load_from_string(engine)
        if any(n.op_type == "QuantizeLinear" for n in model.graph.node):
            return True
    return False


# ---------------------------------------------------------------------- int8 within the gate
def test_int8_static_is_within_1_5_points_of_fp32_on_held_out_digits(
    digits: ModelCase, held_out: dict[str, torch.Tensor], calibration: dict[str, torch.Tensor]
) -> None:
    fp32 = compiler.compile(digits.module, _spec("fp32"), _example(digits), validate=True, validation_data=held_out)
    int8 = compiler.compile(
        digits.module, _spec("int8"), _example(digits),
        validate=True, validation_data=held_out, calibration_data=calibration,
    )
    fp32_acc = _metric(fp32, "task_accuracy")["value"]
    int8_acc = _metric(int8, "task_accuracy")["value"]
    reference = _metric(int8, "reference_accuracy")["value"]
    assert reference > 0.9, "the trained CNN should classify digits"
    assert fp32_acc == pytest.approx(reference)
    assert int8_acc >= fp32_acc - 0.015, (fp32_acc, int8_acc)
    assert _has_qdq(int8), "int8 must be static QDQ, convolutions included"
    assert int8.report.calibration == {"source": "data", "batches": 8}
    meta = next(iter(int8.engines.values()))[0]
    assert meta.extra["quantization"] == "static_qdq_per_channel"
    assert all(r["passed"] for r in int8.report.validation)
    metrics = {r["metric"] for r in int8.report.validation}
    assert {"max_abs_error", "mean_abs_error", "max_rel_error", "snr_db", "cosine_similarity",
            "top1_agreement", "top5_agreement", "task_accuracy"} <= metrics


def test_int8_without_data_calibrates_on_generated_inputs_with_a_recorded_seed(digits: ModelCase) -> None:
    compiled = compiler.compile(digits.module, _spec("int8", quantization={"seed": 7, "calibration_samples": 3}), _example(digits))
    assert compiled.report.calibration == {"source": "generated", "batches": 3, "seed": 7}
    assert _has_qdq(compiled)


def test_dynamic_int8_stays_available_and_needs_no_calibration(digits: ModelCase) -> None:
    compiled = compiler.compile(digits.module, _spec("int8", quantization={"method": "dynamic"}), _example(digits))
    assert compiled.report.calibration == {}
    assert not _has_qdq(compiled)


# ---------------------------------------------------------------------- a broken engine
def _corrupting(target: str | None) -> Any:
    """quantize_static_qdq, with the weight scale of one Conv (the first, or ``target``)
    multiplied by 50, unless that Conv was kept in fp32."""
    real = ort_backend.quantize_static_qdq

    def corrupt(model: Any, samples: Any, keep: Any) -> bytes:
        quantized = onnx.load_from_string(real(model, samples, keep))
        producers = {o: n for n in quantized.graph.node for o in n.output}
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        name = target or convs[0].name
        conv = next((n for n in quantized.graph.node if n.name == name), None)
        dq = producers.get(conv.input[1]) if conv is not None else None
        if dq is not None and dq.op_type == "DequantizeLinear":
            scale = next(i for i in quantized.graph.initializer if i.name == dq.input[1])
            array = onnx.numpy_helper.to_array(scale) * 50.0
            scale.CopyFrom(onnx.numpy_helper.from_array(array.astype(np.float32), scale.name))
        return bytes(quantized.SerializeToString())

    return corrupt


def test_engine_with_a_corrupted_scale_is_rejected_by_the_gate(
    digits: ModelCase, held_out: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ort_backend, "quantize_static_qdq", _corrupting(None))
    with pytest.raises(compiler.AccuracyGateError, match="task_accuracy") as caught:
        compiler.compile(
            digits.module, _spec("int8", quantization={"max_retries": 0}), _example(digits),
            validate=True, validation_data=held_out,
        )
    failing = [r for r in caught.value.results if not r.passed]
    assert [r.metric for r in failing] == ["task_accuracy"]
    assert failing[0].value < failing[0].threshold


def test_gate_retry_keeps_the_damaging_node_in_fp32_and_records_it(
    digits: ModelCase, held_out: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ort_backend, "quantize_static_qdq", _corrupting(None))
    compiled = compiler.compile(
        digits.module, _spec("int8"), _example(digits), validate=True, validation_data=held_out,
    )
    kept = compiled.spec.quantization.keep_fp32
    assert sorted(kept) == compiled.report.kept_fp32
    assert kept[0] == "fused_0/node_Conv_0", "the corrupted Conv is the first node kept in fp32"
    meta = next(iter(compiled.engines.values()))[0]
    assert meta.extra["kept_fp32"] == [k.split("/", 1)[1] for k in compiled.report.kept_fp32]
    assert all(r["passed"] for r in compiled.report.validation)


def test_node_ranking_puts_a_corrupted_conv_first(digits: ModelCase, monkeypatch: pytest.MonkeyPatch) -> None:
    program = torch.export.export(digits.module, _example(digits))
    compiled = compiler.compile(program, compiler.CompileSpec())
    fp32_onnx = next(iter(compiled.engines.values()))[1]
    model = onnx.load_from_string(fp32_onnx)
    model = ort_backend._prepare_for_quantization(model)
    ort_backend._name_nodes(model)
    second_conv = [n.name for n in model.graph.node if n.op_type == "Conv"][1]
    monkeypatch.setattr(ort_backend, "quantize_static_qdq", _corrupting(second_conv))
    samples = [{"x": digits.held_out[0][4 * i : 4 * i + 4]} for i in range(4)] if digits.held_out else []
    _, extra = ort_backend._quantize_int8_static(fp32_onnx, Calibration("p", samples, (), True))
    assert extra["node_sensitivity"][0][0] == second_conv


# ---------------------------------------------------------------------- data files
@pytest.fixture
def no_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Data errors must surface before any compile work starts."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("compile started before the data was checked")

    monkeypatch.setattr(compiler.api, "_compile_program", refuse)


def _write_npz(path: Path, **arrays: Any) -> Path:
    np.savez(path, **arrays)
    return path


def _digits_rows(n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).random((n, 1, 8, 8), dtype=np.float32)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"image": _digits_rows()}, r"do not match the program's inputs \(missing x; unknown image\)"),
        ({"x": np.zeros((16, 1, 9, 8), np.float32)}, r"x dimension 2 is 9, outside the program's range 8"),
        ({"x": np.zeros((16, 8, 8), np.float32)}, r"x has shape \[16, 8, 8\]; the program expects"),
        ({"x": _digits_rows().astype(np.float64)}, r"x has dtype float64; the program expects float32"),
        ({"x": np.where(np.eye(8, dtype=bool), np.nan, _digits_rows())}, r"x holds 128 NaN or infinite values"),
        ({"x": _digits_rows(), "labels": np.zeros(15, np.int64)}, r"labels must be integers, one per sample \(16\)"),
    ],
    ids=["wrong_name", "wrong_shape", "wrong_rank", "wrong_dtype", "nan", "labels_length"],
)
def test_mismatched_data_file_is_refused_before_compiling(
    digits: ModelCase, tmp_path: Path, no_compile: None, arrays: dict[str, Any], message: str
) -> None:
    path = _write_npz(tmp_path / "data.npz", **arrays)
    with pytest.raises(compiler.DatasetError, match=message):
        compiler.compile(digits.module, _spec("int8"), _example(digits), validate=True, validation_data=path)


def test_safetensors_with_a_wrong_name_is_refused_before_compiling(digits: ModelCase, tmp_path: Path, no_compile: None) -> None:
    save_file({"pixels": torch.zeros(4, 1, 8, 8)}, str(tmp_path / "data.safetensors"))
    with pytest.raises(compiler.DatasetError, match="missing x; unknown pixels"):
        compiler.compile(digits.module, _spec("int8"), _example(digits), calibration_data=tmp_path / "data.safetensors")


class _Payload:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("pickle ran",))


@pytest.mark.parametrize("kind", ["pickle", "torch_save", "npz_object_array"])
def test_pickled_data_is_refused_unopened(digits: ModelCase, tmp_path: Path, no_compile: None, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    if kind == "pickle":
        path = tmp_path / "data.npz"
        path.write_bytes(pickle.dumps({"x": _Payload()}))
        message = "is a pickle"
    elif kind == "torch_save":
        path = tmp_path / "data.safetensors"
        torch.save({"x": torch.zeros(4, 1, 8, 8)}, path)
        message = "is a pickle"
    else:
        path = tmp_path / "data.npz"
        np.savez(path, x=np.array([_Payload()], dtype=object))
        message = "pickled object array"
    with pytest.raises(compiler.DatasetError, match=message):
        compiler.compile(digits.module, _spec("int8"), _example(digits), validation_data=path)
    assert "pickle ran" not in capsys.readouterr().out


@pytest.mark.parametrize("header", [128, 640, 1152])
def test_a_safetensors_file_whose_header_length_starts_like_a_pickle_loads(tmp_path: Path, header: int) -> None:
    # the first 8 bytes are the header's length: 640 is 80 02 00 ..., a pickle's opening bytes
    import struct

    path = tmp_path / "data.safetensors"
    for pad in range(header):
        save_file({"x": torch.ones(2, 1, 8, 8)}, str(path), metadata={"pad": "p" * pad})
        if struct.unpack("<Q", path.read_bytes()[:8])[0] == header:
            break
    else:
        pytest.fail(f"no padding gives a {header}-byte header")
    assert compiler.load_dataset(path).inputs["x"].shape == (2, 1, 8, 8)
    for protocol in (2, 3, 4, 5):
        path.write_bytes(pickle.dumps({"x": 1}, protocol=protocol))
        with pytest.raises(compiler.DatasetError, match="is a pickle"):
            compiler.load_dataset(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("data.npz", b"PK\x03\x04 not really a zip", "not a readable .npz file"),
        ("data.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{broken json}!!", "not a readable safetensors file"),
        ("data.csv", b"x\n1\n", "must be .safetensors or .npz"),
    ],
    ids=["npz", "safetensors", "extension"],
)
def test_malformed_data_file_is_refused_with_a_clear_error(
    digits: ModelCase, tmp_path: Path, no_compile: None, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(compiler.DatasetError, match=message):
        compiler.compile(digits.module, _spec("int8"), _example(digits), validation_data=path)


def test_load_dataset_reads_inputs_and_labels(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "data.npz", x=_digits_rows(), labels=np.arange(16))
    dataset = compiler.load_dataset(path)
    assert dataset.rows == 16 and dataset.labels is not None and dataset.labels.dtype == torch.int64


# ---------------------------------------------------------------------- thresholds and metrics
@pytest.mark.parametrize(
    ("precision", "labelled", "expected"),
    [
        ("fp32", True, {"min_cosine": 0.999, "min_snr_db": 60.0, "max_accuracy_drop": 0.5}),
        ("fp16", False, {"min_cosine": 0.999, "min_snr_db": 35.0}),
        ("bf16", False, {"min_cosine": 0.99, "min_snr_db": 25.0}),
        ("int8", True, {"min_cosine": None, "min_snr_db": None, "max_accuracy_drop": 1.5}),
        ("int8", False, {"min_cosine": 0.98, "min_snr_db": 12.0}),
    ],
)
def test_gate_defaults_depend_on_precision_and_labels(precision: str, labelled: bool, expected: dict[str, Any]) -> None:
    thresholds = compiler.validation.gate_thresholds(compiler.CompileSpec(precision=precision), labelled)
    assert {k: thresholds[k] for k in expected} == expected


def test_spec_gate_keys_override_the_defaults() -> None:
    spec = compiler.CompileSpec.parse({"precision": "int8", "gate": {"min_snr_db": 30, "max_accuracy_drop": 0.2}})
    thresholds = compiler.validation.gate_thresholds(spec, labelled=True)
    assert thresholds["min_snr_db"] == 30 and thresholds["max_accuracy_drop"] == 0.2


def test_bad_quantization_keys_are_rejected_with_their_path() -> None:
    with pytest.raises(compiler.SpecError, match="quantization.method"):
        compiler.CompileSpec.parse({"quantization": {"method": "fancy"}})
    with pytest.raises(compiler.SpecError, match="gate.min_snr: unknown key"):
        compiler.CompileSpec.parse({"gate": {"min_snr": 3}})


def test_metrics_of_a_known_error() -> None:
    acc = compiler.validation._Acc()
    want = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    have = want + torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.5]])  # same top-1 (class 5)
    acc.add(want, have)
    assert acc.max_abs == pytest.approx(0.5)
    assert acc.sum_abs / acc.count == pytest.approx(0.5 / 6)
    assert acc.max_rel == pytest.approx(0.5 / 6)
    assert acc.snr_db == pytest.approx(10 * np.log10(91 / 0.25))
    assert (acc.top1, acc.top5, acc.rows) == (1, 1, 1)


def test_calibration_reaches_partitions_behind_pytorch_code(
    digits: ModelCase, held_out: dict[str, torch.Tensor], calibration: dict[str, torch.Tensor]
) -> None:
    # max_pool2d in PyTorch: the classifier's engine is fed by PyTorch code, so its calibration
    # inputs exist only by running the partitioned program
    spec = _spec("int8", partitioning={"torch_executed_ops": ["aten.max_pool2d.default"], "min_block_size": 1})
    compiled = compiler.compile(
        digits.module, spec, _example(digits), validate=True, validation_data=held_out, calibration_data=calibration
    )
    metas = [meta for meta, _ in compiled.engines.values()]
    assert len(metas) == 2
    assert all(m.extra["quantization"] == "static_qdq_per_channel" and m.extra["calibration_samples"] == 8 for m in metas)
    drop = _metric(compiled, "reference_accuracy")["value"] - _metric(compiled, "task_accuracy")["value"]
    assert drop <= 0.015


def test_whole_program_engine_calibrates_on_the_batches_without_running_the_program(
    digits: ModelCase, calibration: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = compiler.api._capture_partition_inputs
    seen: list[tuple[list[Any], dict[str, list[dict[int, Any]]]]] = []

    def capture(plan: Any, data: list[Any], device: torch.device) -> dict[str, list[dict[int, Any]]]:
        def refuse(*args: Any) -> None:
            raise AssertionError("the partitioned program ran in PyTorch")

        plan.graph_module.forward = refuse
        try:
            captured = real(plan, data, device)
        finally:
            del plan.graph_module.forward
        seen.append((data, captured))
        return captured

    monkeypatch.setattr(compiler.api, "_capture_partition_inputs", capture)
    compiled = compiler.compile(digits.module, _spec("int8"), _example(digits), calibration_data=calibration)
    ((data, captured),) = seen
    ((name, samples),) = captured.items()
    assert len(compiled.engines) == 1 and len(samples) == len(data) == 8
    for sample, (inputs, _) in zip(samples, data, strict=True):
        # the images, and the batch size that the dynamic batch axis passes as an argument
        (images, size) = (v for v in sample.values())
        assert torch.equal(images, inputs[0]) and size == inputs[0].shape[0]


def test_attention_mask_nodes_stay_float() -> None:
    from onnx import TensorProto, helper

    minimum = np.array([-3.4028235e38], np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["q", "k"], ["scores"], name="scores"),
            helper.make_node("Mul", ["mask", "min"], ["bias"], name="bias"),
            helper.make_node("Add", ["scores", "bias"], ["masked"], name="masked"),
            helper.make_node("Softmax", ["masked"], ["probs"], name="probs"),
            helper.make_node("MatMul", ["probs", "k"], ["out"], name="out"),
        ],
        "attention",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 4]) for n in ("q", "k", "mask")],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4, 4])],
        [onnx.numpy_helper.from_array(minimum, "min")],
    )
    assert ort_backend._mask_nodes(helper.make_model(graph)) == ["bias", "masked", "probs"]
