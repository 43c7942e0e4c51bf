"""What each of the explorer's JSON routes computes, over a loaded model, with no HTTP in sight.

Every method calls the API (`textvae.api.Model`) with the decoding fields a request gave, so the API's own defaults
apply (sampled generation, whatever they become), but for one: a code's read-out (a path's steps, a reconstruction, a
point of the map) is greedy unless the request names a strategy or a beam, where the API searches a beam (its
answer is a few characters closer to the text; greedy takes a third to half of the time, what a page that decodes
as a slider moves needs). It returns plain lists and dicts, ready to be written as JSON. The map is the plane of
the first two principal components of the codes of held-out items (as `textvae plot` draws it), so a point of the
plane is also a code that can be decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from ..api import Model
from ..data.corpus import DataError
from ..evaluation.metrics import changed_spans, edit_distance, principal_plane
from ..evaluation.report import map_items
from ..settings import MAP_ITEMS, MAX_MAP_ITEMS  # noqa: F401 (their home before settings)

READ_OUT = "greedy"     # how the explorer reads a code out, unless a request says otherwise


class Unavailable(Exception):
    """Something the explorer does not have (a map without held-out items); its message says how to get it."""


@dataclass(frozen=True)
class LatentMap:
    """Codes of held-out items projected on their principal plane; any point of the plane is a code too."""
    texts: list[str]
    labels: list[str] | None
    xy: np.ndarray          # (N, 2) coordinates of each item on the plane
    origin: np.ndarray      # (Z,) the mean code: the plane's (0, 0)
    axes: np.ndarray        # (2, Z) the first two principal directions, orthonormal
    variance: np.ndarray    # (2,) share of the codes' variance along each axis

    @classmethod
    def of(cls, mu: np.ndarray, texts: list[str], labels: list[str] | None) -> LatentMap:
        origin, axes, xy, variance = principal_plane(mu)
        return cls(texts, labels, xy, origin, axes, variance)

    def code(self, x: float, y: float) -> np.ndarray:
        """The code (Z,) at point (x, y) of the plane."""
        return self.origin + x * self.axes[0] + y * self.axes[1]

    def to_dict(self) -> dict:
        return {"texts": self.texts, "labels": self.labels, "x": _rounded(self.xy[:, 0]), "y": _rounded(self.xy[:, 1]),
                "variance": _rounded(self.variance)}


class Explorer:
    """A loaded model and the held-out items of its map. Not thread-safe: the server calls it one request at a
    time (see `app.Worker`)."""

    def __init__(self, model: Model, items: list[str] | None = None, labels: list[str] | None = None,
                 source: str = "", note: str | None = None):
        self.model = model
        self.items = items or []            # held-out items for the map
        self.labels = labels                # their labels (a conditional model's)
        self.source = source                # where they came from, in words
        self.note = note                    # why there are none, when there are none
        self._map: LatentMap | None = None  # made at the first request that needs it

    @classmethod
    def open(cls, model: Model, data: str | None = None, column: str | None = None,
             limit: int = MAP_ITEMS) -> Explorer:
        """The model with up to `limit` held-out items for its map: those of the file `data`, else the run's
        validation items. A `data` file that cannot be read is a `DataError`; a run whose corpus is not at hand
        gives an explorer without a map, and a note saying so."""
        try:
            items, labels, source = map_items(model, data, column, limit=limit)
        except DataError as e:
            if data:
                raise
            return cls(model, note=f"no map: {e}")
        return cls(model, items, labels if model.conditional else None, source)

    # ------------------------------------------------------------------------ routes

    def info(self) -> dict:
        m = self.model
        return {"model": str(m.path) if m.path else None, "latent_dim": m.latent_dim, "max_len": m.max_len,
                "prior": m.prior,
                "unit": m.run.data.unit, "conditional": m.conditional, "labels": m.labels, "guidable": m.guidable,
                "map": {"items": len(self.items), "source": self.source, "note": self.note}}

    def interpolate(self, a: str, b: str, steps: int, method: str, label=None, label_b=None, seed=None,
                    **decoding) -> dict:
        """A homotopy: each step's text, its fraction of the way, the pieces changed since the step before,
        and how far each end's decoding is from the text it was encoded from."""
        texts = self.model.interpolate(a, b, steps=steps, method=method, seed=seed, label=label, label_b=label_b,
                                       **_read_out(decoding))
        changed = [[[texts[0], False]]] + [[[p, c] for p, c in changed_spans(before, after)]
                                          for before, after in pairwise(texts)]
        return {"texts": texts, "fractions": [i / (steps - 1) for i in range(steps)], "changed": changed,
                "fidelity": {"a": _fidelity(a, texts[0]), "b": _fidelity(b, texts[-1])}, **self._unknown([a, b])}

    def near(self, text: str, n: int, radius: float, label=None, seed=None, **decoding) -> dict:
        """`n` decodings of codes around `text`'s posterior (`generate --near`)."""
        return {"texts": self.model.generate(n, seed=seed, near=text, radius=radius, label=label, **decoding),
                **self._unknown([text])}

    def sample(self, n: int, label=None, seed=None, **decoding) -> dict:
        """`n` decodings of codes from the prior."""
        return {"texts": self.model.generate(n, seed=seed, label=label, **decoding)}

    def encode(self, texts: list[str], label=None) -> dict:
        """Posterior means and log-variances, one row per text."""
        mu, logvar = self.model.encode(texts, return_logvar=True, labels=label)
        return {"codes": [_rounded(row) for row in mu], "logvars": [_rounded(row) for row in logvar],
                **self._unknown(texts)}

    def decode(self, codes: list[list[float]] | None = None, xy: tuple[float, float] | None = None, label=None,
               seed=None, **decoding) -> dict:
        """Text for each code, or for the code at point `xy` of the map's plane."""
        z = (np.asarray(codes, dtype=np.float32) if xy is None
             else self.model.code_at(self.latent_map().code(*xy), seed)[None])
        return {"texts": self.model.decode(z, seed=seed, labels=label, **_read_out(decoding))}

    def reconstruct(self, text: str, label=None, to_label=None, seed=None, **decoding) -> dict:
        """`text` through its code and back; a conditional model can decode it under another label."""
        out = self.model.reconstruct([text], seed=seed, label=label, to_label=to_label, **_read_out(decoding))[0]
        d = edit_distance(text, out)
        return {"text": out, "edit_distance": d, "exact": d == 0, **self._unknown([text])}

    def map(self) -> dict:
        return {"source": self.source, **self.latent_map().to_dict()}

    # ------------------------------------------------------------------------ helpers

    def latent_map(self) -> LatentMap:
        if self._map is None:
            if not self.items:
                raise Unavailable(self.note or "no map: no held-out items")
            mu = self.model.encode(self.items, labels=self.labels)          # (N, Z)
            self._map = LatentMap.of(self.model.map_codes(mu), self.items, self.labels)
        return self._map

    def _unknown(self, texts: list[str]) -> dict:
        """{"unknown": characters the model never saw, which it reads as <unk>}, when there are any."""
        unknown = self.model.unknown_chars(texts)
        return {"unknown": sorted(unknown)} if unknown else {}


def _read_out(decoding: dict) -> dict:
    """A request's decoding fields for a read-out: `READ_OUT` unless it names a strategy (or a beam width)."""
    if "strategy" in decoding:
        return decoding
    return {**decoding, "strategy": "beam" if "beam" in decoding else READ_OUT}


def _fidelity(text: str, decoded: str) -> dict:
    d = edit_distance(text, decoded)
    return {"decoded": decoded, "edit_distance": d, "exact": d == 0}


def _rounded(x) -> list[float]:
    return [round(float(v), 5) for v in x]
