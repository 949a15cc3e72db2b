"""`create_app(settings)`: the FastAPI application of `ganplug serve`. Nothing lives at module level.

Every generation request becomes a job in a worker thread. `POST /v1/<kind>` waits for it and returns
the images (JSON with base64 PNGs, or `?format=png` for one PNG); `POST /v1/jobs/<kind>` returns the
job at once, to poll (`GET /v1/jobs/<id>`), stream (`GET /v1/jobs/<id>/events`) or cancel
(`DELETE /v1/jobs/<id>`). Errors are `{"error": sentence, "code": word}` with a 4xx status.

The request models come from `schema.request_models(settings)`, so the schema at /docs states the limits
this server enforces; a full job queue answers 429 with Retry-After; a checkpoint that cannot be served is
listed under `unusable` in /v1/models and never breaks the other models.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import secrets
import threading
from contextlib import asynccontextmanager
from importlib import resources
from typing import Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ganplug import __version__, fastpath
from ganplug import directions as dirs
from ganplug.checkpoint import load_generator
from ganplug.device import make_runtime
from ganplug.directions import Directions
from ganplug.errors import UserError
from ganplug.serve import schema as S
from ganplug.serve.batching import MicroBatcher, batch_exact
from ganplug.serve.catalog import ModelCache, ModelCatalog, ModelEntry
from ganplug.serve.engine import RUNNERS, Work, batch_images, batch_key
from ganplug.serve.errors import ApiError
from ganplug.serve.jobs import JobQueue
from ganplug.serve.settings import ServeSettings

log = logging.getLogger("ganplug.serve")

ERROR_RESPONSES = {code: {"model": S.ErrorBody} for code in (400, 401, 404, 413, 415, 421, 422)}
BUSY_RESPONSE = {429: {"model": S.ErrorBody, "description": "The job queue is full; retry after `Retry-After` s.",
                       "headers": {"Retry-After": {"schema": {"type": "integer"}}}}}


class Server:
    """The server's state: settings, model catalog and cache, job queue. One per app."""

    def __init__(self, settings: ServeSettings):
        settings.validate()
        self.settings = settings
        self.runtime = make_runtime(settings.device, settings.precision)
        self.catalog = ModelCatalog(settings.models)
        self.cache = ModelCache(self._load, settings.memory_budget_mb << 20)
        self.jobs = JobQueue(workers=settings.workers, keep=settings.jobs_kept, max_pending=settings.max_jobs)
        self.kinds = S.request_models(settings)  # request bodies bounded by this server's limits
        # concurrent generate requests sharing a forward pass: None when --batch-wait-ms is 0 or where a batch
        # would change pixels (batching.batch_exact)
        self.batcher = (MicroBatcher(settings.batch_wait_ms / 1000, settings.max_batch)
                        if settings.batch_wait_ms > 0 and batch_exact(self.runtime) else None)
        self._directions: dict[str, tuple[tuple, Directions]] = {}  # run folder -> (file version, checked file)
        self._compiled: dict[str, S.Compiled] = {}  # model path -> its compiled pass's warm-up (--compile)
        if settings.cuda_graphs and self.runtime.device.type != "cuda":
            raise UserError(f"--cuda-graphs needs a CUDA device; this server runs on {self.runtime.device.type}. "
                            "Drop --cuda-graphs (--compile alone works there) or pass --device cuda.")

    def _load(self, entry: ModelEntry):
        loaded = load_generator(entry.path, device=self.runtime.device)
        self.runtime.prepare_module(loaded.G)
        if self.settings.compile and not entry.spec.image_to_image:
            sizes = (1, self.settings.chunk)
            loaded.fast = fastpath.compile_pass(loaded, sizes, self.settings.cuda_graphs)
            done = fastpath.warm_up(loaded, self.runtime, loaded.fast)
            if not done.traced:
                loaded.fast = None
                log.warning("could not compile %s (torch.compile's trace limit was reached); serving it eagerly",
                            entry.name)
                return loaded
            self._compiled[str(entry.path)] = S.Compiled(batch_sizes=sorted(set(sizes)), seconds=round(done.seconds, 1),
                                                         max_diff_vs_fp32=done.max_diff,
                                                         cuda_graphs=self.settings.cuda_graphs)
            log.warning("compiled %s for batch sizes %s in %.1f s; max uint8 difference from eager fp32: %d",
                        entry.name, "/".join(map(str, sorted(set(sizes)))), done.seconds, done.max_diff)
        return loaded

    def model_info(self, entry: ModelEntry) -> S.ModelInfo:
        spec = entry.spec
        has_file = not spec.image_to_image and dirs.default_path_of(entry.path).is_file()
        supports = S.Supports(
            generate=not spec.image_to_image, truncation=not spec.image_to_image,
            variations=not spec.image_to_image, interpolate=not spec.image_to_image,
            style_mix=spec.style_based, translate=spec.image_to_image, project=spec.style_based,
            edits=has_file,
        )
        count = None
        if has_file:
            try:
                count = dirs.summary(dirs.default_path_of(entry.path))[0]
            except UserError:
                pass  # a damaged file: listed as having edits (as before); using them says what is wrong
        return S.ModelInfo(name=entry.name, arch=spec.arch, size=spec.size, channels=spec.channels, z_dim=spec.z_dim,
                           step=entry.step, loaded=self.cache.is_loaded(entry), supports=supports, directions=count,
                           compiled=self._compiled.get(str(entry.path)) if self.cache.is_loaded(entry) else None)

    def directions_file(self, name: str):
        """(entry, path) of a model's directions file: 404 `no_directions` when it has none, naming the fix."""
        entry = self.catalog.resolve(name)
        path = dirs.default_path_of(entry.path)
        if entry.spec.image_to_image:
            raise ApiError(404, "no_directions", f"model {name!r} is an image-to-image ({entry.spec.arch}) model: "
                                                 "it has no latent space, so no directions.")
        if not path.is_file():
            raise ApiError(404, "no_directions", f"model {name!r} has no directions file ({dirs.DEFAULT_NAME} in its "
                                                 "run folder); make one with `ganplug directions RUN`.")
        return entry, path

    def directions_info(self, name: str) -> S.DirectionsInfo:
        _, path = self.directions_file(name)
        try:
            count, space = dirs.summary(path)
            return S.DirectionsInfo(count=count, space=space, names=dirs.read_names(path, count))
        except UserError as e:
            reason = str(e).replace(str(path.parent), "RUN")  # clients see names, not this machine's paths
            raise ApiError(422, "bad_directions", f"model {name!r}: {reason}") from None

    def save_direction_names(self, name: str, names: list[str]) -> S.DirectionsInfo:
        _, path = self.directions_file(name)
        try:
            dirs.save_names(path, names)
        except UserError as e:
            raise ApiError(422, "bad_names", f"model {name!r}: " + str(e).replace(str(path.parent), "RUN")) from None
        except OSError as e:
            raise ApiError(422, "not_saved", f"model {name!r}: could not save the names beside its directions file "
                                             f"({e.strerror or e}).") from None
        return self.directions_info(name)

    def loaded(self, entry: ModelEntry):
        """The entry's generator; a file whose weights do not load becomes unusable, with its reason."""
        try:
            return self.cache.get(entry)
        except UserError as e:
            reason = self.catalog.refuse(entry, str(e))
            raise ApiError(422, "model_unusable", f"model {entry.name!r} cannot be used: {reason}") from None

    def directions_for(self, entry: ModelEntry, loaded) -> Directions:
        """The directions file in the model's run folder, checked against its weights once per file version."""
        path = dirs.default_path(loaded)
        try:
            st = path.stat()
        except OSError:
            raise ApiError(422, "no_directions",
                           f"model {entry.name!r} has no directions file ({dirs.DEFAULT_NAME} in its run folder), "
                           "so it cannot take `edits`; make one with `ganplug directions RUN`.") from None
        version = (st.st_mtime_ns, st.st_size, id(loaded))
        cached = self._directions.get(str(path))
        if cached is not None and cached[0] == version:
            return cached[1]
        try:
            found = dirs.load(path, loaded)
        except UserError as e:
            reason = str(e).replace(str(path.parent), "RUN")  # clients see names, not this machine's paths
            raise ApiError(422, "bad_directions", f"model {entry.name!r}: {reason}") from None
        self._directions[str(path)] = (version, found)
        return found

    def submit(self, kind: str, req: S._Output):
        entry = self.catalog.resolve(req.model)  # unknown or unusable model: 404/422 now, not inside the job
        runner = RUNNERS[kind]

        key = batch_key(entry.name, req) if kind == "generate" and self.batcher is not None else None
        offer = None if key is None else self.batcher.offer(key, batch_images(req), req, threading.Event())

        def work(ctx):
            try:
                ctx.progress(0.0, f"loading {entry.name}")
                loaded = self.loaded(entry)
                return runner(Work(entry.name, loaded, self.runtime, self.settings, ctx,
                                   directions=lambda: self.directions_for(entry, loaded),
                                   batcher=self.batcher, offer=offer), req)
            finally:
                if offer is not None:  # a job that stopped before its batch: nobody computes it for nothing
                    self.batcher.withdraw(offer)

        try:
            job = self.jobs.submit(kind, work)
        except BaseException:
            if offer is not None:
                self.batcher.withdraw(offer)
            raise
        if offer is not None:
            offer.cancelled = job.cancel_event
        return job


