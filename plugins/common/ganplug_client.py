"""Client of `ganplug serve` for the Krita plugin and the Blender add-on: Python standard library only.

This file is the single source; `ganplug plugin build|install` copies it into each plugin package,
because Krita's and Blender's embedded Pythons have neither ganplug nor third-party packages.
Every failure is a `ServerError` whose message is one sentence a person can act on.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8765"
TERMINAL = ("done", "failed", "cancelled")


class ServerError(Exception):
    """The server refused or failed a request; `str(e)` is the sentence to show."""

    def __init__(self, message, status=None, code=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class ServerUnavailable(ServerError):
    """Nothing answers at the configured address."""


class Cancelled(ServerError):
    """The job was cancelled (by us or by someone else)."""


class Client:
    def __init__(self, url=DEFAULT_URL, token=None, timeout=60.0):
        self.url = (url or DEFAULT_URL).rstrip("/")
        self.token = token or None
        self.timeout = timeout

    # ------------------------------------------------------------------ transport
    def _request(self, method, path, body=None, timeout=None):
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise _http_error(e) from None
        except urllib.error.URLError as e:
            reason = getattr(e, "reason", e)
            raise ServerUnavailable(f"no ganplug server answers at {self.url} ({reason}); "
                                    "start one with `ganplug serve --models RUN_FOLDER`.") from None
        except (TimeoutError, OSError) as e:
            raise ServerUnavailable(f"the ganplug server at {self.url} did not answer ({e}).") from None
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError:
            raise ServerError(f"the server at {self.url} did not answer with JSON; is it a ganplug server?") from None

    # ------------------------------------------------------------------ endpoints
    def health(self):
        return self._request("GET", "/v1/health", timeout=5)

    def models(self):
        return self._request("GET", "/v1/models")["models"]

    def call(self, kind, request):
        """Run one request and wait for the images (no progress; for small requests)."""
        return self._request("POST", "/v1/" + kind, request)

    def submit(self, kind, request):
        return self._request("POST", "/v1/jobs/" + kind, request)

    def jobs(self):
        """The server's recent jobs (without their results)."""
        return self._request("GET", "/v1/jobs")["jobs"]

    def job(self, job_id):
        return self._request("GET", "/v1/jobs/" + job_id)

    def cancel(self, job_id):
        return self._request("DELETE", "/v1/jobs/" + job_id)

    def directions(self, model):
        """GET /v1/models/{model}/directions -> {"count", "space", "names": [name or None, ...]}; a ServerError
        with status 404 (code `no_directions`) when the model has no directions file."""
        return self._request("GET", "/v1/models/" + urllib.parse.quote(model, safe="") + "/directions")

    def save_direction_names(self, model, names):
        """PUT /v1/models/{model}/directions/names {"names": [...]}: names of directions 0, 1, ... saved beside
        the run ('' = unnamed); it replaces all of them, so send every name. Returns the new directions info."""
        return self._request("PUT", "/v1/models/" + urllib.parse.quote(model, safe="") + "/directions/names",
                             {"names": list(names)})

    def run(self, kind, request, on_progress=None, should_cancel=None, poll=0.15, timeout=600.0):
        """Submit a job and poll it to the end; returns the result dict (with `images`).

        `on_progress(fraction, message)` is called at each poll; `should_cancel()` returning True cancels
        the job on the server and raises `Cancelled`.
        """
        job = self.submit(kind, request)
        deadline = time.monotonic() + timeout
        while True:
            if should_cancel is not None and should_cancel():
                self.cancel(job["id"])
                raise Cancelled("cancelled.")
            if on_progress is not None:
                on_progress(job.get("progress", 0.0), job.get("message", ""))
            state = job.get("state")
            if state in TERMINAL:
                break
            if time.monotonic() > deadline:
                self.cancel(job["id"])
                raise ServerError(f"the job took longer than {timeout:.0f} s and was cancelled.")
            time.sleep(poll)
            job = self.job(job["id"])
        return job_result(job)


def job_result(job):
    """The result of a finished job, or the error it ended with as a `ServerError`."""
    state = job.get("state")
    if state == "done":
        return job["result"]
    if state == "cancelled":
        raise Cancelled("cancelled.")
    if state == "failed":
        raise ServerError(job.get("error") or "the job failed.")
    raise ServerError(f"the job is still {state}.")


def image_bytes(image):
    """PNG file bytes of one entry of a result's `images`."""
    return base64.b64decode(image["png"])


def _http_error(e):
    try:
        body = json.loads(e.read().decode("utf-8"))
        message, code = body.get("error"), body.get("code")
    except Exception:
        message, code = None, None
    if not message:
        message = f"the server answered {e.code} {e.reason}."
    return ServerError(message, status=e.code, code=code)
