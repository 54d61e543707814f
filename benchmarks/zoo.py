"""The models the compiler is measured on, shared by the end-to-end tests and the benchmarks.

Every builder constructs its model from scratch (random weights from a `transformers` config, or a
small CNN trained on scikit-learn's bundled digits), so nothing is downloaded. Each returns a
:class:`ModelCase`: the module in eval mode, example inputs at batch 1, and — for models compiled
with dynamic shapes — the spec's input ranges.

Random initialisation needs care: several `transformers` vision models, built from their default
configs, output values around 1e-21, and a compiled-vs-eager comparison on such outputs passes
while proving nothing. Vision models are therefore re-initialised (:func:`reinit_vision_weights`)
and every comparison should first call :func:`assert_not_degenerate` on the reference output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

SEED = 0
IMAGE = (1, 3, 224, 224)
SEQUENCE = 128
VOCAB_SAMPLE = 1000  # token ids are drawn below this, inside every vocabulary used here


class DegenerateOutputError(AssertionError):
    """The reference output is too small or too uniform for a comparison to mean anything."""


@dataclass
class ModelCase:
    name: str
    module: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    # keys of CompileSpec (e.g. "inputs" with min/opt/max); None compiles at the example shapes
    spec: dict[str, Any] | None = None
    notes: str = ""
    # for trained models: accuracy of the eager model on held-out data
    accuracy: float | None = None
    # for trained models: the held-out data (inputs, labels)
    held_out: tuple[torch.Tensor, torch.Tensor] | None = None
    # draws fresh inputs (same shapes as example_inputs unless shape is given)
    make_inputs: Callable[..., tuple[torch.Tensor, ...]] | None = field(default=None, repr=False)

    @property
    def input_names(self) -> list[str]:
        import inspect

        params = inspect.signature(self.module.forward).parameters.values()
        return [p.name for p in params][: len(self.example_inputs)]

    def fresh_inputs(self, seed: int = 1, **shape: int) -> tuple[torch.Tensor, ...]:
        """New inputs of the same kind as the examples (different values)."""
        if self.make_inputs is None:
            raise ValueError(f"{self.name} has no input generator")
        return self.make_inputs(seed=seed, **shape)


def assert_not_degenerate(output: Any, min_std: float = 1e-3) -> None:
    """Raise DegenerateOutputError unless every tensor in ``output`` varies meaningfully."""
    tensors = [t for t in torch.utils._pytree.tree_leaves(output) if isinstance(t, torch.Tensor)]
    if not tensors:
        raise DegenerateOutputError("the model returned no tensors")
    for index, tensor in enumerate(tensors):
        if not tensor.dtype.is_floating_point:
            continue
        values = tensor.detach().float()
        if not torch.isfinite(values).all():
            raise DegenerateOutputError(f"output {index} has non-finite values")
        std = float(values.std()) if values.numel() > 1 else 0.0
        if std <= min_std or float(values.max()) == float(values.min()):
            raise DegenerateOutputError(
                f"output {index} is degenerate (std {std:.3g}, range "
                f"[{float(values.min()):.3g}, {float(values.max()):.3g}]); re-initialise the model's weights"
            )


def reinit_vision_weights(module: nn.Module, seed: int = SEED) -> nn.Module:
    """Weights that keep activations at unit scale through a deep random CNN.

    Kaiming-normal (fan-in) convolutions preserve the activation variance through ReLU-like
    layers, BatchNorm gets unit running statistics (so eval-mode BN is an affine map that does
    not shrink its input) and linears a small normal, enough to make logits differ clearly.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                fan_in = sub.in_channels // sub.groups * math.prod(sub.kernel_size)
                sub.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
                if sub.bias is not None:
                    sub.bias.normal_(0.0, 0.01, generator=generator)
            elif isinstance(sub, nn.modules.batchnorm._BatchNorm):
                if sub.weight is not None and sub.bias is not None:
                    sub.weight.uniform_(0.5, 1.5, generator=generator)
                    sub.bias.normal_(0.0, 0.1, generator=generator)
                if sub.running_mean is not None and sub.running_var is not None:
                    sub.running_mean.normal_(0.0, 0.1, generator=generator)
                    sub.running_var.uniform_(0.8, 1.2, generator=generator)
            elif isinstance(sub, nn.Linear):
                sub.weight.normal_(0.0, math.sqrt(1.0 / sub.in_features), generator=generator)
                if sub.bias is not None:
                    sub.bias.normal_(0.0, 0.01, generator=generator)
            elif isinstance(sub, nn.LayerNorm) and sub.weight is not None and sub.bias is not None:
                sub.weight.uniform_(0.5, 1.5, generator=generator)
                sub.bias.normal_(0.0, 0.1, generator=generator)
    return module


