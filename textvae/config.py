"""A mixin for the settings dataclasses that are saved as JSON in checkpoints and run.json."""

from __future__ import annotations

from dataclasses import asdict, fields


class Saved:
    """`to_dict()` for saving; `from_dict()` that keeps the known fields, so that a file written by a later
    version with more settings still reads."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
