"""`textvae serve`'s JSON API through Starlette's test client: what each route answers, that it answers what the
Python API would, and that every bad request gets a 4xx with a one-line message."""

import asyncio
import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from words import TINY_MODEL

import textvae
from textvae.api import Model
from textvae.cli.commands import cli
from textvae.data.tokenizer import CharTokenizer
from textvae.io.checkpoint import RunInfo
from textvae.model.vae import TextVAE
from textvae.settings import ModelConfig

pytest.importorskip("starlette")
from starlette.testclient import TestClient

from textvae.serve import Explorer, LatentMap
from textvae.serve.app import STATIC, Worker, create_app, loopback
from textvae.serve.query import BadRequest


@pytest.fixture(scope="module")
def model(trained_run) -> Model:
    return textvae.load(trained_run)


@pytest.fixture(scope="module")
def client(model, tiny_corpus) -> TestClient:
    """The tiny model, with the tiny corpus as the map's items."""
    return TestClient(create_app(Explorer.open(model, str(tiny_corpus))), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def conditional() -> TestClient:
    """An untrained conditional model with label dropout (so it takes guidance), and a few labelled items."""
    items = ["abba", "cab", "dead", "zoo", "yolk", "xyz"]
    tok = CharTokenizer.fit(items)
    torch.manual_seed(0)
    net = TextVAE(ModelConfig(vocab_size=tok.vocab_size, num_labels=2, null_label=True, **TINY_MODEL))
    m = Model(net, tok, RunInfo(labels=("low", "high"), longest_item=4))
    return TestClient(create_app(Explorer(m, items, ["low"] * 3 + ["high"] * 3, "six words")),
                      raise_server_exceptions=False)


def post(client, route, **body):
    r = client.post(f"/api/{route}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------------------- each route, against the Python API

def test_interpolate_gives_the_apis_path_with_changes_and_endpoint_fidelity(client, model):
    r = post(client, "interpolate", a="apple", b="river", steps=7)
    assert r["texts"] == model.interpolate("apple", "river", steps=7, strategy="greedy")
    assert r["fractions"] == [i / 6 for i in range(7)]
    assert ["".join(p for p, _ in pieces) for pieces in r["changed"]] == r["texts"]     # pieces rebuild each row
    assert r["fidelity"]["a"]["decoded"] == r["texts"][0] and r["fidelity"]["b"]["decoded"] == r["texts"][-1]
    exact = r["fidelity"]["a"]["exact"]
    assert exact == (r["texts"][0] == "apple") == (r["fidelity"]["a"]["edit_distance"] == 0)
    assert post(client, "interpolate", a="apple", b="river", method="slerp", steps=3)["texts"] == \
        model.interpolate("apple", "river", steps=3, method="slerp", strategy="greedy")


def test_routes_pass_only_the_decoding_fields_a_request_gives(client, model, monkeypatch):
    """The API's own defaults decide the rest, whatever they become, but a read-out is greedy unless asked."""
    seen = {}
    monkeypatch.setattr(model, "interpolate", lambda a, b, **kw: seen.update(kw) or ["x"] * kw["steps"])
    post(client, "interpolate", a="apple", b="river")
    assert seen == {"steps": 7, "method": "lerp", "seed": None, "label": None, "label_b": None, "strategy": "greedy"}
    seen.clear()
    post(client, "interpolate", a="apple", b="river", strategy="beam", beam=3, seed=4)
    assert seen["strategy"] == "beam" and seen["beam"] == 3 and seen["seed"] == 4 and "temperature" not in seen
    seen.clear()
    post(client, "interpolate", a="apple", b="river", beam=3)                      # a beam width asks for beam search
    assert seen["strategy"] == "beam" and seen["beam"] == 3


def test_near_and_samples_repeat_with_a_seed_and_match_generate(client, model):
    near = post(client, "near", text="apple", n=10, radius=0.5, seed=3)["texts"]
    assert near == model.generate(10, seed=3, near="apple", radius=0.5)
    assert post(client, "near", text="apple", n=10, radius=0.5, seed=3)["texts"] == near
    samples = post(client, "sample", n=5, seed=1, temperature=0.7, top_p=0.9)["texts"]
    assert samples == model.generate(5, seed=1, temperature=0.7, top_p=0.9)
    assert len(post(client, "sample", n=3, strategy="greedy")["texts"]) == 3


def test_encode_decode_and_reconstruct_agree_with_the_api(client, model):
    r = post(client, "encode", texts=["apple", "river"])
    np.testing.assert_allclose(r["codes"], model.encode(["apple", "river"]), atol=1e-4)
    assert len(r["logvars"]) == 2 and len(r["logvars"][0]) == model.latent_dim
    assert post(client, "decode", z=r["codes"])["texts"] == model.decode(np.asarray(r["codes"], dtype=np.float32), strategy="greedy")
    assert post(client, "decode", z=r["codes"][0])["texts"] == model.decode(np.asarray(r["codes"][:1]), strategy="greedy")
    out = post(client, "reconstruct", text="apple")
    assert out["text"] == model.reconstruct(["apple"], strategy="greedy")[0] and out["exact"] == (out["text"] == "apple")
    assert post(client, "encode", texts=["app€"])["unknown"] == ["€"]              # the page warns of <unk>


def test_map_projects_held_out_codes_and_decodes_any_point_of_its_plane(client, model, tiny_corpus):
    info = client.get("/api/info").json()
    assert info["map"]["items"] > 100 and info["latent_dim"] == model.latent_dim and not info["conditional"]
    m = client.get("/api/map").json()
    assert len(m["texts"]) == len(m["x"]) == len(m["y"]) == info["map"]["items"] and m["labels"] is None
    assert 0 < m["variance"][1] <= m["variance"][0] < 1
    mu = model.encode(m["texts"][:3])
    plane = LatentMap.of(model.encode(m["texts"]), m["texts"], None)
    np.testing.assert_allclose((mu - plane.origin) @ plane.axes.T, np.c_[m["x"][:3], m["y"][:3]], atol=1e-3)
    x, y = 0.3, -0.2
    np.testing.assert_allclose((plane.code(x, y) - plane.origin) @ plane.axes.T, [x, y], atol=1e-5)
    assert post(client, "decode", xy=[x, y])["texts"] == model.decode(plane.code(x, y)[None], strategy="greedy")


def test_a_run_without_its_corpus_serves_everything_but_the_map(model):
    client = TestClient(create_app(Explorer.open(model)))                 # the tiny run records no corpus
    assert client.get("/api/info").json()["map"]["items"] == 0
    r = client.get("/api/map")
    assert r.status_code == 404 and r.json()["error"].startswith("no map")
    assert client.post("/api/decode", json={"xy": [0, 0]}).status_code == 404
    assert client.post("/api/sample", json={"n": 2}).status_code == 200


def test_conditional_models_take_labels_guidance_and_label_transfer(conditional):
    m = conditional.app.state.explorer.model
    info = conditional.get("/api/info").json()
    assert info["conditional"] and info["guidable"] and info["labels"] == ["low", "high"]
    r = conditional.post("/api/sample", json={"n": 2})
    assert r.status_code == 400 and "conditional" in r.json()["error"]
    assert post(conditional, "sample", n=3, label="high", seed=2, guidance=2)["texts"] == \
        m.generate(3, seed=2, label="high", guidance=2)
    assert post(conditional, "reconstruct", text="cab", label="low", to_label="high")["text"] == \
        m.reconstruct(["cab"], label="low", to_label="high", strategy="greedy")[0]
    assert post(conditional, "interpolate", a="cab", b="zoo", label="low", label_b="high", steps=4)["texts"] == \
        m.interpolate("cab", "zoo", steps=4, label="low", label_b="high", strategy="greedy")
    assert len(post(conditional, "near", text="cab", label="low", n=2)["texts"]) == 2
    assert post(conditional, "decode", xy=[0, 0], label="high")["texts"]
    mp = conditional.get("/api/map").json()
    assert mp["labels"] == ["low"] * 3 + ["high"] * 3


# ---------------------------------------------------------------------------- bad requests

BIG = "a" * (1 << 20)
# (what, method, route, body (a dict is sent as JSON, bytes as they are), status, part of the message)
BAD_REQUESTS = [
    ("empty text", "POST", "interpolate", {"a": "", "b": "river"}, 400, "a: empty text"),
    ("blank text", "POST", "near", {"text": "   "}, 400, "text: empty text"),
    ("1 MB text", "POST", "interpolate", {"a": BIG, "b": "river"}, 413, "over 64 KB"),
    ("text over the model's length limit", "POST", "reconstruct", {"text": "a" * 5000}, 400, "over this model's limit"),
    ("not JSON", "POST", "sample", b"{n: 3", 400, "not JSON"),
    ("JSON but not an object", "POST", "sample", b"[1, 2]", 400, "must be a JSON object"),
    ("not UTF-8", "POST", "sample", b'{"n": "\xff"}', 400, "not UTF-8"),
    ("NaN", "POST", "near", b'{"text": "apple", "radius": NaN}', 400, "radius: must be a finite number, not NaN"),
    ("Infinity", "POST", "sample", b'{"temperature": Infinity}', 400, "temperature: must be a finite number"),
    ("-Infinity in a code", "POST", "decode", b'{"z": [-Infinity, 0, 0, 0, 0, 0, 0, 0]}', 400,
     "z: must be a finite number"),
    ("1e400", "POST", "near", b'{"text": "apple", "radius": 1e400}', 400, "radius: must be a finite number"),
    ("a whole number of 400 digits", "POST", "sample", b'{"top_p": 1' + b"0" * 400 + b"}", 400,
     "top_p: must be a finite number"),
    ("a lone surrogate in a text", "POST", "reconstruct", b'{"text": "\\ud800abc"}', 400,
     "text: not Unicode text: character 1 is a lone surrogate (U+D800)"),
    ("a lone surrogate in a list of texts", "POST", "encode", b'{"texts": ["apple", "a\\udcff"]}', 400,
     "texts[1]: not Unicode text"),
    ("a lone surrogate in a field name", "POST", "sample", b'{"\\ud800": 1}', 400, 'unknown field "\\ud800"'),
    ("a lone surrogate as a label", "POST", "sample", b'{"label": "\\udcff"}', 400, "trained without labels"),
    ("a lone surrogate, unescaped", "POST", "near", b'{"text": "\xed\xa0\x80"}', 400, "not UTF-8"),
    ("text of the wrong type", "POST", "interpolate", {"a": 5, "b": "river"}, 400, "a: must be a string"),
    ("count of the wrong type", "POST", "sample", {"n": "10"}, 400, "n: must be a whole number"),
    ("true for a number", "POST", "sample", {"n": True}, 400, "n: must be a whole number"),
    ("steps 0", "POST", "interpolate", {"a": "apple", "b": "river", "steps": 0}, 400, "steps: must be between 2"),
    ("steps 10^6", "POST", "interpolate", {"a": "apple", "b": "river", "steps": 10**6}, 400, "between 2 and 100"),
    ("n 10^6", "POST", "sample", {"n": 10**6}, 400, "n: must be between 1 and 100"),
    ("unknown strategy", "POST", "sample", {"strategy": "magic"}, 400, "strategy: must be one of"),
    ("top_p 0", "POST", "sample", {"top_p": 0}, 400, "top_p: must be between"),
    ("unknown method", "POST", "interpolate", {"a": "apple", "b": "river", "method": "cubic"}, 400, "method"),
    ("label for an unconditional model", "POST", "sample", {"label": "x"}, 400, "trained without labels"),
    ("guidance without label dropout", "POST", "sample", {"guidance": 2}, 400, "guidance: needs"),
    ("code of the wrong size", "POST", "decode", {"z": [0.1, 0.2]}, 400, "z: must be a code"),
    ("both a code and a point", "POST", "decode", {"z": [0.0] * 8, "xy": [0, 0]}, 400, "either z"),
    ("too many texts", "POST", "encode", {"texts": ["a"] * 101}, 400, "texts: must be a list of 1 to 100"),
    ("a path in a parameter", "POST", "sample", {"n": 2, "model": "/etc/passwd"}, 400, "unknown field \"model\""),
    ("a path as a label", "POST", "sample", {"label": "../../etc/passwd"}, 400, "trained without labels"),
    ("a path in the URL", "GET", "../../../../etc/passwd", None, 404, "no such page or route"),
    ("a path under /static", "GET", "../static/..%2f..%2fapp.py", None, 404, "no such page or route"),
    ("unknown route", "POST", "train", {}, 404, "no such page or route: /api/train"),
    ("wrong method", "GET", "interpolate", None, 405, "GET is not allowed here; use POST"),
    ("query on a GET route", "GET", "info?file=/etc/passwd", None, 400, "unknown field \"file\""),
]


@pytest.mark.parametrize("what,method,route,body,status,message", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_a_4xx_and_one_line(client, what, method, route, body, status, message):
    data = body if isinstance(body, bytes) else None if body is None else json.dumps(body)
    r = client.request(method, f"/api/{route}", content=data)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error and "\n" not in error and "Traceback" not in error and len(error) < 200


def test_a_string_that_utf8_cannot_hold_goes_out_as_its_escape(model, monkeypatch):
    """A model path whose bytes are not UTF-8 (Python's lone surrogates) is answered, not a 500."""
    monkeypatch.setattr(model, "path", Path("/runs/caf\udce9"))
    r = TestClient(create_app(Explorer(model))).get("/api/info")
    assert r.status_code == 200 and b"caf\\udce9" in r.content and r.json()["model"] == "/runs/caf\udce9"


def test_a_body_without_its_length_is_still_bounded(client):
    def chunks():
        for _ in range(100):
            yield b" " * 1024
    r = client.post("/api/sample", content=chunks())              # chunked: no Content-Length
    assert r.status_code == 413


def test_the_page_is_served_from_the_package_and_fetches_nothing_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and "textvae explorer" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("explorer.js", "explorer.css"):
        assert client.get(f"/static/{name}").status_code == 200
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name


def test_a_host_other_than_this_machine_is_refused(model):
    app = create_app(Explorer(model), allowed_hosts=("127.0.0.1", "localhost"))
    assert TestClient(app, base_url="http://127.0.0.1:8000").get("/api/info").status_code == 200
    r = TestClient(app, base_url="http://attacker.example").get("/api/info")
    assert r.status_code == 400 and "Host" in r.json()["error"]


# ---------------------------------------------------------------------------- serving

def test_the_worker_runs_one_job_at_a_time_and_bounds_the_queue():
    active, most, release = [0], [0], threading.Event()

    def job():
        active[0] += 1
        most[0] = max(most[0], active[0])
        release.wait(5)
        active[0] -= 1
        return torch.is_grad_enabled()

    async def main():
        worker = Worker(max_waiting=3)
        tasks = [asyncio.ensure_future(worker.run(job)) for _ in range(4)]
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert most[0] == 1 and results[:3] == [False] * 3                # serialised, without autograd
    assert isinstance(results[3], BadRequest) and results[3].status == 429


def test_concurrent_requests_decode_in_one_batch_as_they_would_alone(model):
    from textvae.serve.batch import DecodeBatcher
    jobs = [lambda i=i: model.generate(4 + i, seed=i) for i in range(5)]                       # sampled
    jobs += [lambda: model.generate(3, seed=9, strategy="greedy", max_len=4),                   # their own limits
             lambda: model.interpolate("abc", "hello", steps=4, strategy="greedy"),
             lambda: model.reconstruct(["world", "ab"], strategy="greedy"),
             lambda: model.reconstruct(["world"])]                                              # beam: alone
    expected = [job() for job in jobs]

    async def main(worker):
        return await asyncio.gather(*(worker.run(job) for job in jobs))

    batcher = DecodeBatcher(threading.Lock())
    model.decoder.batcher, before = batcher, model.decoder.batcher
    try:
        results = asyncio.run(main(Worker(batcher=batcher)))
    finally:
        model.decoder.batcher = before
    assert results == expected
    assert batcher.jobs == len(jobs) - 1 and batcher.batches < batcher.jobs       # several requests per batch


def test_a_decoding_that_fails_in_a_batch_fails_only_its_own_request(model, monkeypatch):
    from textvae.serve.batch import DecodeBatcher
    real = model.decoder.rows

    def picky(code, *args, **kwargs):               # a fault of one request's codes
        if bool(torch.isnan(code).any()):
            raise ValueError("a code is not a number")
        return real(code, *args, **kwargs)

    jobs = [lambda i=i: model.generate(3, seed=i, strategy="greedy") for i in range(3)]
    expected = [job() for job in jobs]
    nan = np.full((1, model.latent_dim), np.nan, dtype=np.float32)
    jobs.insert(1, lambda: model.decode(nan, strategy="greedy"))
    monkeypatch.setattr(model.decoder, "rows", picky)

    async def main(worker):
        return await asyncio.gather(*(worker.run(job) for job in jobs), return_exceptions=True)

    batcher = DecodeBatcher(threading.Lock())
    monkeypatch.setattr(model.decoder, "batcher", batcher)
    results = asyncio.run(main(Worker(batcher=batcher)))
    assert isinstance(results[1], BadRequest) and "not a number" in str(results[1])
    assert [results[0], *results[2:]] == expected and batcher.batches < batcher.jobs


def test_loopback_addresses():
    assert loopback("127.0.0.1") and loopback("localhost") and loopback("::1") and loopback("127.0.0.2")
    assert not loopback("0.0.0.0") and not loopback("192.168.1.2") and not loopback("example.com")


def test_cli_serve_refuses_a_bad_port_and_a_busy_one(trained_run):
    r = CliRunner().invoke(cli, ["serve", "--model", str(trained_run), "--port", "70000"])
    assert r.exit_code != 0 and "error:" in r.output and "70000" in r.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = CliRunner().invoke(cli, ["serve", "--model", str(trained_run), "--port", str(port)])
    assert r.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in r.output
    assert "no map" in r.output                                   # the tiny run's corpus is not at hand


def test_cli_serve_prints_its_address_and_warns_off_loopback(trained_run, tiny_corpus, monkeypatch):
    from textvae.serve import app
    served, bind = [], app.bind

    def run(explorer, sock):
        served.append((explorer, sock.getsockname()))
        sock.close()

    monkeypatch.setattr(app, "run", run)
    r = CliRunner().invoke(cli, ["serve", "--model", str(trained_run), "--port", "0", "--data", str(tiny_corpus)])
    assert r.exit_code == 0, r.output
    (explorer, (host, port)), = served
    assert host == "127.0.0.1" and f"http://127.0.0.1:{port}" in r.stdout and "warning" not in r.output
    assert len(explorer.items) > 100
    monkeypatch.setattr(app, "bind", lambda host, port: bind("127.0.0.1", 0))       # listen nowhere else here
    r = CliRunner().invoke(cli, ["serve", "--model", str(trained_run), "--host", "0.0.0.0"])
    assert r.exit_code == 0 and "warning: listening on 0.0.0.0" in r.output
