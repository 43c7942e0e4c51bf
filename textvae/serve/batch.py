"""Decodings that concurrent requests ask for, run as one batch.

A decoding step of a few rows costs about what a step of a few hundred does on a CPU (its time goes to the
operations' fixed costs and to reading the weights), so fifty requests decoded one after another take fifty
times as long as decoded together. The server's worker threads run their requests one at a time under the
model's lock (`request`); a request that reaches a greedy or sampled decoding hands its codes to the batcher
and waits, letting the lock go, so that the other requests reach theirs. The first to wait leads: it waits
until every request in the worker has either handed in its decoding or finished (at most `GATHER_MAX_S`), and
then while more keep arriving (`GATHER_S` at a time), decodes each group of the same setting in one batch,
and hands every request its rows. Each request's rows keep their own length limit and their own random stream
(`loop.Streams`), so they decode as they would alone.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch

from ..decoding.loop import Streams
from ..settings import Decoding

GATHER_S = 0.004       # a leader waits this long for another request to arrive, again while more come
GATHER_MAX_S = 0.5     # and no longer than this in all


@dataclass
class _Job:
    decoder: object                             # the `decoding.Decoder` that handed the codes in
    code: torch.Tensor
    d: Decoding
    max_len: int
    generator: object             # numpy's random stream (or None)
    noise_width: int
    limits: list[int] | None
    guidance: float
    squash: str = "torch"
    wake: threading.Condition | None = None     # what its thread waits on, on the model's lock
    texts: list[str] | None = None
    error: BaseException | None = None
    done: bool = False

    def key(self) -> tuple:
        """Jobs of the same key decode together: the same model and setting (but the length limit)."""
        return (id(self.decoder), replace(self.d, max_len=None), self.guidance, self.squash, self.code.shape[1],
                self.code.dtype)


class DecodeBatcher:
    """Batches the decodings of the threads that hold `lock` while they run a request (see the module's text)."""

    def __init__(self, lock: threading.Lock):
        self.lock = lock
        self.arrivals = threading.Condition(lock)   # what a leader waits on: decodings handed in, requests done
        self.local = threading.local()
        self.arrived = 0            # requests in the worker: waiting for the lock, or holding it
        self.counting = threading.Lock()
        self.pending: list[_Job] = []
        self.leading = False
        self.batches = 0            # decodings run, and requests' decodings in them: for tests and benchmarks
        self.jobs = 0

    def holding(self) -> bool:
        """Whether this thread runs a request under the lock (see `request`)."""
        return getattr(self.local, "holding", False)

    @contextmanager
    def request(self):
        """Around a request's work in a worker thread: counted in from before it waits for the lock, run holding
        the lock, counted out when done (the leader of a batch waits for every request counted in)."""
        with self.counting:
            self.arrived += 1
        with self.lock:
            self.local.holding = True
            try:
                yield
            finally:
                self.local.holding = False
                with self.counting:
                    self.arrived -= 1
                self.arrivals.notify()

    def decode(self, decoder, code: torch.Tensor, d: Decoding, max_len: int, generator, noise_width: int,
               limits, guidance: float, squash: str = "torch") -> list[str]:
        if not self.holding():      # a call from outside the worker: alone, as without a batcher
            return decoder.rows(code, d, max_len, generator, noise_width, limits, guidance, squash)
        job = _Job(decoder, code, d, max_len, generator, noise_width,
                   None if limits is None else [int(x) for x in limits], guidance, squash,
                   threading.Condition(self.lock))
        self.pending.append(job)
        self.arrivals.notify()
        while not job.done and self.leading:
            job.wake.wait()             # lets the lock go: other requests reach their decodings meanwhile
        if not job.done:
            self.leading = True
            try:
                self._gather()
                while not job.done:
                    batch, self.pending = self.pending, []
                    self._run(batch)
            finally:
                self.leading = False
                for waiting in self.pending:        # handed in meanwhile: one of them leads the next batch
                    waiting.wake.notify()
        if job.error is not None:
            raise job.error
        return job.texts

    def _gather(self) -> None:
        """Wait (letting the lock go) until every request in the worker has handed in its decoding or finished,
        then while more arrive, `GATHER_S` at a time; `GATHER_MAX_S` at most in all."""
        deadline = time.monotonic() + GATHER_MAX_S
        while (left := deadline - time.monotonic()) > 0:
            seen = (len(self.pending), self.arrived)
            if seen[0] < seen[1]:
                self.arrivals.wait(left)
                continue
            self.arrivals.wait(min(GATHER_S, left))
            if (len(self.pending), self.arrived) == seen:
                break

    def _run(self, batch: list[_Job]) -> None:
        groups: dict[tuple, list[_Job]] = {}
        for job in batch:
            groups.setdefault(job.key(), []).append(job)
        for jobs in groups.values():
            try:
                texts = self._decode(jobs)
                for job in jobs:
                    job.texts, texts = texts[:len(job.code)], texts[len(job.code):]
            except Exception:  # noqa: BLE001 (one request's fault must not fail the others: each again, alone)
                for job in jobs:
                    try:
                        job.texts = self._decode([job])
                    except Exception as e:  # noqa: BLE001 (the request's own error, raised in its thread)
                        job.error = e
            for job in jobs:
                job.done = True
                job.wake.notify()
            self.batches += 1
            self.jobs += len(jobs)

    @staticmethod
    def _decode(jobs: list[_Job]) -> list[str]:
        first = jobs[0]
        if len(jobs) == 1:
            return first.decoder.rows(first.code, first.d, first.max_len, first.generator, first.noise_width,
                                      first.limits, first.guidance, first.squash)
        max_len = max(j.max_len for j in jobs)
        limits = [min(x, j.max_len) for j in jobs for x in (j.limits or [j.max_len] * len(j.code))]
        streams = Streams(tuple((j.generator, len(j.code), j.noise_width) for j in jobs))
        code = torch.cat([j.code for j in jobs])
        return first.decoder.rows(code, first.d, max_len, streams, 0, limits, first.guidance, first.squash)