def calibrate_batchnorm(module: nn.Module, inputs: Sequence[torch.Tensor]) -> nn.Module:
    """Set every BatchNorm's running statistics to those of ``inputs`` flowing through the model.

    With random weights, activations drift by orders of magnitude through a deep CNN (SiLU and
    squeeze-excite layers do not preserve variance the way Kaiming init assumes); statistics from
    a real forward pass renormalise each BatchNorm, as training would, so the output stays at a
    meaningful scale.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration pass
    module.train()
    with torch.no_grad():
        module(*inputs)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    return module.eval()


def _vision(model: nn.Module) -> nn.Module:
    reinit_vision_weights(model)
    return calibrate_batchnorm(model, _image_inputs(seed=SEED + 100, batch=2))


class MainOutput(nn.Module):
    """A `transformers` model that returns only its first output tensor.

    Positional arguments are passed on by name, so the exported program's inputs carry the
    model's own input names (``pixel_values``, ``input_ids``, ``attention_mask``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model


class ImageModel(MainOutput):
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values, return_dict=False)[0]


class TextModel(MainOutput):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[0]


class CausalTextModel(MainOutput):
    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False, return_dict=False)[0]


def _image_inputs(seed: int = 1, batch: int = 1, size: int = 224) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, size, size, generator=generator),)


def _text_inputs(seed: int = 1, batch: int = 1, seq: int = SEQUENCE) -> tuple[torch.Tensor, ...]:
    """Token ids plus a padding mask: the last quarter of every other row is padding, so the
    mask really changes the attention."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB_SAMPLE, (batch, seq), generator=generator)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    mask[::2, seq - seq // 4 :] = 0
    return ids, mask


def _causal_inputs(seed: int = 1, batch: int = 1, seq: int = SEQUENCE) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(0, VOCAB_SAMPLE, (batch, seq), generator=generator),)


def _config(cls: Any, **kwargs: Any) -> Any:
    """A `transformers` config; its generic keys (num_labels, attn_implementation) are untyped."""
    return cls(**kwargs)


def _seeded(fn: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        return fn().eval()


# ---------------------------------------------------------------------- the trained CNN
class DigitsCNN(nn.Module):
    """A small conv net for scikit-learn's 8x8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def accuracy(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.inference_mode():
        predictions = model(images).argmax(dim=1)
    return float((predictions == labels).float().mean())


