"""Evaluation suite for ganplug (installed as ganplug.eval): `evaluate(FAKE, REAL, ...)` and the metrics.

Metrics live in ganplug.eval.metrics (features in, numbers out), each with one entry in
ganplug.eval.registry saying what it needs; ganplug.eval.pipeline reads each input once (ganplug.eval.scan)
and feeds the metrics, the collapse verdict (ganplug.eval.verdict) and the report (ganplug.eval.report,
rendering only). Feature extraction, weight discovery and caching: ganplug.eval.features; inputs:
ganplug.eval.sources.
"""

from __future__ import annotations


def evaluate(*args, **kwargs):
    """See ganplug.eval.pipeline.evaluate (imported lazily so `import ganplug.eval` stays light)."""
    from ganplug.eval.pipeline import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


__all__ = ["evaluate"]
