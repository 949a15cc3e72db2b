"""Schemathesis over the OpenAPI schema: whatever a client sends, the server answers without a 5xx."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from ganplug.serve import ServeSettings, create_app  # noqa: E402


def _schema():
    from pathlib import Path

    # Built at import time so that parametrize can enumerate the operations; the models folder is filled in
    # by the fixture below (the catalog rescans on every request).
    root = Path(__import__("tempfile").mkdtemp(prefix="ganplug-fuzz-"))
    app = create_app(ServeSettings(models=(root,), device="cpu", precision="fp32", max_batch=8, max_side=128,
                                   max_upload_bytes=64 << 10, allowed_hosts=("testserver", "localhost")))
    return root, app, schemathesis.openapi.from_asgi("/openapi.json", app)


ROOT, APP, schema = _schema()


@pytest.fixture(scope="module", autouse=True)
def _serve_the_tiny_run(tiny_run):
    import shutil

    shutil.copytree(tiny_run, ROOT / "tiny")
    yield
    APP.state.server.jobs.shutdown()


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_no_server_errors(case):
    if case.path.endswith("/events"):
        case.path_parameters = {"job_id": "unknown"}  # a real job's stream is covered in test_serve_jobs
    case.call_and_validate(checks=[not_a_server_error])
