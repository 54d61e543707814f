"""Conversion phase: ATen fx graphs to ONNX through the converter registry."""

from compiler.conversion import converters as _converters  # noqa: F401  (registers converters)
from compiler.conversion.context import ConversionContext, ConversionError
from compiler.conversion.graph import ConvertedGraph, convert_graph
from compiler.conversion.registry import REGISTRY, ConverterEntry, converter

__all__ = [
    "REGISTRY",
    "ConversionContext",
    "ConversionError",
    "ConvertedGraph",
    "ConverterEntry",
    "convert_graph",
    "converter",
]