def job_info(job, with_result: bool = True) -> S.JobInfo:
    return S.JobInfo(id=job.id, kind=job.kind, state=job.state, progress=job.progress, message=job.message,
                     error=job.error, created=job.created, result=job.result if with_result else None)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=headers)


# Request fields bounded by a server limit (see schema.request_models): going over one is refused with the
# limit's own code and a sentence naming the option that sets it, not as a generic validation error.
_LIMITED = {
    "count": ("batch_too_large", "images per request (--max-batch)"),
    "seeds": ("batch_too_large", "seeds per request"),
    "frames": ("batch_too_large", "frames per request (never more than --max-batch)"),
    "row_seeds": ("batch_too_large", "row seeds per request"),
    "col_seeds": ("batch_too_large", "column seeds per request"),
    "size": ("too_large", "px a side (--max-side)"),
    "width": ("too_large", "px a side (--max-side)"),
    "height": ("too_large", "px a side (--max-side)"),
}


def _over_limit(exc: RequestValidationError) -> JSONResponse | None:
    """A 422 naming the server limit a request went over, or None when the request is wrong otherwise."""
    for err in exc.errors():
        loc = err.get("loc", ())
        field = loc[1] if len(loc) == 2 and loc[0] == "body" else None  # the field itself, not one of its items
        ctx = err.get("ctx") or {}
        limit = ctx.get("le", ctx.get("max_length"))
        if field in _LIMITED and err.get("type") in ("less_than_equal", "too_long") and limit is not None:
            code, unit = _LIMITED[field]
            given = ctx.get("actual_length", err.get("input"))
            return _error(422, code, f"{field}: {given} is over this server's limit of {limit} {unit}.")
    return None


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route at this path answers: Starlette's own 405 names only the first route that
    matched the path (GET /v1/jobs/{id} hides DELETE), so ask every route about every method."""
    routes = request.app.router.routes
    return ", ".join(m for m in _METHODS
                     if any(r.matches({**request.scope, "method": m})[0] == Match.FULL for r in routes))


def _validation_sentence(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


class BodyLimit:
    """Pure-ASGI guard: a request body over the limit is refused with 413 before anyone parses it."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = _error(413, "upload_too_large", f"the request body is over the {self.max_bytes} byte limit.")
        try:
            if length is not None and int(length) > self.max_bytes:
                return await too_big(scope, receive, send)
        except ValueError:
            return await _error(400, "bad_request", "invalid Content-Length header.")(scope, receive, send)
        seen = 0
        exceeded = False

        async def limited_receive():
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # stop reading; the app sees a disconnect, the client a 413
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not exceeded:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded:
            await too_big(scope, receive, send)


