"""algoperf: a time-to-result benchmark harness for training algorithms (AlgoPerf-compatible)."""

__version__ = "0.1.0"
