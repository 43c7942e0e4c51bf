"""The explorer over HTTP: a Starlette app with the page at / and a small JSON API under /api/.

Each route reads its request field by field (`query.Query`: sizes, types, ranges, the model's labels) and returns
the model work to do; a bad request is answered with a 4xx status and {"error": "one line"}, never a traceback. The
work then runs one request at a time under the model's lock (`Worker`), so that concurrent users queue instead of
splitting the CPU's threads between them, and the decodings they wait for run as one batch (`batch.DecodeBatcher`).
No request names a file: the page's files are the package's own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files

import torch
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .batch import DecodeBatcher
from .explorer import Explorer, Unavailable
from .query import LIMITS, MAX_BODY, MAX_ITEMS, MAX_STEPS, BadRequest, Query, read_json

MAX_WAITING = 256           # requests queued for the model; one more is told to come back later (429)
WORKER_THREADS = 64         # requests in hand at once (one runs at a time; the others wait for it or its batch)
STATIC = files("textvae.serve") / "static"
log = logging.getLogger("textvae.serve")


# ---------------------------------------------------------------------------- routes: check, then a job
# Each route reads and checks its fields here, on the event loop, and returns the work for the model's thread.

def interpolate(x: Explorer, q: Query):
    a, b = q.text("a"), q.text("b")
    steps = q.integer("steps", 7, 2, MAX_STEPS)
    method = q.choice("method", "lerp", ("lerp", "slerp"))
    label, label_b = q.label("label", required=True), q.label("label_b")
    d = q.decoding()
    q.done()
    return lambda: x.interpolate(a, b, steps, method, label=label, label_b=label_b, **d)


def near(x: Explorer, q: Query):
    text = q.text("text")
    n = q.integer("n", 10, 1, MAX_ITEMS)
    radius = q.number("radius", 1.0, 0, 10)
    label = q.label("label", required=True)
    d = q.decoding()
    q.done()
    return lambda: x.near(text, n, radius, label=label, **d)


def sample(x: Explorer, q: Query):
    n = q.integer("n", 10, 1, MAX_ITEMS)
    label = q.label("label", required=True)
    d = q.decoding()
    q.done()
    return lambda: x.sample(n, label=label, **d)


def encode(x: Explorer, q: Query):
    texts = q.texts("texts")
    label = q.label("label", required=True)
    q.done()
    return lambda: x.encode(texts, label=label)


def decode(x: Explorer, q: Query):
    if ("z" in q.body) == ("xy" in q.body):
        raise BadRequest("give either z (codes) or xy (a point of the map)")
    codes = q.codes("z") if "z" in q.body else None
    xy = q.point("xy") if "xy" in q.body else None
    label = q.label("label", required=True)
    d = q.decoding()
    q.done()
    return lambda: x.decode(codes, xy, label=label, **d)


def reconstruct(x: Explorer, q: Query):
    text = q.text("text")
    label, to_label = q.label("label", required=True), q.label("to_label")
    d = q.decoding()
    q.done()
    return lambda: x.reconstruct(text, label=label, to_label=to_label, **d)


def latent_map(x: Explorer, q: Query):
    q.done()
    return x.map


def info(x: Explorer, q: Query):
    q.done()
    return lambda: {**x.info(), "limits": LIMITS}


POST = {"interpolate": interpolate, "near": near, "sample": sample, "encode": encode, "decode": decode,
        "reconstruct": reconstruct}
GET = {"info": info, "map": latent_map}


# ---------------------------------------------------------------------------- the app

class Worker:
    """Runs model calls without autograd, one at a time under the model's lock, so that requests wait their turn
    rather than oversubscribe the CPU's threads; at most `max_waiting` wait. Each runs in a thread of its own, so
    that a request waiting for its decoding lets the lock go to the next, whose decoding then joins the same
    batch (`batch.DecodeBatcher`)."""

    def __init__(self, max_waiting: int = MAX_WAITING, batcher: DecodeBatcher | None = None):
        self.lock = batcher.lock if batcher is not None else threading.Lock()
        self.batcher = batcher
        self.pool = ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="textvae-model")
        self.max_waiting = max_waiting
        self.waiting = 0

    async def run(self, job):
        if self.waiting >= self.max_waiting:
            raise BadRequest(f"busy: {self.waiting} requests are waiting for the model; try again shortly", 429)
        self.waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, self._run, job)
        finally:
            self.waiting -= 1

    def _run(self, job):
        if self.batcher is None:
            with self.lock:
                return _without_grad(job)
        with self.batcher.request():
            return _without_grad(job)


def _without_grad(job):
    with torch.no_grad():
        try:
            return job()
        except ValueError as e:          # the API refusing an input (a label, a length, guidance): the caller's
            raise BadRequest(" ".join(str(e).split())) from None


def create_app(explorer: Explorer, allowed_hosts: tuple[str, ...] | None = None) -> Starlette:
    """The explorer's app. `allowed_hosts`: the Host names a request may carry (say, the loopback names, against
    DNS rebinding); None takes any."""
    batcher = DecodeBatcher(threading.Lock())
    explorer.model.decoder.batcher = batcher
    worker = Worker(batcher=batcher)

    def endpoint(route):
        async def handle(request: Request) -> JSONResponse:
            body = await read_json(request, MAX_BODY) if request.method == "POST" else dict(request.query_params)
            job = route(explorer, Query(body, explorer.model))
            return Reply(await worker.run(job))
        return handle

    async def page(request: Request) -> FileResponse:
        return FileResponse(str(STATIC / "index.html"))

    routes = [Route("/", page), Mount("/static", StaticFiles(packages=[("textvae.serve", "static")]))]
    routes += [Route(f"/api/{name}", endpoint(route), methods=["POST"]) for name, route in POST.items()]
    routes += [Route(f"/api/{name}", endpoint(route), methods=["GET"]) for name, route in GET.items()]
    app = Starlette(routes=routes, exception_handlers={BadRequest: _refused, HTTPException: _http_error,
                                                      Unavailable: _unavailable, Exception: _unexpected})
    app.add_middleware(Guard, allowed_hosts=allowed_hosts)
    app.state.worker, app.state.explorer = worker, explorer
    return app


class Reply(JSONResponse):
    """A JSON response that encodes whatever its strings hold: a lone surrogate (a model path whose bytes are not
    UTF-8, a character of an old checkpoint) goes out as its \\u escape, where UTF-8 would fail."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
            "utf-8", "backslashreplace")


