"""Fuzzing both doors with generated inputs: JSON bodies on every route of `textvae serve`, and command lines of
every command that decodes (and of train and evaluate, up to reading their files).

Whatever comes in, the answer is a 2xx, or a 4xx whose JSON body holds one line under "error"; an exit of 0, or
of 1 or 2 with one line "error: ..." last on stderr (exit 2, a usage error: that line alone, and nothing on
stdout). Never a 5xx, a traceback, the catch-all "unexpected" line or a numpy warning; and an input is only ever
answered in full when every number in it was finite and every text Unicode text (no lone surrogate).

The quick tier draws a few hundred inputs; the slow one (`pytest -m slow tests/test_fuzz.py`) SLOW_REQUESTS
requests and SLOW_COMMANDS command lines. Both are seeded: every run draws the same inputs.
"""

import json
import math
import warnings
from functools import partial

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from words import TINY_MODEL, WORDS

import textvae
from textvae.api import Model
from textvae.cli.commands import cli
from textvae.data.tokenizer import LONE_SURROGATE, CharTokenizer
from textvae.io.checkpoint import RunInfo
from textvae.model.vae import TextVAE
from textvae.settings import ModelConfig

pytest.importorskip("starlette")
from starlette.testclient import TestClient

from textvae.serve import Explorer
from textvae.serve.app import GET, POST, create_app
from textvae.serve.query import MAX_BEAM, MAX_BODY, MAX_ITEMS, MAX_LEN, MAX_STEPS

QUICK_REQUESTS = 150        # generated requests of the quick tier
QUICK_COMMANDS = 150        # generated command lines of the quick tier
SLOW_REQUESTS = 4000        # and of the slow tier
SLOW_COMMANDS = 4000


def fuzz(strategy, examples: int, check) -> int:
    """Run `check` on `examples` values drawn from `strategy`, the same ones every run; how many it saw."""
    seen = [0]

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(value):
        seen[0] += 1
        check(value)

    one()
    return seen[0]


# ---------------------------------------------------------------------------- values of every kind
# Each kind of field or option has good values (which the model works on) and bad ones (which are refused); an
# input draws a good value three times in four, so that a fair share of inputs reach the model.

LONE = st.integers(0xD800, 0xDFFF).map(chr)              # what JSON's "\ud800" and argv's undecodable bytes give
GOOD_TEXTS = st.one_of(st.sampled_from(WORDS), st.text(st.characters(), min_size=1, max_size=12).filter(str.strip),
                       st.sampled_from(["😀", "\U0010ffff", "e\u0301", "\u202eabc", "\ufeffx", "a b", "a" * 256]))
BAD_TEXTS = st.one_of(st.sampled_from(["", " ", "\t\n", "a\ud800", "\udcff", "\ud83d\ude00", "a" * 257]),
                      st.text(st.one_of(st.characters(), LONE), min_size=1, max_size=12).map(lambda t: t + "\udc80"))
TEXTS = st.one_of(GOOD_TEXTS, GOOD_TEXTS, BAD_TEXTS)
NON_FINITE = ["nan", "NaN", "-nan", "+nan", "NAN", "inf", "-inf", "+inf", "Infinity", "-Infinity", "1e309", "-1e400"]
NOT_UNICODE = st.tuples(GOOD_TEXTS, LONE, st.integers(0, 12)).map(lambda t: t[0][:t[2]] + t[1] + t[0][t[2]:])
JUNK = st.one_of(st.sampled_from(["", "x", "1,5", "0x10", "2.5", "--", "٣", "１", "-h"]), TEXTS)
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | TEXTS,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXTS, inner, max_size=3),
                           max_leaves=6)


def chance(draw, k: int, n: int) -> bool:
    """True k times in n. Hypothesis draws small numbers most and shrinks towards 0, which is False here: an input
    keeps to its good, plain values, and a failing one shrinks to its fewest odd parts."""
    return draw(st.integers(0, n - 1)) >= n - k


def good_or_bad(draw, kind: tuple) -> object:
    good, bad = kind
    return draw(bad if chance(draw, 1, 4) else good)


