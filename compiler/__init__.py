"""orchestrate's compiler: PyTorch programs to inference engines, usable on its own.

    import compiler
    spec = compiler.CompileSpec.from_file("spec.yaml")
    compiled = compiler.compile(exported_program_or_module, spec)
    outputs = compiled(*tensors)
    compiler.save(compiled, "model.engine.pt2"); compiled = compiler.load("model.engine.pt2")
"""

from compiler.api import compile, plan
from compiler.backends import backend_versions
from compiler.datasets import Dataset, load_dataset
from compiler.errors import (
    AccuracyGateError,
    BackendError,
    BackendUnavailableError,
    CompilerError,
    DatasetError,
    InputMismatchError,
    InvalidModelError,
    LoweringError,
    SpecError,
    UnsafeModelError,
    UnsupportedOperatorError,
)
from compiler.frontend import load_program
from compiler.identity import (
    DeviceIdentity,
    EngineRequirements,
    IncompatibleEngineError,
    detect_identity,
    local_identity,
)
from compiler.performance import reset_peak_memory
from compiler.report import CompileReport
from compiler.runtime.module import CompiledModule
from compiler.runtime.serialization import (
    incompatibility,
    load,
    program_requirements,
    read_manifest,
    save,
)
from compiler.scratch import remove_dead_scratch, scratch_folder
from compiler.spec import CompileSpec
from compiler.validation import ValidationResult, validate

__version__ = "0.1.0"

__all__ = [
    "AccuracyGateError",
    "BackendError",
    "BackendUnavailableError",
    "CompileReport",
    "CompileSpec",
    "CompiledModule",
    "CompilerError",
    "Dataset",
    "DatasetError",
    "DeviceIdentity",
    "EngineRequirements",
    "IncompatibleEngineError",
    "InputMismatchError",
    "InvalidModelError",
    "LoweringError",
    "SpecError",
    "UnsafeModelError",
    "UnsupportedOperatorError",
    "ValidationResult",
    "backend_versions",
    "compile",
    "detect_identity",
    "incompatibility",
    "load",
    "load_dataset",
    "load_program",
    "local_identity",
    "plan",
    "program_requirements",
    "read_manifest",
    "remove_dead_scratch",
    "reset_peak_memory",
    "save",
    "scratch_folder",
    "validate",
]
