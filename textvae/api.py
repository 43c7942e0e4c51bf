"""The Python API: what the command line does, as methods of a loaded model.

    import textvae
    m = textvae.load("runs/words_en")
    m.generate(10, temperature=0.8, seed=1)
    m.interpolate("the food was great", "the service was slow", steps=5)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from . import checkpoint
from .arraystep import ArraySteps
from .checkpoint import RunInfo
from .decode import Decoding, Guided, decode, lerp, slerp, threads_for
from .loop import Streams, new_seed, random_stream
from .model import TextVAE, reparameterize
from .sample import blocks, generate_prior
from .settings import BLOCK, MAX_DECODE_LEN, MAX_PATH_STEPS, WORD_TOP_P, TextTooLong  # noqa: F401 (the API's names)
from .tokenizer import CharTokenizer, check_unicode

DEFAULT_GUIDANCE = 1.0      # classifier-free guidance weight for conditional models trained with label dropout


class Model:
    """A trained textvae model with its vocabulary, ready to sample, encode and interpolate.

    Every decoding method takes a `decoding=Decoding(...)` setting, or its fields as keywords
    (`temperature=0.8`, `strategy="beam"`), or both: keywords change the given setting."""

    def __init__(self, model: TextVAE, tokenizer: CharTokenizer, run: RunInfo | None = None, path: Path | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.run = run or RunInfo()
        self.path = path
        self.labels: list[str] = list(self.run.labels)   # a conditional model's label names
        self.truncate = False     # texts over `max_len`: refused (ValueError), or cut to it when True
        self.batcher = None       # what decodes several threads' codes together (`serve.batch.DecodeBatcher`)

    @property
    def conditional(self) -> bool:
        return self.model.config.num_labels > 0

    def label_ids(self, labels, n: int) -> torch.Tensor | None:
        """Label names (one, or one per item) as ids; None for an unconditional model."""
        if not self.conditional:
            if labels is not None:
                raise ValueError("this model was trained without labels")
            return None
        if labels is None:
            raise ValueError(f"this model is conditional: give a label ({', '.join(self.labels)})")
        names = [labels] * n if isinstance(labels, str) else list(labels)
        unknown = sorted({x for x in names if x not in self.labels})
        if unknown:
            raise ValueError(f"unknown label {unknown[0]!r}: the model knows {', '.join(self.labels)}")
        index = {name: i for i, name in enumerate(self.labels)}
        return torch.tensor([index[x] for x in names], dtype=torch.long, device=self.device)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def latent_dim(self) -> int:
        return self.model.config.latent_dim

    @property
    def default_max_len(self) -> int:
        """Longest item worth decoding: the longest training item, if known: nothing longer is sensible."""
        return self.run.decode_limit

    def length_limit(self, chars: int) -> int:
        """The longest decoding worth making of the code of a text of `chars` characters: half as long again
        and `LENGTH_SLACK` characters more, within `default_max_len`. A decoding that grows past that has run
        away (a phrase repeated to the limit), and more characters would only cost time."""
        return min(self.default_max_len, math.ceil(1.5 * chars) + LENGTH_SLACK)

    def length_for(self, d: Decoding, texts: Sequence) -> Decoding:
        """`d` with the length limit (unless it sets one) of the longest of `texts` (see `length_limit`);
        codes given as numbers keep the model's limit."""
        if d.max_len is not None or not texts or not all(isinstance(t, str) for t in texts):
            return d
        return d.but(max_len=self.length_limit(max(len(t) for t in texts)))

    @property
    def prior(self) -> str:
        """The prior that samples' codes come from, in words."""
        c = self.model.config
        if c.word_prior:
            pieces = ("character slots", "characters") if c.slot_break < 0 else ("word slots", "words")
            return (f"a language model over the {pieces[0]} ({c.word_prior:,} {pieces[1]} and others), started from "
                    f"a global code of {c.global_dim} dimensions under N(0, I), learned with the model")
        if c.slot_prior:
            return f"a bigram model over {c.slot_prior} clusters of the training codes' word slots (fitted)"
        if c.fitted_prior:
            return "a Gaussian fitted to the training codes"
        return "N(0, I)"

    def map_codes(self, mu: np.ndarray) -> np.ndarray:
        """What a map of codes (N, Z) plots: a word-prior model's global codes (what each item says as a whole;
        the word slots are its spelling), else the codes themselves."""
        c = self.model.config
        return mu[:, c.latent_dim - c.global_dim:] if c.word_prior else mu

    @torch.no_grad()
    def code_at(self, point: np.ndarray, seed: int | None = None) -> np.ndarray:
        """The code (Z,) of a point of the space `map_codes` plots: itself, or under a word prior, the slots the
        prior writes from that global code (as the inside of a path: `_sentences_between`)."""
        c = self.model.config
        if not c.word_prior:
            return np.asarray(point, dtype=np.float32)
        g = torch.as_tensor(np.asarray(point, dtype=np.float32)).view(1, -1).to(self.device)
        eps = torch.from_numpy(random_stream(seed or 0).standard_normal((1, c.latent_dim), dtype=np.float32))
        z = self.model.codes_given(g, eps.to(self.device), self.PATH_TEMPERATURE, self.PATH_TOP_P)
        return z[0].cpu().numpy()

    @property
    def words(self):
        """The training text's words (a metrics.WordSet), when the checkpoint carries them."""
        if self.run.words is None:
            return None
        if getattr(self, "_words", None) is None:
            from .metrics import WordSet
            self._words = WordSet.from_dict(self.run.words)
        return self._words

    @property
    def max_len(self) -> int:
        """The longest text the model encodes: its training length limit (items longer were left out)."""
        return int(self.run.data.max_len or max(self.run.longest_item or 0, 256))

    def fit_lengths(self, texts: list[str]) -> list[str]:
        """`texts` checked: Unicode text (else `NotUnicode`), and against `max_len`: cut to it when
        `self.truncate`, else a ValueError naming it."""
        check_unicode(texts)
        limit = self.max_len
        long = [i for i, t in enumerate(texts) if len(t) > limit]
        if not long:
            return texts
        if not self.truncate:
            i, n = long[0], len(long)
            raise TextTooLong(f"{'a text has' if n == 1 else f'{n:,} texts have'} more characters than this model's "
                              f"limit of {limit:,} (text {i + 1}: {len(texts[i]):,}); --truncate cuts them to it")
        return [t[:limit] for t in texts]

    @staticmethod
    def _generator(seed: int | None) -> np.random.Generator | None:
        """The random stream of a decoding's sampling (numpy's, on any device): None draws unseeded."""
        return None if seed is None else random_stream(seed)

    def unknown_chars(self, texts: Sequence[str]) -> set[str]:
        out: set[str] = set()
        for t in texts:
            out |= self.tokenizer.unknown_chars(t)
        return out

    def encode(self, texts: Sequence[str], return_logvar: bool = False, batch_size: int | None = None, labels=None):
        """Posterior means (N, Z) of `texts`, in input order, as a numpy array (and log-variances if asked).
        A conditional model needs the texts' labels (one name, or one per text).

        Texts of similar lengths are encoded together, `batch_size` at a time (on a CPU 128, else 512). On a
        CPU with several threads, a long list is shared out between them a batch at a time, each batch in one
        thread: an RNN step's operations are too small for threads to share them well (measured here: 2,000
        sentences in 0.73 s so, 1.6 s in batches of 512 on both threads)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = self.fit_lengths(list(texts))
        y_all = self.label_ids(labels, len(texts))
        mus = np.zeros((len(texts), self.latent_dim), dtype=np.float32)
        logvars = np.zeros_like(mus)
        order = np.argsort([len(t) for t in texts], kind="stable")      # similar lengths together: little padding
        cpu = self.device.type == "cpu"
        size = batch_size or (CPU_ENCODE_BATCH if cpu else 512)

        @torch.no_grad()
        def part(start: int) -> None:
            index = order[start:start + size]
            tokens, lengths = self.tokenizer.batch([texts[i] for i in index])
            y = None if y_all is None else y_all[torch.as_tensor(index, device=self.device)]
            mu, logvar = self.model.encode(tokens.to(self.device), lengths.to(self.device), y)
            mus[index] = mu.float().cpu().numpy()
            logvars[index] = logvar.float().cpu().numpy()

        starts = range(0, len(texts), size)
        workers = min(torch.get_num_threads(), len(starts)) if cpu else 1
        if workers > 1:
            with threads_for(0, self.device, always=True), ThreadPoolExecutor(workers) as pool:
                list(pool.map(part, starts))
        else:
            for start in starts:
                with threads_for(min(size, len(texts) - start), self.device):
                    part(start)
        return (mus, logvars) if return_logvar else mus

    @staticmethod
    def setting(decoding: Decoding | None, default_strategy: str = "greedy", **options) -> Decoding:
        """`decoding` (or the default strategy's setting) with the keyword `options` applied."""
        return (decoding or Decoding(strategy=default_strategy)).but(**options)

    # reconstruct, interpolate and analogy search for the likeliest text of a code: length-normalised beam search
    READ_OUT = "beam"

    @torch.no_grad()
    def decode(self, z, decoding: Decoding | None = None, seed: int | None = None, labels=None,
               batch_size: int = 4096, noise_width: int = 0, limits: Sequence[int] | None = None,
               **options) -> list[str]:
        """Text for each code in z (N, Z): the likeliest, by beam search, unless `decoding` says otherwise;
        `limits`, one length limit per code, stop each decoding sooner than the decoding's own limit.

        A conditional model decodes under `labels` (one name, or one per code), steered towards them by
        `guidance` (see `decode.Guided`): by default `DEFAULT_GUIDANCE` for a model trained with label
        dropout, 0 (none) otherwise."""
        d = self.setting(decoding, self.READ_OUT, **options)
        z = torch.as_tensor(np.asarray(z), dtype=torch.float32, device=self.device)
        if z.dim() == 1:
            z = z.unsqueeze(0)
        guidance = self.resolve_guidance(d.guidance)
        return self._decode_codes(self._code_of(z, labels, guidance), d, seed, batch_size, guidance, noise_width,
                                  limits)

    def _code_of(self, z: torch.Tensor, labels, guidance: float) -> torch.Tensor:
        """The decoder's codes for z (N, Z) under `labels`: (N, code), or with guidance (N, 2 * code)."""
        z = z.to(self.device)
        code = self.model.condition(z, self.label_ids(labels, len(z)))
        return self._beside_unlabelled(code, z) if guidance else code

    def _beside_unlabelled(self, code: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Each code followed by the same z under the "no label" id: what `decode.Guided` reads, (N, 2 * code)."""
        z = z.to(self.device)
        none = torch.full((len(z),), self.model.config.num_labels, dtype=torch.long, device=self.device)
        return torch.cat([code.to(self.device), self.model.condition(z, none)], dim=1)

    @property
    def guidable(self) -> bool:
        """A conditional model trained with label dropout: it also models items with no label."""
        return self.conditional and self.model.config.null_label

    def resolve_guidance(self, guidance: float | None) -> float:
        if guidance is None:
            return DEFAULT_GUIDANCE if self.guidable else 0.0
        if guidance < 0:
            raise ValueError("guidance must be at least 0")
        if guidance and not self.guidable:
            raise ValueError("guidance needs a conditional model trained with label dropout")
        return float(guidance)

    @torch.no_grad()
    def _decode_codes(self, code: torch.Tensor, d: Decoding, seed: int | None = None, batch_size: int = 4096,
                      guidance: float = 0.0, noise_width: int = 0, limits: Sequence[int] | None = None,
                      squash: str = "torch") -> list[str]:
        """Text for each conditioned code (N, code); with guidance, each code is followed by the same z
        under the "no label" id (N, 2 * code). With a `batcher` (a server's), greedy and sampled decodings
        asked for at the same time by other threads run in one batch with this one. `squash`: the sigmoid of
        the CPU's numpy steps (`arraystep.SQUASH`)."""
        code = code.to(self.device)
        gen = self._generator(seed)
        max_len = d.max_len or self.default_max_len
        if self.batcher is not None and d.strategy != "beam" and len(code) <= batch_size:
            return self.batcher.decode(self, code, d, max_len, gen, noise_width, limits, guidance, squash)
        if d.strategy == "beam":
            batch_size = max(1, batch_size // d.beam)
        texts = []
        for start in range(0, len(code), batch_size):
            part = None if limits is None else limits[start:start + batch_size]
            texts += self.decode_rows(code[start:start + batch_size], d, max_len, gen, noise_width, part, guidance,
                                      squash)
        return texts

    def decode_rows(self, code: torch.Tensor, d: Decoding, max_len: int, generator=None, noise_width: int = 0,
                    limits: Sequence[int] | None = None, guidance: float = 0.0, squash: str = "torch") -> list[str]:
        """Text for each conditioned code (N, code) in one batch (see `_decode_codes`); `generator` may be the
        `loop.Streams` of several callers' rows."""
        net = Guided(self.model, guidance) if guidance else self.model
        part = None if limits is None else torch.as_tensor(limits, device=self.device)
        ids = decode(net, code, d, max_len, generator, noise_width, part, squash)
        return [self.tokenizer.decode(row) for row in ids.tolist()]

    def sample_prior(self, n: int, seed: int | None = None) -> torch.Tensor:
        """n codes from the model's prior: N(0, I), or the Gaussian fitted to its training codes."""
        eps = (random_stream(seed) if seed is not None else np.random.default_rng()).standard_normal(
            (n, self.latent_dim), dtype=np.float32)
        return self._prior(torch.from_numpy(eps))

    def _prior(self, eps: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), threads_for(len(eps), self.device):
            return self.model.prior_sample(eps.to(self.device)).cpu()

    def sample_near(self, text: str, n: int, radius: float = 1.0, seed: int | None = None, label=None) -> torch.Tensor:
        """n codes around `text`'s posterior: mu + radius * sigma * eps."""
        mu, logvar = self.encode([text], return_logvar=True, labels=label)
        return reparameterize(torch.as_tensor(mu), torch.as_tensor(logvar), eps=radius * self.sample_prior(n, seed))

    def generate(self, n: int, decoding: Decoding | None = None, seed: int | None = None, near: str | None = None,
                 radius: float = 1.0, label=None, near_label=None, **options) -> list[str]:
        """`n` new items: codes drawn from the prior N(0, I) (or around `near`'s posterior), then decoded
        (by sampling unless `decoding` says otherwise); a conditional model decodes them under `label`
        (one name, or one per item). The same as joining what `iter_generate` yields."""
        return [text for block in self.iter_generate(n, decoding, seed, near, radius, label, near_label, **options)
                for text in block]

    def iter_generate(self, n: int, decoding: Decoding | None = None, seed: int | None = None,
                      near: str | None = None, radius: float = 1.0, label=None, near_label=None,
                      **options) -> Iterator[list[str]]:
        """`generate`, a block of at most `BLOCK` items at a time, so that memory stays flat however large `n`
        is and the first items come at once. Each block draws its codes and its sampling noise from its own
        seed, made from `seed` and the block's number (`sample.blocks`): with a seed, the first k items are the
        same for every n >= k. From the prior on a CPU, the blocks are those `textvae generate` decodes without
        torch (`sample.generate_prior`), the same items for the same seed."""
        d = self.setting(decoding, "sample", **options)
        base = seed if seed is not None else new_seed()
        if near is None and self.model.config.word_prior:
            yield from self._generate_words(n, d, base)
            return
        if near is not None:
            d = self.length_for(d, [near])
            mu, logvar = (torch.as_tensor(x) for x in self.encode([near], return_logvar=True,
                                                                   labels=near_label or label))
        prior = near is None and not self.conditional and self.device.type == "cpu"
        steps = ArraySteps.of(self.model, "numpy") if prior else None
        if prior and self.batcher is None and d.strategy != "beam":
            yield from generate_prior(steps, self.tokenizer, n, d, base, d.max_len or self.default_max_len)
            return
        group: list = []             # on a GPU: blocks decoded together (see `_decode_blocks`)
        for start, eps, stream in blocks(n, base, self.latent_dim):
            if prior:      # beam search (in torch), or the same decoding in a batch with a server's other requests
                yield self._decode_codes(torch.from_numpy(steps.prior(eps)), d, seed=stream, noise_width=BLOCK,
                                         squash="numpy")
                continue
            eps = torch.from_numpy(eps)
            z = self._prior(eps) if near is None else reparameterize(mu, logvar, eps=radius * eps)
            labels = label if label is None or isinstance(label, str) else list(label)[start:start + len(eps)]
            if self.device.type == "cpu":
                yield self.decode(z, d, seed=stream, labels=labels, noise_width=BLOCK)
                continue
            group.append((z, labels, stream))
            if (len(group) + 1) * BLOCK > GPU_ROWS or start + len(eps) >= n:
                yield from self._decode_blocks(group, d)
                group = []

    def _generate_words(self, n: int, d: Decoding, seed: int) -> Iterator[list[str]]:
        """`iter_generate` from a word prior: the setting's sampling (temperature, top-p, by default `WORD_TOP_P`;
        greedy: the likeliest words) chooses the words, drawn by the prior; their spelling is read out greedily (or
        by beam search)."""
        temperature = d.temperature if d.strategy == "sample" else 0.0
        spell = d.but(strategy="beam" if d.strategy == "beam" else "greedy")
        for _, eps, _ in blocks(n, seed, self.latent_dim):
            with torch.no_grad(), threads_for(len(eps), self.device):
                z = self.model.prior_sample(torch.from_numpy(eps).to(self.device), temperature,
                                            WORD_TOP_P if d.top_p is None else d.top_p)
            yield self._decode_codes(z, spell)

    def _decode_blocks(self, group: list, d: Decoding) -> Iterator[list[str]]:
        """The texts of several blocks of `iter_generate` (their codes, labels and sampling seeds), decoded in one
        batch on a GPU, where a step of 256 rows costs about what a step of thousands does. Each block's rows
        draw from the block's own stream (`loop.Streams`), so they decode as they would alone."""
        guidance = self.resolve_guidance(d.guidance)
        codes = [self._code_of(z, labels, guidance) for z, labels, _ in group]
        streams = Streams(tuple((self._generator(seed), len(z), BLOCK) for z, _, seed in group))
        texts = self.decode_rows(torch.cat(codes), d, d.max_len or self.default_max_len, streams, 0, None, guidance)
        for z, _, _ in group:
            yield texts[:len(z)]
            texts = texts[len(z):]

    # the inside of a path between two sentences: words drawn from the word prior given the path's global code, at
    # this temperature (measured on review snippets: 0 writes the same few generic phrases, loops included; 1 the
    # judge's perplexity of samples; 0.8 sentences of real words (98.5%) that change as the path moves)
    PATH_TEMPERATURE = 0.8
    PATH_TOP_P = 1.0

    @torch.no_grad()
    def _sentences_between(self, path: torch.Tensor, seed: int | None) -> torch.Tensor:
        """A path of codes (steps, Z) whose inner points are sentences: its ends are the two texts' codes; at each
        point between, the slots are those the word prior writes from that point's global code, every point with
        the same noise (`seed`, else 0), so that the path's sentences change where the global code moves them."""
        c = self.model.config
        if len(path) <= 2:
            return path
        eps = random_stream(seed or 0).standard_normal((1, c.latent_dim), dtype=np.float32)
        eps = torch.from_numpy(np.repeat(eps, len(path) - 2, axis=0)).to(self.device)
        g = path[1:-1, c.latent_dim - c.global_dim:].to(self.device)
        ends = torch.stack([path[0], path[-1]]).to(self.device)
        u, words = self.model.places(ends, self.PATH_TEMPERATURE, self.PATH_TOP_P)              # (2, K), (2,)
        t = torch.linspace(0, 1, len(path), device=self.device)[1:-1].unsqueeze(1)
        inner = self.model.codes_given(g, eps, self.PATH_TEMPERATURE, self.PATH_TOP_P,
                                       uniforms=(1 - t) * u[:1] + t * u[1:],
                                       lengths=(1 - t[:, 0]) * words[0] + t[:, 0] * words[1],
                                       finals=self._final_words()).cpu()
        return torch.cat([path[:1], inner, path[-1:]])

    def _final_words(self) -> torch.Tensor:
        """(C,) which classes of the word prior are words that close a sentence (their last character, before any
        closing quotes or brackets, is . ? or !)."""
        if getattr(self, "_finals", None) is None:
            spellings = self.model.word_prior.spellings.cpu().tolist()
            close = [self.tokenizer.decode(w).rstrip("\"'”’)]").endswith((".", "?", "!")) for w in spellings]
            self._finals = torch.tensor([False, False] + close, device=self.device)
        return self._finals

    def reconstruct(self, texts: Sequence[str], decoding: Decoding | None = None, seed: int | None = None,
                    label=None, to_label=None, **options) -> list[str]:
        """Decode each text's posterior mean (by beam search unless told otherwise). A conditional model
        encodes under `label` and decodes under `to_label` (default: the same): label transfer."""
        if isinstance(texts, str):
            texts = [texts]
        z = self.encode(texts, labels=label)
        d = self.setting(decoding, self.READ_OUT, **options)
        limits = None if d.max_len is not None else [self.length_limit(len(t)) for t in texts]
        return self.decode(z, d, seed=seed, labels=to_label if to_label is not None else label, limits=limits)

    def analogy(self, a: str, b: str, c: str, decoding: Decoding | None = None, seed: int | None = None,
                label=None, **options) -> str:
        """Latent arithmetic: decode z_b - z_a + z_c ("a is to b as c is to ?")."""
        mu = self.encode([a, b, c], labels=label)
        d = self.length_for(self.setting(decoding, self.READ_OUT, **options), [a, b, c])
        return self.decode(mu[1] - mu[0] + mu[2], d, seed=seed,
                           labels=label)[0]

    def interpolate(self, a, b, steps: int = 5, method: str = "lerp", unique: bool = False,
                    decoding: Decoding | None = None, seed: int | None = None, label=None, label_b=None,
                    **options) -> list[str]:
        """Homotopy (Bowman et al. 2016, section 5): decode `steps` points between two codes.

        a, b: texts (their posterior means are used) or codes. `unique` drops a step identical to the one
        before it. A conditional model keeps `label` along the path, or with `label_b` moves the label
        embedding from one label to the other as well."""
        if not 2 <= steps <= MAX_PATH_STEPS:
            raise ValueError(f"steps must be between 2 and {MAX_PATH_STEPS:,}")
        d = self.setting(decoding, self.READ_OUT, **options)
        if not self.model.config.word_prior:    # the prior's sentences inside a path are as long as they are
            d = self.length_for(d, [a, b])
        la, lb = label, label_b if label_b is not None else label
        za, zb = (torch.as_tensor(self.encode([x], labels=lab)[0]) if isinstance(x, str)
                  else torch.as_tensor(np.asarray(x)).float() for x, lab in ((a, la), (b, lb)))
        path = (slerp if method == "slerp" else lerp)(za, zb, steps)
        if self.model.config.word_prior:
            path = self._sentences_between(path, seed)
        if self.conditional and la != lb:
            ya, yb = (self.model.label_embedding(self.label_ids(x, 1))[0].detach().cpu() for x in (la, lb))
            t = torch.linspace(0, 1, steps).unsqueeze(1)
            code = torch.cat([path, (1 - t) * ya + t * yb], dim=1)
            guidance = self.resolve_guidance(d.guidance)
            if guidance:
                code = self._beside_unlabelled(code, path)
            texts = self._decode_codes(code, d, seed, guidance=guidance)
        else:
            texts = self.decode(path, d, seed=seed, labels=la)
        if unique:
            texts = [t for i, t in enumerate(texts) if i == 0 or t != texts[i - 1]]
        return texts


LENGTH_SLACK = 8           # characters a decoding of a text's code may run past 1.5 x the text's length
CPU_ENCODE_BATCH = 128     # texts encoded together on a CPU (see `Model.encode`)
GPU_ROWS = 4096            # rows of `iter_generate`'s blocks decoded together on a GPU


def write_codes(f, texts: Sequence[str], mu: np.ndarray, logvar: np.ndarray | None = None, fmt: str = "npy") -> None:
    """Codes into the binary file `f`: "npy", the array of means (N x Z); or "jsonl", one {"text", "mu"[,
    "logvar"]} object per line."""
    import json
    if fmt == "npy":
        np.save(f, mu)
        return
    for i, text in enumerate(texts):
        rec = {"text": text, "mu": [round(float(x), 6) for x in mu[i]]}
        if logvar is not None:
            rec["logvar"] = [round(float(x), 6) for x in logvar[i]]
        f.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))


def load(path, device: str = "cpu") -> Model:
    """Load a checkpoint file or run directory: `m = textvae.load("runs/words_en")`."""
    p = checkpoint.resolve(path)
    ck = checkpoint.load(p, device=device)
    return Model(ck.model, ck.tokenizer, ck.run, p)
