"""moeplan: plan Mixture-of-Experts pre-training runs from a compute budget."""

from moeplan.flops import MLA, Architecture, Convention, count

__version__ = "0.1.0"
__all__ = ["MLA", "Architecture", "Convention", "__version__", "count"]
