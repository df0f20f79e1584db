"""The Flask application factory.

    from server.app import create_app
    app = create_app(Settings.from_env())          # loads the model once, here

``sam2-matting serve`` runs ``server.wsgi:application()`` under gunicorn (gthread, one worker).
Nothing heavy happens at import time.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from sam2_matting.predictor import MattingPredictor, build_matting_predictor
from server import errors
from server.body_guard import BodyGuard
from server.config import Settings
from server.errors import FORBIDDEN, UNAUTHENTICATED, json_error
from server.exports import ExportJobs
from server.exports import init_app as init_exports
from server.graphql_view import MattingGraphQLView
from server.metrics import create_metrics
from server.schema import build_schema
from server.schema_context import AppContext
from server.sessions import SessionStore

log = logging.getLogger(__name__)

# Routes open without the API token: probes and the static page shell.
PUBLIC_PATHS = {"/healthy", "/ready", "/metrics"}
# Blueprints whose GETs take the token in the query string (see token_in_query_allowed).
TOKEN_IN_QUERY = {"media", "exports"}
EXPOSED_HEADERS = "Frame-Current, Frame-Total, Mask-Type, Content-Length"


def load_predictor(settings: Settings) -> MattingPredictor:
    return build_matting_predictor(
        settings.model,
        settings.checkpoint,
        settings.adapter,
        device=settings.device,
        dtype=settings.dtype,
        checkpoint_dir=settings.checkpoint_dir,
    )


def warm_up(predictor: MattingPredictor) -> None:
    """One forward pass of the image encoder: proves the model loads and answers."""
    import torch

    size = predictor.image_size
    with torch.inference_mode(), predictor.autocast(), predictor.model_lock:
        image = torch.zeros(1, 3, size, size, device=predictor.device)
        predictor.model.forward_image(image)


def create_app(
    settings: Settings | None = None, predictor: MattingPredictor | None = None
) -> Flask:
    """Build the app; loads the model (unless ``predictor`` is given) and scans the gallery."""
    from server.media import MediaLibrary
    from server.media_routes import init_app as init_media
    from server.prompts import service_model

    settings = settings or Settings.from_env()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    predictor = predictor or load_predictor(settings)
    warm_up(predictor)
    library = MediaLibrary(settings)
    store = SessionStore(
        predictor,
        max_sessions=settings.max_sessions,
        ttl=settings.session_ttl,
        max_objects=settings.max_objects,
        replica_id=settings.replica_id,
        model=service_model(settings),
    )
    store.start_reaper()
    metrics = create_metrics(store)
    exports = ExportJobs(settings.data_dir, ttl=settings.export_ttl)
    store.on_close.append(exports.drop_session)
    base_url = settings.api_url.rstrip("/")
    from server.upload_jobs import UploadJobs

    uploads = UploadJobs(library, workers=settings.upload_jobs, ttl=settings.export_ttl)
    services = AppContext(settings, store, library, base_url, exports, uploads=uploads)

    app = Flask(__name__)
    # Under gunicorn: large bodies (uploads) keep a pace and take a bounded share of threads.
    app.wsgi_app = BodyGuard(app.wsgi_app, settings)  # type: ignore[method-assign]
    # Flask refuses larger bodies before reading them; the library enforces the exact limit.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + 1024 * 1024
    app.extensions["sam2_matting"] = services
    app.extensions["sam2_matting_metrics"] = metrics

    view = MattingGraphQLView.as_view(
        "graphql",
        services=services,
        schema=build_schema(settings),
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        allow_queries_via_get=False,
        multipart_uploads_enabled=True,
    )
    app.add_url_rule("/graphql", view_func=view, methods=["GET", "POST"])
    init_media(app, library)
    init_exports(app, exports)

    from server import stream

    stream.init_app(
        app,
        store,
        metrics,
        send_timeout=settings.send_timeout,
        encode_workers=settings.encode_workers,
    )
    from server.preview import init_app as init_preview

    init_preview(app, store)
    from server.page import init_app as init_page

    init_page(app)
    _init_security(app, settings)
    _init_operations(app, predictor, metrics)
    return app


def begin_shutdown(app: Flask) -> None:
    """SIGTERM: refuse new work, end running streams with a final part, cancel exports.

    gunicorn then waits for the open requests (now ending) and runs ``worker_exit``, which
    closes the sessions. Safe to call from any thread, more than once.
    """
    services = app.extensions.get("sam2_matting")
    if services is None:
        return
    streams = services.store.begin_shutdown()
    log.info("shutting down: %d stream(s) cancelled", streams)
    services.exports.shutdown()


def _init_security(app: Flask, settings: Settings) -> None:
    allowed = set(settings.cors_origins)
    principals = settings.principals()  # client name -> token; empty: no authentication

    def principal_of(given: str) -> str | None:
        found = None
        for name, token in principals.items():  # every token is compared: no timing hint
            if hmac.compare_digest(given.encode(), token.encode()):
                found = name
        return found

    # Open without the token; the page's init_app adds its shell to the same set.
    public: set[str] = app.config.setdefault("PUBLIC_PATHS", set())
    public.update(PUBLIC_PATHS)

    @app.before_request
    def guard() -> Response | None:
        g.started = time.perf_counter()
        if not request.mimetype.startswith("multipart/"):
            # Only an upload may be large; other bodies (JSON) are parsed in memory.
            request.max_content_length = settings.max_request_bytes
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS":
            return _preflight(origin, allowed)
        if request.method not in ("GET", "HEAD") and origin and origin not in allowed:
            same = origin.rstrip("/") == request.host_url.rstrip("/")
            if not same:
                # Blocks cross-site form posts (CSRF) without a custom header, which the
                # stock SAM 2 UI does not send with its uploads.
                return json_error(FORBIDDEN, f"origin {origin} is not allowed", 403)
        if principals and request.path not in public:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            in_query = request.args.get("access_token", "")
            if not given and in_query and not token_in_query_allowed():
                return json_error(
                    UNAUTHENTICATED,
                    "?access_token= is accepted only on media downloads (GET); "
                    "send the header Authorization: Bearer <token>",
                    401,
                )
            g.principal = principal_of(given or in_query)
            if g.principal is None:
                return json_error(UNAUTHENTICATED, "missing or wrong API token", 401)
        return None

    @app.after_request
    def cors(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin and origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            response.headers.add("Vary", "Origin")
        return response

    def too_large(err: HTTPException) -> str:
        """Which limit a 413 hit: the body's size, the form's part count or a field's size."""
        limit = request.max_content_length
        length = request.content_length
        if limit is not None and (length is None or length > limit):
            return f"request body over {limit} bytes"
        # werkzeug raises the same error for every form limit; where it was raised tells.
        tb = err.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = tb.tb_frame.f_code.co_name if tb is not None else ""
        if where == "next_event":  # werkzeug.sansio.multipart.MultipartDecoder
            return f"the form has over {request.max_form_parts} parts"
        if where in ("receive_data", "parse"):
            return f"a form field (not a file) is over {request.max_form_memory_size} bytes"
        return (
            f"the request is over a limit: {limit} bytes in all, {request.max_form_parts}"
            f" form parts or {request.max_form_memory_size} bytes in a form field"
        )

    def unsatisfiable(err: HTTPException) -> str:
        size = getattr(err, "length", None)
        of = f": the file has {size} bytes" if size is not None else ""
        return f"range {request.headers.get('Range', '')[:100]!r} cannot be satisfied{of}"

    errors.init_app(
        app,
        {
            404: lambda _: f"no such resource: {request.path[:200]}",
            405: lambda _: f"{request.method} is not allowed here",
            413: too_large,
            415: lambda _: "send Content-Type: application/json",
            416: unsatisfiable,
        },
    )


def token_in_query_allowed() -> bool:
    """``?access_token=`` only where a header cannot be sent: a media or export GET (a
    ``<video>``, ``<img>`` or download link). Never on POST; never logged (server.access_log)."""
    return request.method in ("GET", "HEAD") and request.blueprint in TOKEN_IN_QUERY


def _preflight(origin: str | None, allowed: set[str]) -> Response:
    response = Response(status=204)
    if origin and origin in allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", "Content-Type, Authorization"
        )
        response.headers["Access-Control-Max-Age"] = "600"
        response.headers["Vary"] = "Origin"
    return response


def _init_operations(app: Flask, predictor: MattingPredictor, metrics: Any) -> None:
    @app.get("/healthy")
    def healthy() -> Response:
        return Response("OK", mimetype="text/html")

    @app.get("/ready")
    def ready() -> Response:
        body = {
            "status": "ready",
            "device": str(predictor.device),
            "dtype": str(predictor.dtype).removeprefix("torch."),
            "image_size": predictor.image_size,
        }
        return Response(json.dumps(body), mimetype="application/json")

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), mimetype="text/plain; version=0.0.4")

    @app.after_request
    def count(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.requests.labels(rule, str(response.status_code)).inc()
        return response