def digits_cnn(epochs: int = 12) -> ModelCase:
    """A CNN trained here on scikit-learn's bundled digits (1,797 8x8 images; ~2 s on 2 cores)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images / 16.0).astype("float32")[:, None]  # N x 1 x 8 x 8 in [0, 1]
    train_x, test_x, train_y, test_y = train_test_split(
        images, data.target, test_size=0.25, random_state=SEED, stratify=data.target
    )
    xs, ys = torch.from_numpy(train_x), torch.from_numpy(train_y).long()
    held_out = (torch.from_numpy(test_x), torch.from_numpy(test_y).long())
    threads = torch.get_num_threads()
    # One thread: the batches are tiny, so more threads only add synchronisation (tens of times
    # slower on a busy 2-core machine), and the trained weights do not depend on the core count.
    torch.set_num_threads(1)
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model = DigitsCNN()
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        generator = torch.Generator().manual_seed(SEED)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(xs), generator=generator)
            for start in range(0, len(xs), 64):
                batch = order[start : start + 64]
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(xs[batch]), ys[batch])
                loss.backward()
                optimizer.step()
    torch.set_num_threads(threads)
    model.eval()

    def make(seed: int = 1, batch: int = 1) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(seed)
        index = torch.randint(0, len(held_out[0]), (batch,), generator=generator)
        return (held_out[0][index].clone(),)

    return ModelCase(
        name="digits_cnn",
        module=model,
        example_inputs=make(seed=0),
        accuracy=accuracy(model, *held_out),
        held_out=held_out,
        notes="trained for a few seconds; compiled accuracy on the held-out quarter must equal eager's",
        make_inputs=make,
    )


# ---------------------------------------------------------------------- issue 2 models
def resnet50() -> ModelCase:
    from transformers import ResNetConfig, ResNetForImageClassification

    model = _seeded(lambda: _vision(ResNetForImageClassification(_config(ResNetConfig, num_labels=1000))))
    return ModelCase("resnet50", ImageModel(model).eval(), _image_inputs(0), notes="logits, re-initialised weights", make_inputs=_image_inputs)


def mobilenet_v2() -> ModelCase:
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    model = _seeded(
        lambda: _vision(MobileNetV2ForImageClassification(_config(MobileNetV2Config, num_labels=1000)))
    )
    return ModelCase(
        "mobilenet_v2",
        ImageModel(model).eval(),
        _image_inputs(0),
        notes="logits; default random init outputs ~1e-21, so weights are re-initialised",
        make_inputs=_image_inputs,
    )


def bert_base() -> ModelCase:
    from transformers import BertConfig, BertModel

    model = _seeded(lambda: BertModel(_config(BertConfig, attn_implementation="sdpa"), add_pooling_layer=False))
    return ModelCase(
        "bert_base",
        TextModel(model).eval(),
        _text_inputs(0),
        notes="last hidden state, sequence 128, padding mask on the last 32 tokens of even rows",
        make_inputs=_text_inputs,
    )


# ---------------------------------------------------------------------- issue 4 families
def vit_b16() -> ModelCase:
    from transformers import ViTConfig, ViTModel

    model = _seeded(lambda: ViTModel(_config(ViTConfig, attn_implementation="sdpa"), add_pooling_layer=False))
    return ModelCase("vit_b16", ImageModel(model).eval(), _image_inputs(0), notes="last hidden state (197 tokens)", make_inputs=_image_inputs)


def convnext_tiny() -> ModelCase:
    from transformers import ConvNextConfig, ConvNextForImageClassification

    # layer_scale_init_value 1e-6 (the default) would make every block's contribution invisible
    # at the test tolerance, so a wrong block converter could pass; 1.0 keeps them visible.
    config = _config(ConvNextConfig, num_labels=1000, layer_scale_init_value=1.0)
    model = _seeded(lambda: _vision(ConvNextForImageClassification(config)))
    return ModelCase(
        "convnext_tiny",
        ImageModel(model).eval(),
        _image_inputs(0),
        notes="logits; layer scale 1.0 and re-initialised weights so blocks matter",
        make_inputs=_image_inputs,
    )


def efficientnet_b0() -> ModelCase:
    from transformers import EfficientNetConfig, EfficientNetForImageClassification

    # transformers' default EfficientNetConfig is B7 (width 2.0, depth 3.1, 66M parameters);
    # B0 is width and depth 1.0 with a 1280-wide head (5.3M parameters)
    config = _config(
        EfficientNetConfig,
        image_size=224,
        width_coefficient=1.0,
        depth_coefficient=1.0,
        hidden_dim=1280,
        dropout_rate=0.2,
        num_labels=1000,
    )
    model = _seeded(lambda: _vision(EfficientNetForImageClassification(config)))
    return ModelCase("efficientnet_b0", ImageModel(model).eval(), _image_inputs(0), notes="logits, re-initialised weights", make_inputs=_image_inputs)


def gpt2_small() -> ModelCase:
    from transformers import GPT2Config, GPT2Model

    model = _seeded(lambda: GPT2Model(_config(GPT2Config, attn_implementation="sdpa")))
    return ModelCase(
        "gpt2_small",
        CausalTextModel(model).eval(),
        _causal_inputs(0),
        notes="last hidden state, sequence 128, causal attention, no KV cache",
        make_inputs=_causal_inputs,
    )


def distilbert() -> ModelCase:
    from transformers import DistilBertConfig, DistilBertModel

    model = _seeded(lambda: DistilBertModel(_config(DistilBertConfig, attn_implementation="sdpa")))
    return ModelCase("distilbert", TextModel(model).eval(), _text_inputs(0), notes="last hidden state, sequence 128", make_inputs=_text_inputs)


BERT_DYNAMIC_MIN = (1, 16)
BERT_DYNAMIC_MAX = (8, 512)


def bert_base_dynamic() -> ModelCase:
    """BERT-base compiled once for batch 1..8 and sequence 16..512."""
    case = bert_base()
    ranges = {"dtype": "int64", "min": list(BERT_DYNAMIC_MIN), "opt": [1, SEQUENCE], "max": list(BERT_DYNAMIC_MAX)}
    case.name = "bert_base_dynamic"
    case.spec = {"inputs": [{"name": "input_ids", **ranges}, {"name": "attention_mask", **ranges}]}
    # export traces at a size that is not 0/1 on any dynamic axis, so nothing specialises
    case.example_inputs = _text_inputs(0, batch=2, seq=SEQUENCE)
    case.notes = "one compile serves batch 1..8 x sequence 16..512"
    return case


BUILDERS: dict[str, Callable[[], ModelCase]] = {
    "digits_cnn": digits_cnn,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "bert_base": bert_base,
    "vit_b16": vit_b16,
    "convnext_tiny": convnext_tiny,
    "efficientnet_b0": efficientnet_b0,
    "gpt2_small": gpt2_small,
    "distilbert": distilbert,
    "bert_base_dynamic": bert_base_dynamic,
}
ISSUE_2 = ("digits_cnn", "resnet50", "mobilenet_v2", "bert_base")
ISSUE_4 = ("vit_b16", "convnext_tiny", "efficientnet_b0", "gpt2_small", "distilbert", "bert_base_dynamic")


def build(name: str) -> ModelCase:
    try:
        return BUILDERS[name]()
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose from {', '.join(BUILDERS)}") from None


def dynamic_shapes(case: ModelCase) -> tuple[dict[int, Any] | None, ...] | None:
    """``torch.export`` dynamic shapes for the spec's ranges; the same axis with the same range
    is one Dim across inputs (batch and sequence are shared by ids and mask)."""
    if not case.spec or not case.spec.get("inputs"):
        return None
    by_name = {item["name"]: item for item in case.spec["inputs"]}
    dims: dict[tuple[int, int, int], Any] = {}
    shapes: list[dict[int, Any] | None] = []
    for name in case.input_names:
        item = by_name.get(name)
        if item is None or "min" not in item:
            shapes.append(None)
            continue
        axes: dict[int, Any] = {}
        for axis, (lo, hi) in enumerate(zip(item["min"], item["max"], strict=True)):
            if lo != hi:
                key = (axis, lo, hi)
                if key not in dims:
                    dims[key] = torch.export.Dim(f"{('batch', 'seq')[axis] if axis < 2 else f'd{axis}'}", min=lo, max=hi)
                axes[axis] = dims[key]
        shapes.append(axes or None)
    return tuple(shapes) if any(s is not None for s in shapes) else None


def export(case: ModelCase) -> torch.export.ExportedProgram:
    """torch.export the case's module at its example inputs, dynamic where its spec says."""
    with torch.no_grad():
        return torch.export.export(case.module, case.example_inputs, dynamic_shapes=dynamic_shapes(case))


