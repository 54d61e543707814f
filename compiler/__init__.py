"""orchestrate's compiler: PyTorch programs to inference engines, usable on its own.

    import compiler
    spec = compiler.CompileSpec.from_file("spec.yaml")
    compiled = compiler.compile(exported_program_or_module, spec)
    outputs = compiled(*tensors)
    compiler.save(compiled, "model.engine.pt2"); compiled = compiler.load("model.engine.pt2")
"""

from compiler.api import compile, plan
from compiler.backends import backend_versions
from compiler.errors import (
    BackendError,
    BackendUnavailableError,
    CompilerError,
    InputMismatchError,
    InvalidModelError,
    LoweringError,
    SpecError,
    UnsafeModelError,
    UnsupportedOperatorError,
)
from compiler.frontend import load_program
from compiler.report import CompileReport
from compiler.runtime.module import CompiledModule
from compiler.runtime.serialization import load, save
from compiler.spec import CompileSpec
from compiler.validation import ValidationResult, validate

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "CompileReport",
    "CompileSpec",
    "CompiledModule",
    "CompilerError",
    "InputMismatchError",
    "InvalidModelError",
    "LoweringError",
    "SpecError",
    "UnsafeModelError",
    "UnsupportedOperatorError",
    "ValidationResult",
    "backend_versions",
    "compile",
    "load",
    "load_program",
    "plan",
    "save",
    "validate",
]
