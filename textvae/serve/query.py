"""Reading a request: its JSON body within a size, then each field checked against its type and bounds.

A request that fails a check raises `BadRequest`, whose message is the one line the client gets with a 4xx status.
"""

from __future__ import annotations

import json
import math

from starlette.requests import Request

from ..api import Model
from ..data.tokenizer import not_unicode
from ..settings import STRATEGIES

MAX_BODY = 64 * 1024        # bytes of a request body
MAX_ITEMS = 100             # items one request decodes or encodes
MAX_STEPS = 100             # points on one interpolation path
MAX_BEAM = 16               # beam width
MAX_LEN = 1000              # characters of one decoded item (a request's max_len)
LIMITS = {"body_bytes": MAX_BODY, "items": MAX_ITEMS, "steps": MAX_STEPS, "beam": MAX_BEAM, "max_len": MAX_LEN}


class BadRequest(Exception):
    """A request the explorer refuses; its message is the one line the client sees."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------- reading a request

class Query:
    """A request's JSON object, read one checked field at a time; `done()` refuses the fields nobody asked for
    (a misspelt option, or a file name where none belongs). A field given as null is a field left out."""

    def __init__(self, body: dict, model: Model):
        self.body = body
        self.model = model
        self.asked: set[str] = set()

    def _get(self, key: str):
        self.asked.add(key)
        return self.body.get(key)

    def text(self, key: str) -> str:
        return self._text(key, self._get(key))

    def _text(self, key: str, value) -> str:
        if value is None:
            raise BadRequest(f"{key}: missing (a text)")
        if not isinstance(value, str):
            raise BadRequest(f"{key}: must be a string, not {_kind(value)}")
        why = not_unicode(value)
        if why is not None:
            raise BadRequest(f"{key}: not Unicode text: {why}")
        if not value.strip():
            raise BadRequest(f"{key}: empty text; give at least one character")
        if len(value) > self.model.max_len:
            raise BadRequest(f"{key}: {len(value):,} characters, over this model's limit of {self.model.max_len:,}")
        return value

    def texts(self, key: str) -> list[str]:
        value = self._get(key)
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_ITEMS:
            raise BadRequest(f"{key}: must be a list of 1 to {MAX_ITEMS} texts")
        return [self._text(f"{key}[{i}]", v) for i, v in enumerate(value)]

    def integer(self, key: str, default: int | None, low: int, high: int) -> int | None:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadRequest(f"{key}: must be a whole number, not {_kind(value)}")
        if not low <= value <= high:
            raise BadRequest(f"{key}: must be between {low:,} and {high:,}, not {_shown(value)}")
        return value

    def number(self, key: str, default: float | None, low: float, high: float) -> float | None:
        value = self._get(key)
        return default if value is None else self._number(key, value, low, high)

    @staticmethod
    def _number(key: str, value, low: float, high: float) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise BadRequest(f"{key}: must be a number, not {_kind(value)}")
        try:
            number = float(value)
        except OverflowError:           # a whole number past float's range
            number = math.inf if value > 0 else -math.inf
        if not math.isfinite(number):   # NaN, Infinity, 1e400: Python's json reads them all
            raise BadRequest(f"{key}: must be a finite number, not {_shown(value)}")
        if not low <= number <= high:
            raise BadRequest(f"{key}: must be between {low:g} and {high:g}, not {number:g}")
        return number

    def choice(self, key: str, default: str | None, choices) -> str | None:
        value = self._get(key)
        if value is None:
            return default
        if value not in choices:
            raise BadRequest(f"{key}: must be one of {', '.join(choices)}, not {_shown(value)}")
        return value

    def label(self, key: str, required: bool = False) -> str | None:
        """A label of a conditional model (one of `model.labels`)."""
        value = self._get(key)
        if value is None:
            if required and self.model.conditional:
                raise BadRequest(f"{key}: this model is conditional: give one of {', '.join(self.model.labels)}")
            return None
        if not self.model.conditional:
            raise BadRequest(f"{key}: this model was trained without labels")
        if value not in self.model.labels:
            raise BadRequest(f"{key}: unknown label {_shown(value)}; the model knows {', '.join(self.model.labels)}")
        return value

    def codes(self, key: str) -> list[list[float]]:
        """Codes: one list of latent_dim numbers, or a list of 1 to MAX_ITEMS such lists."""
        value = self._get(key)
        rows = value if isinstance(value, list) and value and isinstance(value[0], list) else [value]
        z = self.model.latent_dim
        if not isinstance(value, list) or not 1 <= len(rows) <= MAX_ITEMS or \
                any(not isinstance(r, list) or len(r) != z for r in rows):
            raise BadRequest(f"{key}: must be a code (a list of {z} numbers) or a list of 1 to {MAX_ITEMS} codes")
        return [[self._number(key, v, -100, 100) for v in r] for r in rows]

    def point(self, key: str) -> tuple[float, float]:
        value = self._get(key)
        if not isinstance(value, list) or len(value) != 2:
            raise BadRequest(f"{key}: must be a point [x, y] of the map")
        x, y = (self._number(key, v, -1e3, 1e3) for v in value)
        return x, y

    def decoding(self) -> dict:
        """The decoding fields the request gave (and its seed), checked; the API's defaults stand for the rest."""
        d = {"strategy": self.choice("strategy", None, STRATEGIES),
             "temperature": self.number("temperature", None, 0, 10),
             "top_k": self.integer("top_k", None, 0, 10_000),
             "top_p": self.number("top_p", None, 1e-6, 1),
             "beam": self.integer("beam", None, 1, MAX_BEAM),
             "length_penalty": self.number("length_penalty", None, 0, 10),
             "repetition_penalty": self.number("repetition_penalty", None, 1, 10),
             "max_len": self.integer("max_len", None, 1, MAX_LEN),
             "guidance": self.number("guidance", None, 0, 20),
             "seed": self.integer("seed", None, 0, 2**63 - 1)}
        if d["guidance"] and not self.model.guidable:
            raise BadRequest("guidance: needs a conditional model trained with label dropout")
        return {k: v for k, v in d.items() if v is not None}

    def done(self) -> None:
        unknown = sorted(set(self.body) - self.asked)
        if unknown:
            fields = ", ".join(sorted(self.asked)) or "none"
            raise BadRequest(f"unknown field {_shown(unknown[0])}; the fields of this route: {fields}")


def _kind(value) -> str:
    return {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}[type(value)]


def _shown(value) -> str:
    """`value` as JSON, cut to 40 characters; a lone surrogate as its \\u escape, which a response can hold."""
    text = json.dumps(value, ensure_ascii=False)
    text = text if len(text) <= 40 else text[:37] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


async def read_json(request: Request, limit: int) -> dict:
    """The request's JSON object, read to at most `limit` bytes; an empty body is {}. JSON's NaN and Infinity
    (which Python's json reads) are left to the field that reads them to refuse, naming it."""
    too_big = BadRequest(f"the request body is over {limit // 1024} KB", 413)
    length = request.headers.get("content-length", "0")
    if not (length.isascii() and length.isdigit()) or int(length) > limit:
        raise too_big
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise too_big
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise BadRequest(f"the body is not JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"the body is not JSON that the explorer reads: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object, like {"text": "house"}')
    return body
