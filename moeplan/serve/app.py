"""The FastAPI application: routes over `moeplan.serve.api` and `jobs`, errors as one line, auth, limits, logs.

Every error answer is `{"detail": "<one line>"}` with a 4xx status; a 5xx means a bug (logged with its
traceback). The OpenAPI schema (/openapi.json, browsable at /docs) documents each of them.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import sys
import time
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError

from moeplan import __version__
from moeplan.errors import MoeplanError, UsageError
from moeplan.flops.conventions import Convention
from moeplan.flops.count import Count
from moeplan.laws import LAWS
from moeplan.laws.model import Law
from moeplan.laws.reports import Derivation, Leverage, Prediction
from moeplan.planner import Plan, PlanRequest
from moeplan.serve import api, db, jobs
from moeplan.serve.settings import Settings

log = logging.getLogger("moeplan.serve")
access = logging.getLogger("moeplan.serve.access")


class ErrorMessage(BaseModel):
    detail: str


class Health(BaseModel):
    status: str
    version: str
    worker: str
    storage: str
    queued_jobs: int
    running_jobs: int


def _errors(*codes: int, json_route: bool = True) -> dict:
    """Error answers for OpenAPI: always JSON `ErrorMessage`, also on routes answering text or SVG."""
    if json_route:
        return {code: {"model": ErrorMessage} for code in codes}
    ref = {"schema": {"$ref": "#/components/schemas/ErrorMessage"}}
    return {code: {"description": "Error", "content": {"application/json": ref}} for code in codes}


COMMON = (400, 401, 413, 422)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def _validation_detail(errors) -> str:
    """The first problem with where it is: `flops: Input should be greater than 0` (body prefix dropped)."""
    first = errors[0]
    if first.get("type") == "json_invalid":
        return one_line(f"the body is not JSON: {first.get('ctx', {}).get('error', 'invalid')}")
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return one_line(f"{'.'.join(loc)}: {msg}{more}" if loc else f"{msg}{more}")


DRAIN = 64  # bodies up to this many times the limit are read (and dropped) before the 413, so clients see it


class LimitsAndLogs:
    """ASGI middleware: refuse bodies over the limit (413) before any route reads them; one JSON access-log
    line per request (no headers, so no tokens)."""

    def __init__(self, app, max_body: int):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status, sent = time.perf_counter(), [500], [0]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body":
                sent[0] += len(message.get("body", b""))
            await send(message)

        try:
            declared = dict(scope.get("headers") or []).get(b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > DRAIN * self.max_body):
                return await self._too_large(sending)  # and close: not worth reading
            body, more, read = bytearray(), True, 0
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                read += len(chunk)
                more = message.get("more_body", False)
                if read <= self.max_body:
                    body += chunk
                elif read > DRAIN * self.max_body:
                    return await self._too_large(sending)
            if read > self.max_body:  # read to the end, so the client is listening when the answer comes
                return await self._too_large(sending)
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": bytes(body), "more_body": False}
                return await receive()

            await self.app(scope, replay, sending)
        finally:
            client = scope.get("client")
            access.info(json.dumps({
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "worker": db.WORKER,
                "client": f"{client[0]}:{client[1]}" if client else None, "method": scope["method"],
                "path": scope["path"], "status": status[0], "bytes": sent[0],
                "ms": round(1000 * (time.perf_counter() - started), 2)}))

    async def _too_large(self, send):
        body = json.dumps({"detail": f"request body over this service's limit of {self.max_body} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings | None = None, run_jobs: bool = True) -> FastAPI:
    """The service on `settings.storage`; `run_jobs=False` leaves jobs to other workers (tests)."""
    settings = settings or Settings.from_env()
    tokens = settings.tokens()
    engine = db.connect(settings.storage)
    plans = api.PlanService(settings, engine)
    runner = jobs.Runner(settings, engine)

    @asynccontextmanager
    async def lifespan(_app):
        if run_jobs:
            runner.start()
        log.info(json.dumps({"event": "worker started", "worker": db.WORKER,
                             "storage": db.display_url(settings.storage), "auth": bool(tokens)}))
        yield
        if run_jobs:
            runner.stop()
        engine.dispose()
        log.info(json.dumps({"event": "worker stopped", "worker": db.WORKER}))

    app = FastAPI(title="moeplan", version=__version__, lifespan=lifespan,
                  description="Plan Mixture-of-Experts pre-training runs: exact counts, published scaling laws, "
                              "certified optima. The request and response bodies are moeplan's Python API "
                              "models; every error is {\"detail\": one line}. See docs/service.md.")
    app.add_middleware(LimitsAndLogs, max_body=settings.max_body_bytes)
    bearer = HTTPBearer(auto_error=False, description="a token from the server's --token-file")

    def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        # (a default, not Annotated: `bearer` is local, and annotations here are strings)
        if not tokens:
            return
        given = credentials.credentials if credentials else ""
        if not any(hmac.compare_digest(given.encode(), t.encode()) for t in tokens):
            raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})

    router = APIRouter(prefix="/api", dependencies=[Depends(authorised)])

    @router.post("/plan", response_model=Plan, responses=_errors(*COMMON, 429, 503),
                 summary="moeplan plan: the buildable MoE with the lowest predicted loss for a budget")
    def plan_endpoint(request: PlanRequest,
                      verify: Annotated[bool, Query(description="enumerate the whole space; report regret")] = False):
        return plans.plan(request, verify)

    @router.post("/plot/{kind}", responses={200: {"content": {"image/svg+xml": {"schema": {"type": "string"}}}}}
                 | _errors(*COMMON, json_route=False),
                 response_class=Response, summary="moeplan plan --plot: one figure as SVG")
    def plot_endpoint(kind: api.PlotKind, request: PlanRequest):
        return Response(api.plan_svg(request, kind, settings), media_type="image/svg+xml")

    @router.post("/count", response_model=Count, responses=_errors(*COMMON), summary="moeplan count")
    def count_endpoint(request: api.CountRequest):
        return api.count_of(request)

    @router.post("/count/hf", response_model=Count, responses=_errors(*COMMON),
                 summary="moeplan count CONFIG.json: the body is a Hugging Face config.json")
    def count_hf_endpoint(config: Annotated[dict[str, Any], Body(description="a transformers config.json")],
                          convention: Convention = Convention.EXACT, seq_len: Annotated[int | None, Query(ge=1)] = None,
                          causal: bool = True):
        request = api.CountRequest(hf_config=config, seq_len=seq_len, convention=convention, causal=causal)
        return api.count_of(request)

    @router.get("/laws", response_model=list[Law], responses=_errors(401), summary="moeplan laws")
    def laws_endpoint():
        return list(LAWS.values())

    @router.post("/derive", response_model=Derivation, responses=_errors(*COMMON), summary="moeplan derive")
    def derive_endpoint(request: api.DeriveRequest):
        return api.derivation(request)

    @router.post("/predict", response_model=Prediction, responses=_errors(*COMMON), summary="moeplan predict")
    def predict_endpoint(request: api.PredictRequest):
        return api.prediction(request)

    @router.post("/leverage", response_model=Leverage, responses=_errors(*COMMON), summary="moeplan leverage")
    def leverage_endpoint(request: api.LeverageRequest):
        return api.leverage_of(request)

    @router.post("/export", response_class=PlainTextResponse, responses=_errors(*COMMON, json_route=False),
                 summary="moeplan export: config.json (hf) or Megatron-LM arguments")
    def export_endpoint(request: api.ExportRequest):
        return PlainTextResponse(api.export_text(request))

    @router.post("/fit", status_code=202, response_model=jobs.Job, responses=_errors(*COMMON),
                 summary="moeplan fit, as a job: poll GET /api/jobs/{id}")
    def fit_endpoint(request: jobs.FitJob):
        from moeplan.laws import get_law

        get_law(request.law)  # an unknown law is a 400 now, not a failed job later
        job = jobs.submit(engine, "fit", request)
        runner.wake.set()
        return job

    @router.post("/frontier", status_code=202, response_model=jobs.Job, responses=_errors(*COMMON),
                 summary="moeplan frontier, as a job: poll GET /api/jobs/{id}")
    def frontier_endpoint(request: jobs.FrontierJob):
        jobs.check_frontier(request, settings)
        job = jobs.submit(engine, "frontier", request)
        runner.wake.set()
        return job

    @router.get("/jobs/{job_id}", response_model=jobs.Job, responses=_errors(401, 404, 422), summary="a job's state")
    def job_endpoint(job_id: str):
        job = jobs.get(engine, job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return job

    @router.get("/studies/{name}", response_model=api.StudyLink, responses=_errors(401, 404, 422),
                summary="a stored study: its id, trials and optuna-dashboard link")
    def study_endpoint(name: str):
        try:
            return api.study_link(settings, name)
        except MoeplanError as err:
            raise HTTPException(404, str(err)) from None

    app.include_router(router)

    @app.get("/health", response_model=Health, responses=_errors(503), summary="liveness and database check")
    def health():
        import sqlalchemy as sa

        try:
            with engine.connect() as conn:
                counts = dict(conn.execute(sa.select(db.jobs.c.status, sa.func.count())
                                           .where(db.jobs.c.status.in_(("queued", "running")))
                                           .group_by(db.jobs.c.status)).all())
        except sa.exc.SQLAlchemyError as err:
            raise HTTPException(503, one_line(f"database unreachable: {type(err).__name__}")) from None
        return Health(status="ok", version=__version__, worker=db.WORKER, storage=db.display_url(settings.storage),
                      queued_jobs=counts.get("queued", 0), running_jobs=counts.get("running", 0))

    page = resources.files("moeplan.serve") / "page"

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return HTMLResponse((page / "index.html").read_text())

    app.mount("/static", StaticFiles(directory=str(page)), name="static")
    _handlers(app)
    return app


def _handlers(app: FastAPI) -> None:
    def error(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"detail": one_line(detail)}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, err: RequestValidationError):
        return error(422, _validation_detail(err.errors()))

    @app.exception_handler(ValidationError)
    async def _invalid_model(_request: Request, err: ValidationError):
        return error(422, _validation_detail(err.errors()))

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, err: HTTPException):
        return error(err.status_code, str(err.detail), getattr(err, "headers", None))

    @app.exception_handler(api.Busy)
    async def _busy(_request: Request, err: api.Busy):
        return error(err.status, str(err), {"Retry-After": "5"})

    @app.exception_handler(MoeplanError)
    async def _domain(_request: Request, err: MoeplanError):
        return error(400 if isinstance(err, UsageError) else 422, str(err))

    @app.exception_handler(ValueError)
    async def _value(_request: Request, err: ValueError):  # the CLI's exit 1 for the same input
        return error(422, f"{type(err).__name__}: {err}")

    @app.exception_handler(TypeError)
    async def _type(_request: Request, err: TypeError):  # a model validator meeting a value of the wrong type
        log.warning(json.dumps({"event": "TypeError answered 422", "error": str(err)}))
        return error(422, f"a value of the wrong type: {err}")

    @app.exception_handler(ArithmeticError)
    async def _arith(_request: Request, err: ArithmeticError):
        return error(422, f"{type(err).__name__}: {err}")


def app_from_env() -> FastAPI:
    """uvicorn's factory for `moeplan serve --workers N`: settings come from the environment."""
    configure_logging()
    return create_app(Settings.from_env())


def configure_logging() -> None:
    """JSON lines on stderr: one per request (moeplan.serve.access) and per worker or job event."""
    if logging.getLogger("moeplan.serve").handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("moeplan.serve",):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
