"""Evaluation suite for ganplug (installed as ganplug.eval): `evaluate(FAKE, REAL, ...)` and the metrics.

Metrics live in ganplug.eval.metrics (features in, numbers out); feature extraction, weight discovery
and caching in ganplug.eval.features; inputs in ganplug.eval.sources.
"""

from __future__ import annotations


def evaluate(*args, **kwargs):
    """See ganplug.eval.pipeline.evaluate (imported lazily so `import ganplug.eval` stays light)."""
    from ganplug.eval.pipeline import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


__all__ = ["evaluate"]