def holds_surrogate(value) -> bool:
    if isinstance(value, str):
        return LONE_SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(holds_surrogate(k) or holds_surrogate(v) for k, v in value.items())
    return isinstance(value, list) and any(holds_surrogate(v) for v in value)


def holds_non_finite(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(holds_non_finite(v) for v in value.values())
    return isinstance(value, list) and any(holds_non_finite(v) for v in value)


def no_numpy_warnings(caught) -> None:
    runtime = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not runtime, runtime


# ---------------------------------------------------------------------------- the HTTP API

DECODING = ("strategy", "temperature", "top_k", "top_p", "beam", "length_penalty", "repetition_penalty", "max_len",
            "guidance", "seed")
ROUTE_FIELDS = {"interpolate": ("a", "b", "steps", "method", "label", "label_b", *DECODING),
                "near": ("text", "n", "radius", "label", *DECODING),
                "sample": ("n", "label", *DECODING),
                "encode": ("texts", "label"),
                "decode": ("z", "xy", "label", *DECODING),
                "reconstruct": ("text", "label", "to_label", *DECODING),
                "info": (), "map": ()}
INTEGERS = {"n": (1, MAX_ITEMS), "steps": (2, MAX_STEPS), "top_k": (0, 10_000), "beam": (1, MAX_BEAM),
            "max_len": (1, MAX_LEN), "seed": (0, 2**63 - 1)}
NUMBERS = {"temperature": (0, 10), "top_p": (1e-6, 1), "length_penalty": (0, 10), "repetition_penalty": (1, 10),
           "guidance": (0, 20), "radius": (0, 10)}
LATENT = TINY_MODEL["latent_dim"]
MAX_TEXT = 256                  # the tiny models' length limit


def _integers(low: int, high: int) -> tuple:
    good = st.one_of(st.integers(low, min(high, low + 20)), st.sampled_from([low, high]))
    bad = st.one_of(st.sampled_from([low - 1, high + 1, -10**30, 10**30, 10**400, 2**63, 2.0, True, "3"]), JSON_VALUES)
    return good, bad


def _numbers(low: float, high: float) -> tuple:
    good = st.one_of(st.floats(low, high), st.sampled_from([low, high]), st.integers(math.ceil(low), int(high)))
    bad = st.one_of(st.sampled_from([np.nextafter(low, -1), np.nextafter(high, 2e308), math.nan, math.inf, -math.inf,
                                     10**400, -10**400, 1e308, False, "0.5"]), JSON_VALUES)
    return good, bad


def _codes(size: int) -> tuple:
    number = st.floats(-100, 100, width=32)
    code = st.lists(number, min_size=size, max_size=size)
    good = st.one_of(code, st.lists(code, min_size=1, max_size=4), code.map(lambda c: [c] * MAX_ITEMS))
    odd = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 101, -1e300, "1", None]), JSON_VALUES)
    broken = st.tuples(code, st.integers(0, size - 1), odd).map(lambda t: t[0][:t[1]] + [t[2]] + t[0][t[1] + 1:])
    bad = st.one_of(broken, st.lists(broken, min_size=1, max_size=3), st.lists(number, max_size=2 * size),
                    code.map(lambda c: [c] * (MAX_ITEMS + 1)), st.just([]), JSON_VALUES)
    return good, bad