def create_app(settings: ServeSettings) -> FastAPI:
    server = Server(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        server.jobs.shutdown()

    app = FastAPI(title="ganplug", version=__version__, lifespan=lifespan,
                  description="Generate concept images from ganplug models: for the Krita and Blender plugins "
                              "and the web page at /.")
    app.state.server = server
    _add_error_handlers(app)
    _add_guard(app, settings)
    app.include_router(_api(server))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        html = resources.files("ganplug.serve").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    return app




def _add_error_handlers(app: FastAPI) -> None:
    """Every error is a JSON sentence with a code, never a traceback."""
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(UserError)
    async def _user_error(request: Request, exc: UserError):
        return _error(400, "bad_input", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _over_limit(exc) or _error(422, "invalid_request", _validation_sentence(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers, message = dict(exc.headers or {}), str(exc.detail)
        if exc.status_code == 405:  # RFC 9110: a 405 must say which methods the resource does allow
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
            message = f"{request.method} is not allowed on {request.url.path}; it answers {headers['Allow']}."
        return _error(exc.status_code, code, message, headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, "internal", "internal server error; the server log has the details.")



def _add_guard(app: FastAPI, settings: ServeSettings) -> None:
    """The host check and the token, then the upload size limit."""
    @app.middleware("http")
    async def _guard(request: Request, call_next):
        if not settings.host_allowed(request.headers.get("host", "")):
            return _error(421, "bad_host", "this server answers only to its own address (Host header refused).")
        if settings.token:
            given = request.headers.get("x-ganplug-token") or request.query_params.get("token") or ""
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not secrets.compare_digest(given.encode(), settings.token.encode()):
                return _error(401, "unauthorized", "this server needs its token: send `Authorization: Bearer TOKEN` "
                                                   "(or open the page as /?token=TOKEN).",
                              {"WWW-Authenticate": "Bearer"})  # RFC 9110: a 401 names its scheme
        return await call_next(request)

    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)


def _api(server: Server) -> APIRouter:
    """The /v1 routes: transport only; every operation is ganplug.ops through the server's job queue."""
    v1 = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)

    @v1.get("/health", response_model=S.Health, tags=["server"])
    def health() -> S.Health:
        return S.Health(version=__version__, device=str(server.runtime.device),
                        models=len(server.catalog.entries()), unusable=len(server.catalog.unusable()),
                        jobs_active=server.jobs.active())

    @v1.get("/version", response_model=S.Version, tags=["server"])
    def version() -> S.Version:
        return S.Version(version=__version__)

    @v1.get("/models", response_model=S.ModelList, tags=["models"])
    def models() -> S.ModelList:
        usable = [server.model_info(e) for e in server.catalog.entries().values()]
        unusable = [S.UnusableModel(name=u.name, reason=u.reason) for u in server.catalog.unusable().values()]
        return S.ModelList(models=usable, unusable=unusable)

    @v1.get("/models/{name}/directions", response_model=S.DirectionsInfo, tags=["models"])
    def directions(name: str) -> S.DirectionsInfo:
        """The model's latent directions (for `edits`): how many, their space and the names given to them."""
        return server.directions_info(name)

    @v1.put("/models/{name}/directions/names", response_model=S.DirectionsInfo, tags=["models"])
    def direction_names(name: str, body: S.DirectionNames) -> S.DirectionsInfo:
        """Name the directions (saved beside the run's directions file, for this version of it)."""
        return server.save_direction_names(name, body.names)

    def add_kind(kind: str, req_cls: type) -> None:
        async def run_sync(req, format=Query("json")):
            job = server.submit(kind, req)
            await asyncio.wrap_future(job.future)
            if job.state != S.JobState.done:
                raise ApiError(job.error_status if job.error else 409, job.error_code, job.error or "cancelled")
            result: S.ImagesResponse = job.result
            if format == "png":
                return Response(_grid_png(result), media_type="image/png")
            return result

        async def run_job(req):
            return job_info(server.submit(kind, req))

        # Annotations are strings under `from __future__ import annotations`; give FastAPI the real class.
        run_sync.__annotations__.update(req=req_cls, format=Literal["json", "png"])
        run_job.__annotations__.update(req=req_cls)
        v1.add_api_route(f"/{kind}", run_sync, methods=["POST"], response_model=S.ImagesResponse, tags=["generate"],
                         summary=f"{kind} (waits for the images)",
                         responses={200: {"content": {"image/png": {}}}, 409: {"model": S.ErrorBody}, **BUSY_RESPONSE})
        v1.add_api_route(f"/jobs/{kind}", run_job, methods=["POST"], response_model=S.JobInfo, status_code=202,
                         tags=["jobs"], summary=f"{kind} as a job (returns at once)", responses=BUSY_RESPONSE)

    for kind, req_cls in server.kinds.items():
        add_kind(kind, req_cls)

    @v1.get("/jobs", response_model=S.JobList, tags=["jobs"])
    def jobs() -> S.JobList:
        return S.JobList(jobs=[job_info(j, with_result=False) for j in server.jobs.list()])

    @v1.get("/jobs/{job_id}", response_model=S.JobInfo, tags=["jobs"])
    def job(job_id: str) -> S.JobInfo:
        return job_info(server.jobs.get(job_id))

    @v1.delete("/jobs/{job_id}", response_model=S.JobInfo, tags=["jobs"])
    def cancel(job_id: str) -> S.JobInfo:
        return job_info(server.jobs.cancel(job_id), with_result=False)

    @v1.get("/jobs/{job_id}/events", tags=["jobs"], responses={200: {"content": {"text/event-stream": {}}}})
    async def events(job_id: str):
        job = server.jobs.get(job_id)

        async def stream():
            seen = -1
            while True:
                if job.version != seen:
                    seen = job.version
                    info = job_info(job, with_result=False)
                    yield f"event: {info.state.value}\ndata: {info.model_dump_json()}\n\n"
                    if job.finished:
                        return
                await asyncio.sleep(0.05)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    return v1


def _grid_png(result: S.ImagesResponse) -> bytes:
    """One PNG: the image itself, or all images side by side in a square-ish grid."""
    from PIL import Image

    from ganplug.sampling import make_grid

    images = [Image.open(io.BytesIO(base64.b64decode(im.png))) for im in result.images]
    if len(images) == 1:
        return base64.b64decode(result.images[0].png)
    import numpy as np
    import torch

    mode = "RGBA" if any(im.mode == "RGBA" for im in images) else "RGB"
    arr = np.stack([np.asarray(im.convert(mode)) for im in images])
    buf = io.BytesIO()
    make_grid(torch.from_numpy(arr).permute(0, 3, 1, 2)).save(buf, format="PNG")
    return buf.getvalue()


def dumps_openapi(settings: ServeSettings) -> str:
    return json.dumps(create_app(settings).openapi(), indent=2)
