"""Partitioning phase: operator support from the converter registry, then the partitioner."""

from compiler.partitioning.operator_support import RegistryOperatorSupport, op_name
from compiler.partitioning.partitioner import PartitionInfo, PartitionPlan, partition

__all__ = ["PartitionInfo", "PartitionPlan", "RegistryOperatorSupport", "op_name", "partition"]
