"""Jobs: progress, cancel (queued and running), event streams, and 16 requests in flight at once."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
from serve_helpers import make_client

from ganplug.serve.errors import ApiError
from ganplug.serve.jobs import JobQueue
from ganplug.serve.schema import JobState


def wait(job, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not job.finished:
        assert time.monotonic() < deadline, f"job stuck in {job.state}"
        time.sleep(0.01)
    return job


def test_job_reports_progress_and_result():
    q = JobQueue(workers=1)
    seen = []

    def work(ctx):
        for i in range(4):
            ctx.progress(i / 4, f"step {i}")
            seen.append(i)
        return "result"

    job = wait(q.submit("x", work))
    assert (job.state, job.result, job.progress, seen) == (JobState.done, "result", 1.0, [0, 1, 2, 3])
    q.shutdown()


def test_cancel_stops_a_running_job_at_its_next_checkpoint_and_a_queued_one_never_starts():
    q = JobQueue(workers=1)
    started, release = threading.Event(), threading.Event()
    steps = []

    def slow(ctx):
        started.set()
        release.wait(5)
        for i in range(100):
            ctx.progress(i / 100)
            steps.append(i)

    ran_second = []
    running = q.submit("slow", slow)
    queued = q.submit("second", lambda ctx: ran_second.append(1))
    assert started.wait(5)
    assert q.cancel(queued.id).state == JobState.cancelled  # immediately, while still queued
    q.cancel(running.id)
    release.set()
    assert wait(running).state == JobState.cancelled and steps == []
    wait(queued)
    time.sleep(0.05)
    assert ran_second == [] and queued.state == JobState.cancelled
    q.shutdown()


def test_failures_keep_their_status_and_sentence():
    q = JobQueue(workers=1)

    def refuse(ctx):
        raise ApiError(422, "not_supported", "no can do.")

    def crash(ctx):
        raise ZeroDivisionError("boom")

    a, b = wait(q.submit("a", refuse)), wait(q.submit("b", crash))
    assert (a.state, a.error_status, a.error) == (JobState.failed, 422, "no can do.")
    assert (b.state, b.error_status) == (JobState.failed, 500) and "ZeroDivisionError" in b.error
    with pytest.raises(ApiError):
        q.get("missing")
    q.shutdown()


def test_finished_jobs_are_forgotten_beyond_the_limit():
    q = JobQueue(workers=1, keep=3)
    jobs = [wait(q.submit("x", lambda ctx: None)) for _ in range(6)]
    q.submit("x", lambda ctx: None)
    assert len(q.list()) <= 4 and jobs[0] not in q.list()
    q.shutdown()


def test_http_job_poll_cancel_and_event_stream(tiny_run):
    with make_client(models=(tiny_run,), max_batch=4096, chunk=1) as c:
        r = c.post("/v1/jobs/generate", json={"count": 3, "seed": 10})
        assert r.status_code == 202 and r.json()["state"] in ("queued", "running")
        job_id = r.json()["id"]
        events = []
        with c.stream("GET", f"/v1/jobs/{job_id}/events") as s:
            for line in s.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        assert events[-1]["state"] == "done"
        progress = [e["progress"] for e in events]
        assert progress == sorted(progress) and progress[-1] == 1.0
        done = c.get(f"/v1/jobs/{job_id}").json()
        assert [im["seed"] for im in done["result"]["images"]] == [10, 11, 12]

        big = c.post("/v1/jobs/generate", json={"count": 1500, "size": 128}).json()
        cancelled = c.delete(f"/v1/jobs/{big['id']}").json()
        assert cancelled["id"] == big["id"]
        deadline = time.monotonic() + 10
        while (info := c.get(f"/v1/jobs/{big['id']}").json())["state"] not in ("cancelled", "done", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert info["state"] == "cancelled" and info["progress"] < 0.5 and info["result"] is None
        assert any(j["id"] == big["id"] for j in c.get("/v1/jobs").json()["jobs"])
        # The synchronous endpoint reports a cancelled job as a 409, not as a 500.
        holder = {}

        def sync_call():
            holder["r"] = c.post("/v1/generate", json={"count": 1500, "size": 128})

        t = threading.Thread(target=sync_call)
        t.start()
        deadline = time.monotonic() + 10
        while not (active := [j for j in c.get("/v1/jobs").json()["jobs"] if j["state"] in ("queued", "running")]):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        c.delete(f"/v1/jobs/{active[0]['id']}")
        t.join(20)
        assert holder["r"].status_code == 409 and holder["r"].json()["error"] == "cancelled"


def test_sixteen_parallel_requests_succeed_and_health_answers_meanwhile(tiny_run):
    from ganplug.serve import ServeSettings, create_app

    app = create_app(ServeSettings(models=(tiny_run,), device="cpu", precision="fp32"))

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as ac:
            gens = [asyncio.create_task(ac.post("/v1/generate", json={"seeds": [i, i + 100], "size": 96}))
                    for i in range(16)]
            await asyncio.sleep(0)
            healths = []
            while not all(g.done() for g in gens):
                h = await ac.get("/v1/health")
                healths.append((h.status_code, h.json()["jobs_active"]))
                await asyncio.sleep(0.005)
            return [await g for g in gens], healths

    results, healths = asyncio.run(scenario())
    assert all(r.status_code == 200 for r in results)
    assert [r.json()["images"][0]["seed"] for r in results] == list(range(16))
    assert all(code == 200 for code, _ in healths)
    assert any(active > 0 for _, active in healths), "health never answered while generation was in flight"
    assert app.state.server.cache.loads == 1  # sixteen requests, one checkpoint load
    app.state.server.jobs.shutdown()