FIELDS = {
    **{k: _integers(*bounds) for k, bounds in INTEGERS.items()},
    **{k: _numbers(*bounds) for k, bounds in NUMBERS.items()},
    **{k: (GOOD_TEXTS, st.one_of(BAD_TEXTS, st.just("a" * (MAX_BODY + 1)), JSON_VALUES)) for k in ("a", "b", "text")},
    "texts": (st.one_of(st.lists(GOOD_TEXTS, min_size=1, max_size=4), GOOD_TEXTS.map(lambda t: [t] * MAX_ITEMS)),
              st.one_of(st.just([]), st.tuples(st.lists(GOOD_TEXTS, max_size=3), BAD_TEXTS).map(lambda t: [*t[0], t[1]]),
                        GOOD_TEXTS.map(lambda t: [t] * (MAX_ITEMS + 1)), JSON_VALUES)),
    "strategy": (st.sampled_from(["greedy", "sample", "beam"]), JUNK),
    "method": (st.sampled_from(["lerp", "slerp"]), JUNK),
    **{k: (st.sampled_from(["low", "high"]), st.one_of(st.sampled_from(["x", "../../etc/passwd", "lo\ud800w"]),
                                                      TEXTS, JSON_VALUES))
       for k in ("label", "label_b", "to_label")},
    "z": _codes(LATENT),
    "xy": (st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=2),
           st.one_of(st.lists(st.floats(), max_size=3), st.lists(_numbers(-1e3, 1e3)[1], min_size=2, max_size=2))),
}
RAW_BODIES = [b'{"temperature": 1e400}', b'{"text": "apple", "radius": -1e400}', b'{"n": 1' + b"0" * 5000 + b"}",
              b"[" * 100_000, b'{"n": NaN}', b'{"seed": Infinity}', b'{"text": "\xed\xa0\x80"}', b"\xff\xfe",
              b'{"a": "x", "b": "y"', b'"text"', b"null", b'{"text": "a\\ud800b"}', b'{"\\udcff": 1}']


@st.composite
def requests(draw, odd: bool = True):
    """(method, route, body bytes, the body as the server reads it (or the query), the name of the client).

    `odd`: values of every kind, odd bodies, methods and routes; else good values but one, of the two classes of
    issue 33: a number that is not finite, or a text that is not Unicode."""
    who = draw(st.sampled_from(["plain", "plain", "conditional"]))
    route = draw(st.sampled_from(sorted(ROUTE_FIELDS) if odd else sorted(POST)))
    method = "POST" if route in POST else "GET"
    if odd and chance(draw, 1, 20):                     # the other method, or a route that is not there
        method = "GET" if method == "POST" else "POST"
        route = draw(st.sampled_from([route, "train", "../static/app.py", "info/../map"]))
    if method == "GET":                                 # a query string is percent-encoded UTF-8: no surrogates
        words = st.text(st.characters(), max_size=8)
        params = draw(st.dictionaries(words, words, max_size=2)) if chance(draw, 1, 4) else {}
        return method, route, None, params, who
    if odd and chance(draw, 1, 10):
        raw = draw(st.one_of(st.sampled_from(RAW_BODIES), st.binary(max_size=40)))
        return method, route, raw, _parsed(raw), who
    body = {}
    for field in ROUTE_FIELDS.get(route, ()):
        needed = field in ("a", "b", "text", "texts") or (field == "z" and route == "decode") or \
            (field == "label" and who == "conditional")
        rare = field.startswith("label") or field.endswith("label") or field == "guidance" and who == "plain"
        if needed or chance(draw, 2 if rare else 6, 20) and (odd or not rare):
            body[field] = good_or_bad(draw, FIELDS[field]) if odd else draw(FIELDS[field][0])
    if odd and chance(draw, 1, 10):
        body[draw(TEXTS)] = draw(JSON_VALUES)
    if route == "decode" and "z" in body and "xy" in body and draw(st.booleans()):
        del body[draw(st.sampled_from(["z", "xy"]))]
    body = affordable(route, body)
    if not odd:
        _spoil(draw, route, body)
    if odd and chance(draw, 1, 10):                     # a lone surrogate as it is, not escaped: not UTF-8
        data = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    else:
        data = json.dumps(body).encode()                # NaN, Infinity, and "\ud800" escapes as Python writes them
    return method, route, data, _parsed(data), who


def _spoil(draw, route: str, body: dict) -> None:
    """Put a number that is not finite, or a text that is not Unicode, in one field that the route reads."""
    numbers = [f for f in ROUTE_FIELDS[route] if f in NUMBERS or f in ("z", "xy")]
    texts = [f for f in ("a", "b", "text", "texts") if f in ROUTE_FIELDS[route]]
    field = draw(st.sampled_from(numbers + texts))
    if field in texts:
        value = draw(NOT_UNICODE)
        body[field] = [*body.get(field, [])[:3], value] if field == "texts" else value
        return
    value = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    if field not in ("z", "xy"):
        body[field] = value
    elif field == "xy" or "z" not in body:
        body.pop("z" if field == "xy" else "xy", None)
        body[field] = [value] * (2 if field == "xy" else LATENT)
    else:
        rows = body["z"] if isinstance(body["z"][0], list) else [body["z"]]
        body["z"] = [*rows[:-1], [*rows[-1][:-1], value]]


