"""Bulk evaluation over polars frames: audiences read as columns, the decision plan, decision frames.

The per-recipient pipeline (``engine.pipeline``) stays the reference; this package gives the same
decisions for whole audiences at once when every step supports it (see :func:`unsupported`). The bulk
execution mode (:mod:`engine.columnar.bulk`) runs it; callers go through ``Herald.evaluate``.
"""

from engine.columnar.context import ColumnarContext, fired_column
from engine.columnar.decisions import iter_decisions
from engine.columnar.frame import FrameRead, complete, frame_from_customers, read_frame
from engine.columnar.plan import decision_plan, evaluate_frame, unsupported

__all__ = ["ColumnarContext", "FrameRead", "complete", "evaluate_frame", "fired_column", "frame_from_customers",
           "iter_decisions", "decision_plan", "read_frame", "unsupported"]
