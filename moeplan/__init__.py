"""moeplan: plan Mixture-of-Experts pre-training runs from a compute budget."""

from moeplan.flops import Architecture, Convention, count

__version__ = "0.1.0"
__all__ = ["Architecture", "Convention", "__version__", "count"]