def _parsed(raw: bytes):
    """What the server reads of a raw body: {} when it is empty, else its JSON, or None when it is not JSON."""
    try:
        return json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (ValueError, RecursionError):
        return None


def affordable(route: str, body: dict) -> dict:
    """`body`, with a long max_len brought down where the decoding it asks for is large: a beam of 16 over 100
    rows to 1,000 characters takes the tiny model 25 s (every limit at once is the explorer's to weigh, not this
    test's)."""
    rows = {"interpolate": body.get("steps"), "near": body.get("n"), "sample": body.get("n"),
            "decode": body.get("z")}.get(route)
    rows = len(rows) if isinstance(rows, list) else rows if isinstance(rows, int) and 0 < rows <= MAX_ITEMS else 10
    beam = body.get("beam") if isinstance(body.get("beam"), int) and 0 < body["beam"] <= MAX_BEAM else 5
    searched = body.get("strategy") == "beam" or ("beam" in body and "strategy" not in body)
    max_len = body.get("max_len")
    if isinstance(max_len, int) and 0 < max_len <= MAX_LEN and rows * (beam if searched else 1) * max_len > 4000:
        body = {**body, "max_len": 20}
    return body


@pytest.fixture(scope="module")
def clients(trained_run, tiny_corpus):
    """The tiny model with the tiny corpus as its map, and an untrained conditional model with label dropout."""
    plain = TestClient(create_app(Explorer.open(textvae.load(trained_run), str(tiny_corpus))),
                       raise_server_exceptions=False)
    items = ["abba", "cab", "dead", "zoo", "yolk", "xyz"]
    tok = CharTokenizer.fit(items)
    torch.manual_seed(0)
    net = TextVAE(ModelConfig(vocab_size=tok.vocab_size, num_labels=2, null_label=True, **TINY_MODEL))
    m = Model(net, tok, RunInfo(labels=("low", "high"), longest_item=4))
    conditional = TestClient(create_app(Explorer(m, items, ["low"] * 3 + ["high"] * 3, "six words")),
                             raise_server_exceptions=False)
    return {"plain": plain, "conditional": conditional}


def check_response(clients, request) -> None:
    method, route, data, sent, who = request
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if method == "GET":
            r = clients[who].get(f"/api/{route}", params=sent)
        else:
            r = clients[who].request(method, f"/api/{route}", content=data,
                                     headers={"content-type": "application/json"})
    no_numpy_warnings(caught)
    assert r.status_code < 500, (r.status_code, r.text)
    answer = json.loads(r.content.decode("utf-8"))          # always JSON, always UTF-8
    assert not holds_surrogate(answer), r.text
    if r.status_code >= 400:
        error = answer["error"]
        assert isinstance(error, str) and error and "\n" not in error and len(error) < 300, error
        assert "Traceback" not in error, error
    else:                                   # answered in full: every number it read was finite, every text Unicode
        assert 200 <= r.status_code < 300 and isinstance(sent, dict), r.text
        assert not holds_non_finite(sent) and not holds_surrogate(sent), (sent, r.text)


def test_every_route_is_fuzzed_with_every_field_it_reads(clients):
    assert set(ROUTE_FIELDS) == set(POST) | set(GET)
    given = {"interpolate": {"a": "apple", "b": "river"}, "near": {"text": "apple"}, "encode": {"texts": ["apple"]},
             "decode": {"z": [0.0] * LATENT}, "reconstruct": {"text": "apple"}}
    for route, fields in ROUTE_FIELDS.items():
        if route in POST:
            r = clients["plain"].post(f"/api/{route}", json={**given.get(route, {}), "not_a_field": 1})
        else:
            r = clients["plain"].get(f"/api/{route}", params={"not_a_field": 1})
        read = r.json()["error"].split("the fields of this route: ")[1]
        assert set(read.split(", ")) - {"none"} <= set(fields), (route, read)