def compile_spec(case: ModelCase, **partitioning: Any) -> dict[str, Any]:
    """The spec dict for ``compiler.CompileSpec.parse``, with extra partitioning keys."""
    spec = dict(case.spec or {})
    if partitioning:
        spec["partitioning"] = {**spec.get("partitioning", {}), **partitioning}
    return spec


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0))


def compare(
    actual: Any, expected: Any, min_cosine: float = 0.9999, rel_max_abs: float = 1e-3
) -> list[str]:
    """Problems (empty when none) between compiled and reference outputs, by the issue's fp32
    criteria: cosine >= min_cosine and max |diff| <= rel_max_abs * max |reference|."""
    got: Sequence[Any] = torch.utils._pytree.tree_leaves(actual)
    want: Sequence[Any] = torch.utils._pytree.tree_leaves(expected)
    if len(got) != len(want):
        return [f"{len(got)} outputs, expected {len(want)}"]
    problems = []
    for index, (a, b) in enumerate(zip(got, want, strict=True)):
        if a.shape != b.shape:
            problems.append(f"output {index}: shape {tuple(a.shape)}, expected {tuple(b.shape)}")
            continue
        cos = cosine(a, b)
        diff = float((a.double() - b.double()).abs().max())
        bound = rel_max_abs * float(b.double().abs().max())
        if not cos >= min_cosine:
            problems.append(f"output {index}: cosine {cos:.6f} < {min_cosine}")
        if not diff <= bound:
            problems.append(f"output {index}: max abs diff {diff:.3g} > {bound:.3g} (= {rel_max_abs} x max|ref|)")
    return problems