def _error(status: int, message: str, headers=None) -> JSONResponse:
    return Reply({"error": message}, status_code=status, headers=headers)


async def _refused(request: Request, e: BadRequest) -> JSONResponse:
    return _error(e.status, str(e))


async def _unavailable(request: Request, e: Unavailable) -> JSONResponse:
    return _error(404, str(e))


async def _http_error(request: Request, e: HTTPException) -> JSONResponse:
    message = {404: f"no such page or route: {request.url.path[:100]}",
               405: f"{request.method} is not allowed here; use {(e.headers or {}).get('Allow', 'another method')}"}
    return _error(e.status_code, message.get(e.status_code, e.detail), e.headers)


async def _unexpected(request: Request, e: Exception) -> JSONResponse:
    log.exception("unexpected error on %s", request.url.path)
    return _error(500, f"unexpected {type(e).__name__} in the explorer (a bug: the server's log has the details)")


class Guard:
    """ASGI middleware: refuses a Host that is not allowed (a web page rebinding its name to 127.0.0.1), and
    forbids the page to load anything from elsewhere."""

    HEADERS = ((b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
               (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))

    def __init__(self, app, allowed_hosts: tuple[str, ...] | None = None):
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.allowed is not None:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in self.allowed:
                return await _error(400, f"the Host header must name this machine ({', '.join(sorted(self.allowed))})")(
                    scope, receive, send)

        async def send_secured(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, send_secured)


# ---------------------------------------------------------------------------- serving

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: a free one); OSError when it cannot be had."""
    family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def run(explorer: Explorer, sock: socket.socket) -> None:
    """Serve until Ctrl-C (or SIGTERM). On a loopback address only the loopback Host names are accepted."""
    import uvicorn
    host = sock.getsockname()[0]
    allowed = LOOPBACK_NAMES + (host,) if loopback(host) else None
    config = uvicorn.Config(create_app(explorer, allowed), log_level="warning", access_log=False,
                            limit_concurrency=MAX_WAITING + 16, timeout_keep_alive=5)
    uvicorn.Server(config).run(sockets=[sock])