def test_fuzzed_requests_get_a_2xx_or_a_4xx_with_one_line(clients):
    check = partial(check_response, clients)
    assert fuzz(requests(), QUICK_REQUESTS - QUICK_REQUESTS // 3, check) + \
        fuzz(requests(odd=False), QUICK_REQUESTS // 3, check) >= QUICK_REQUESTS


@pytest.mark.slow
def test_many_fuzzed_requests_get_a_2xx_or_a_4xx_with_one_line(clients):
    check = partial(check_response, clients)
    assert fuzz(requests(), SLOW_REQUESTS - SLOW_REQUESTS // 6, check) + \
        fuzz(requests(odd=False), SLOW_REQUESTS // 6, check) >= SLOW_REQUESTS


# ---------------------------------------------------------------------------- the command line

FUZZED_COMMANDS = ("generate", "reconstruct", "interpolate", "analogy", "encode", "train", "evaluate")
DECODES = ("generate", "reconstruct", "interpolate", "analogy")
CHEAP = {"num": 5, "steps": 8, "beam": 4, "max_len": 30}       # of a command that decodes: larger is only slower
FILES = ["items.txt", "missing.txt", "escaped.jsonl", "latin1.txt", "run", "", "."]
PATHS = {"model_path": (["run"], ["missing", "items.txt", ""]),
         "out_path": (["codes.npy", "codes.jsonl", "path.html"], ["codes.csv", "path.pdf", "nowhere/p.html", "run", ""]),
         "device": (["cpu", "auto"], ["cuda", "cuda:7", "tpu", ""]),
         "decoder_from": ([], [f for f in FILES if f != "run"]),    # never the tiny model: train would go on
         "resume_run": ([], [f for f in FILES if f != "run"]),
         "file": (["items.txt"], ["missing.txt", "escaped.jsonl", "latin1.txt", "run", "", "."])}
REFUSED = ("label", "label_b", "to_label", "guidance", "label_column")  # refused by an unconditional model: seldom
POSITIONAL = {"generate": (0, 0), "reconstruct": (0, 3), "interpolate": (0, 2), "analogy": (2, 3)}


def _option_values(command: str, param: click.Option) -> tuple:
    """(good, bad) values of an option, as its type declares them (a new option is fuzzed as it is declared)."""
    t = param.type
    if isinstance(t, click.types.FloatParamType):
        low = t.min if getattr(t, "min", None) is not None else -1e3
        high = t.max if getattr(t, "max", None) is not None else 1e6
        edges = [x for x in (getattr(t, "min", None), getattr(t, "max", None)) if x is not None]
        good = st.one_of(st.floats(low, high), st.floats(low, min(high, low + 10)), st.sampled_from(edges or [0.0]))
        outside = [np.nextafter(x, s) for x in edges for s in (-math.inf, math.inf)]
        bad = st.one_of(st.sampled_from(NON_FINITE), st.floats().map(repr), st.sampled_from(outside or ["x"]), JUNK)
        return good.map(repr), bad.map(str)
    if isinstance(t, click.types.IntParamType):
        low = t.min if getattr(t, "min", None) is not None else -10**20
        high = t.max if getattr(t, "max", None) is not None else 10**20
        cap = CHEAP.get(param.name) if command in DECODES else None
        good = st.integers(low, min(high, low + 20, cap or high))
        outside = [low - 1] + ([] if t.max is None else [t.max + 1]) + ([] if cap else [-2**64, 2**64])
        return good.map(str), st.one_of(st.sampled_from(outside).map(str), JUNK)
    if isinstance(t, click.Choice):
        return st.sampled_from(list(t.choices)), JUNK
    if param.name in PATHS:
        good, bad = PATHS[param.name]
        return st.sampled_from(good) if good else st.nothing(), st.one_of(st.sampled_from(bad), TEXTS)
    return st.one_of(GOOD_TEXTS, st.sampled_from(FILES)), TEXTS


@st.composite
def command_lines(draw, odd: bool = True):
    """A command, its arguments, and about a fifth of its options; the model given is the tiny one, the files those
    `workdir` holds. `odd`: a good value three times in four, one of the classes of issue 33 in one line in four;
    else a command that decodes, good values but one, of those classes."""
    name = draw(st.sampled_from(FUZZED_COMMANDS if odd else DECODES))
    command = cli.commands[name]
    args = [name]
    if name in ("train", "evaluate"):                   # up to reading their files, which are not there
        args.append("missing.txt")
    elif name == "encode":
        args.append(draw(st.sampled_from(FILES[:4])))
    else:
        low, high = POSITIONAL[name]
        count = draw(st.integers(low, high))
        args += [draw(BAD_TEXTS if odd and chance(draw, 1, 8) else GOOD_TEXTS) for _ in range(count)]
    texts = len(args) - 1
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        given = param.required or param.name == "model_path"
        if not given and not chance(draw, 1 if param.name in REFUSED else 4, 20) or param.name in REFUSED and not odd:
            continue
        if param.is_flag:
            args.append(draw(st.sampled_from(param.opts + param.secondary_opts)))
            continue
        good, bad = _option_values(name, param)
        if odd and (good.is_empty or chance(draw, 1, 4)):
            args += [draw(st.sampled_from(param.opts)), draw(bad)]
        elif not good.is_empty:
            args += [draw(st.sampled_from(param.opts)), draw(good)]
    numbers = [p for p in command.params if isinstance(p.type, click.types.FloatParamType)]
    kind = draw(st.integers(0, 7)) if odd else draw(st.integers(6, 7))
    if kind == 6 and numbers:           # the two classes of issue 33, in lines otherwise as above: a number that
        param = draw(st.sampled_from(numbers))                          # is not finite (the last value counts)
        args += [draw(st.sampled_from(param.opts)), draw(st.sampled_from(NON_FINITE))]
    elif kind == 7 and name in DECODES:                                 # and a text that is not Unicode
        if texts and name != "generate":
            args[draw(st.integers(1, texts))] = draw(NOT_UNICODE)
        else:
            args += ["--near", draw(NOT_UNICODE)]
    return [a.replace("\x00", "") for a in args]         # what a command line can hold: C strings, no NUL


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, trained_run):
    """A folder holding the tiny model as `run`, and a few files to read."""
    d = tmp_path_factory.mktemp("fuzz")
    (d / "run").symlink_to(trained_run, target_is_directory=True)
    (d / "items.txt").write_text("apple\nriver\nmaple\n")
    (d / "escaped.jsonl").write_text('{"text": "apple"}\n{"text": "riv\\ud800er"}\n')
    (d / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    return d


def check_command(args) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = CliRunner().invoke(cli, args)
    no_numpy_warnings(caught)
    assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exception)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert "Traceback" not in r.stderr and "please report it" not in r.stderr, (args, r.stderr)   # the catch-all
    assert r.exit_code in (0, 1, 2), (args, r.exit_code, r.stderr)
    if r.exit_code:
        assert [line for line in lines if line.startswith("error:")] == lines[-1:], (args, r.stderr)
    if r.exit_code == 2:
        assert len(lines) == 1 and r.stdout == "", (args, r.stdout, r.stderr)
    if r.exit_code == 0:                    # it ran: every number it read was finite, every argument Unicode
        command = cli.commands[args[0]]
        read = command.make_context(args[0], args[1:]).params          # the values as the command took them
        assert all(math.isfinite(read[p.name]) for p in command.params
                   if isinstance(p.type, click.types.FloatParamType) and read[p.name] is not None), (args, r.stdout)
        assert not holds_surrogate(args), (args, r.stdout)


def test_fuzzed_command_lines_exit_cleanly(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("TEXTVAE_DEBUG", raising=False)
    assert fuzz(command_lines(), QUICK_COMMANDS - QUICK_COMMANDS // 3, check_command) + \
        fuzz(command_lines(odd=False), QUICK_COMMANDS // 3, check_command) >= QUICK_COMMANDS


@pytest.mark.slow
def test_many_fuzzed_command_lines_exit_cleanly(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("TEXTVAE_DEBUG", raising=False)
    assert fuzz(command_lines(), SLOW_COMMANDS - SLOW_COMMANDS // 6, check_command) + \
        fuzz(command_lines(odd=False), SLOW_COMMANDS // 6, check_command) >= SLOW_COMMANDS
