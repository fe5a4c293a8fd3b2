"""Exact parameter and FLOPs counting of MoE architectures (docs/science.md sections 2 and 7)."""

from moeplan.flops.architecture import MLA, Architecture
from moeplan.flops.conventions import Convention
from moeplan.flops.count import Count, ParamCounts, count

__all__ = ["MLA", "Architecture", "Convention", "Count", "ParamCounts", "count"]
