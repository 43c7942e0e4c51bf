"""The decoder in numpy, for greedy and sampled decoding on a CPU: its first state, its step and the prior.

A decoding step of a few rows is a few dozen small operations, and on a CPU its time goes to their fixed costs
rather than to arithmetic: a torch operation on a tensor of a few thousand numbers costs 2 to 10 microseconds on
the 2-core machines measured here, the same numpy operation about one. `ArraySteps` does what `TextVAE.step` does,
on the same weights (a model's own, as arrays, or a checkpoint's read without torch) from the same code; the
decoding loop (`loop.decode_codes`) then keeps numpy arrays too. The logits agree with torch's to float rounding
(about 1e-5), which could change a choice between two characters whose scores tie that closely, as a different
batch size can in torch itself. `benchmarks/decode_speed.py` prints the two side by side.

This module imports no torch: `textvae generate` reads a checkpoint's arrays and decodes with these steps
(`sample.Sampler`), the same steps and squashing as `Model.generate` on a CPU, so both give the same items.
"""

from __future__ import annotations

import numpy as np

from ..data.tokenizer import EOS_ID, PAD_ID
from ..model.slotprior import chain_ends, slot_prior_codes

NONE = 2**30        # no bound on a code's words (see `code_words`)


def _sigmoid_numpy(x: np.ndarray) -> np.ndarray:
    """sigmoid(x) = 1 / (1 + exp(-x)), in x's own memory (x is an array of the step's own)."""
    with np.errstate(over="ignore"):
        np.negative(x, out=x)
        np.exp(x, out=x)
    x += 1.0
    return np.reciprocal(x, out=x)


def _sigmoid_torch(x: np.ndarray) -> np.ndarray:
    """sigmoid(x) in x's own memory by torch's kernel: twice numpy's speed here, for the decodings that may load
    torch (all but generation from the prior, whose steps `textvae generate` runs without it)."""
    import torch
    torch.sigmoid_(torch.from_numpy(x))
    return x


SQUASH = {"numpy": _sigmoid_numpy, "torch": _sigmoid_torch}


class ArraySteps:
    """`initial_state`, `step` and `prior` of a `TextVAE` on the CPU, in numpy (see the module's text), from its
    configuration and its weights as arrays (the names of its state dict).

    Every squashing function is a sigmoid (`squash`: numpy's or torch's): the first layer's gates that go through
    a tanh (an LSTM's candidate, a GRU's new state) have their weights doubled here, tanh(x) being
    2 sigmoid(2x) - 1, so that one sigmoid covers all of a step's gates."""

    arrays = True       # what `loop.decode_codes` asks of a model to keep arrays

    @classmethod
    def of(cls, model, squash: str = "torch") -> ArraySteps:
        """The steps of a `TextVAE` on the CPU, kept with it while its weights and buffers stay as they are."""
        from itertools import chain
        key = tuple((t.data_ptr(), t._version) for t in chain(model.parameters(), model.buffers()))
        kept = model.__dict__.setdefault("_kept_array_steps", {})
        if squash not in kept or kept[squash][0] != key:
            weights = {k: v.detach().cpu().float().numpy() if v.is_floating_point() else v.detach().cpu().numpy()
                       for k, v in model.state_dict().items()}
            kept[squash] = (key, cls(model.config, weights, squash))
        return kept[squash][1]

    def __init__(self, config, weights: dict[str, np.ndarray], squash: str = "numpy"):
        self.config = c = config
        self.w = w = weights
        self.sigmoid = SQUASH[squash]
        self.lstm = c.cell == "lstm"
        H, E = c.hidden_dim, c.embed_dim
        self.doubled = slice(2 * H, 3 * H)             # the gates under a tanh: an LSTM's g, a GRU's n
        w_ih = w["decoder.weight_ih_l0"]
        bias = w["decoder.bias_ih_l0"] + w["decoder.bias_hh_l0"] if self.lstm else w["decoder.bias_ih_l0"]
        self.every = every = c.every_step_width
        self.characters = self._double(w["embedding.weight"] @ w_ih[:, :E].T + bias)        # (V, G)
        self.code_weight = self._double(w_ih[:, E:E + every].T) if every else None            # (width, G)
        self.recurrent = self._double(w["decoder.weight_hh_l0"].T)                            # (H, G)
        self.recurrent_bias = None if self.lstm else self._double(w["decoder.bias_hh_l0"])
        self.fed = self._double(w_ih[:, E + every:].T) if c.slots and c.slot_feed else None
        self.logits, self.logits_bias = w["to_logits.weight"].T, w["to_logits.bias"]
        self.layers = [tuple(w[f"decoder.{name}_l{k}"] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                       for k in range(1, c.num_layers)]
        if c.slots:              # the attention through the slots' own weights (see `step`)
            scale, context = H ** -0.5, w["mix.weight"][:, H:]
            self.positions = w["position_query.weight"]
            self.mix, self.mix_bias = w["mix.weight"][:, :H].T, w["mix.bias"]
            self.key_weight = w["slot_key.weight"] * np.float32(scale)                                # (H, d)
            self.key_bias = np.ascontiguousarray(((w["slot_key.bias"] + w["slot_embedding"]) * np.float32(scale)).T)
            self.value_weight = w["slot_value.weight"].T @ context.T                                  # (d, H)
            self.value_bias = w["slot_value.bias"] @ context.T                                        # (H,)
            self.empty = w["to_posterior.bias"][:c.slot_dim] if "to_posterior.bias" in w else None
        self._ends = None

    def _double(self, weight: np.ndarray) -> np.ndarray:
        """A copy of the first layer's gate weights (..., G) with the tanh gates' columns doubled."""
        out = np.array(weight, dtype=np.float32, order="C")
        out[..., self.doubled] *= 2.0
        return out

    def _tanh(self, x: np.ndarray) -> np.ndarray:
        """tanh(x) as 2 sigmoid(2x) - 1: torch's and numpy's tanh both take 3-4x their sigmoid's time here."""
        return 2.0 * self.sigmoid(2.0 * x) - 1.0

    # -- codes ---------------------------------------------------------------------

    def prior(self, eps: np.ndarray) -> np.ndarray:
        """Codes (N, Z) from standard normal noise eps (N, Z): `TextVAE.prior_sample` in numpy."""
        w = self.w
        if "slot_words" in w and float(w["slot_words"].sum()) > 0:
            if self._ends is None:
                self._ends = chain_ends(w["slot_next"], self.config.slots)
            return slot_prior_codes(eps, w["slot_words"], w["slot_next"], self._ends, w["slot_bank_size"],
                                    w["slot_bank"], self.empty)
        if "prior_mean" in w:
            return (w["prior_mean"] + eps @ w["prior_scale"].T).astype(np.float32)
        return eps

    def initial_state(self, code):
        """The decoder's first state from the (conditioned) code, as arrays with the batch first: each layer's h
        (and c), the code's share of the first layer's gates (doubled as the weights are), and with slots the
        position, the slots themselves (B, K, Z / K), and for fed slots the pairs and the word count (see
        `TextVAE.initial_state`)."""
        c, w = self.config, self.w
        code = np.ascontiguousarray(code if isinstance(code, np.ndarray) else code.detach().cpu().numpy(),
                                    dtype=np.float32)
        B, L, H = len(code), c.num_layers, c.hidden_dim
        kinds = 2 if self.lstm else 1
        if c.lm and not c.num_labels:
            s = np.zeros((B, kinds, L, H), dtype=np.float32)
        else:
            s = np.tanh(code @ w["to_state.weight"].T + w["to_state.bias"]).reshape(B, kinds, L, H)
        rnn = [[np.ascontiguousarray(s[:, kind, layer]) for layer in range(L)] for kind in range(kinds)]
        if self.every:
            shared = code @ w["to_summary.weight"].T + w["to_summary.bias"] if c.slots else code
            code_gates = shared @ self.code_weight
        else:
            code_gates = np.zeros((B, self.characters.shape[1]), dtype=np.float32)
        if not c.slots:
            return (*rnn, code_gates)
        slots = np.ascontiguousarray(code[:, :c.slots * c.slot_dim].reshape(B, c.slots, -1))
        parts = [np.zeros(B, dtype=np.int64), slots]
        if c.slot_feed:
            ext = np.concatenate([slots, np.zeros_like(slots[:, :1])], axis=1)                # (B, K + 1, d)
            pairs = np.concatenate([ext, np.concatenate([ext[:, 1:], ext[:, -1:]], axis=1)], axis=2)
            parts += [pairs, self._code_words(slots)]
        return (*rnn, code_gates, *parts)

    def _code_words(self, slots: np.ndarray) -> np.ndarray:
        """`TextVAE._code_words`: the words (B,) a code of slots that follow words holds, or no bound."""
        c = self.config
        none = np.full(len(slots), NONE, dtype=np.int64)
        if c.slot_break < 0 or c.num_labels:
            return none
        full = np.abs(slots - self.empty).max(axis=2) > 1e-4                                  # (B, K)
        words = c.slots - full[:, ::-1].argmax(axis=1)                                        # after the last full one
        return np.where(full.any(axis=1), words, none)

    def select_rows(self, state, rows: np.ndarray):
        """The state of the batch's rows `rows` alone."""
        return tuple([s[rows] for s in part] if isinstance(part, list) else part[rows] for part in state)

    # -- a step --------------------------------------------------------------------

    def step(self, z, inputs: np.ndarray, state):
        """`TextVAE.step` in numpy: inputs (B,) -> logits (B, V), next state."""
        c = self.config
        x = inputs
        n = 2 if self.lstm else 1
        rnn, (code_gates, *memory) = state[:n], state[n:]
        gates = code_gates + self.characters[x]
        if c.slots:
            position, slots, *fed = memory
            if c.slot_break >= 0:
                position = position + (x == c.slot_break)
            if fed:
                pairs = fed[0]
                index = position if c.slot_break >= 0 else position // c.slot_span
                index = np.minimum(index, pairs.shape[1] - 1)
                gates = gates + pairs[np.arange(len(x)), index] @ self.fed
        out, rnn = self._rnn(gates, rnn)
        if not c.slots:
            return out @ self.logits + self.logits_bias, (*rnn, code_gates)
        # A slot's key and value are affine in its code: key_k = (W_k z_k + b_k + e_k) / sqrt(H), value_k (already
        # through the output layer's context weights, see `TextVAE._slot_memory`) = V z_k + v. So a query's scores
        # are (q W_k) . z_k + q . (b_k + e_k) / sqrt(H), and the attention's sum of values is V (sum_k a_k z_k) + v:
        # products with the slots' small codes rather than with keys and values as wide as the state.
        query = out + self.positions[np.minimum(position, len(self.positions) - 1)]
        scores = query @ self.key_bias + (slots @ (query @ self.key_weight)[:, :, None])[:, :, 0]   # (B, K)
        attention = np.exp(scores - scores.max(axis=1, keepdims=True))
        attention /= attention.sum(axis=1, keepdims=True)
        context = (attention[:, None, :] @ slots)[:, 0] @ self.value_weight + self.value_bias
        mixed = out @ self.mix + self.mix_bias + context
        logits = self._tanh(mixed) @ self.logits + self.logits_bias
        if fed and c.slot_break >= 0:          # the code's last word: see `TextVAE.step`
            words = fed[1]
            if (position >= words - 1).any():
                words = np.where((x == EOS_ID) | (x == PAD_ID), NONE, words)
                fed = [fed[0], words]
                last, stop = position == words - 1, position >= words
                eos = np.logaddexp(logits[:, EOS_ID], logits[:, c.slot_break])
                logits[last, EOS_ID] = eos[last]
                logits[last, c.slot_break] = -np.inf
                logits[stop] = -np.inf
                logits[stop, EOS_ID] = 0.0
        after = position if c.slot_break >= 0 else position + 1
        return logits, (*rnn, code_gates, after, slots, *fed)

    def _rnn(self, gates: np.ndarray, state):
        """`TextVAE._rnn_step` in numpy: (output (B, H), next state). The first layer's gates come with their
        tanh gates doubled (see the class's text)."""
        H = self.config.hidden_dim
        sigmoid = self.sigmoid
        h = state[0][0]
        if self.lstm:                                                           # gates i, f, g, o
            s = sigmoid(gates + h @ self.recurrent)
            cell = s[:, H:2 * H] * state[1][0] + s[:, :H] * (2.0 * s[:, 2 * H:3 * H] - 1.0)
            h = s[:, 3 * H:] * self._tanh(cell)
            hs, cs = [h], [cell]
        else:                                                                   # gates r, z, n
            hidden = h @ self.recurrent + self.recurrent_bias
            rz = sigmoid(gates[:, :2 * H] + hidden[:, :2 * H])
            candidate = 2.0 * sigmoid(gates[:, 2 * H:] + rz[:, :H] * hidden[:, 2 * H:]) - 1.0
            h = candidate + rz[:, H:] * (h - candidate)
            hs, cs = [h], []
        for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.layers, start=1):     # further layers, from h below
            inputs, hidden = h @ w_ih.T + b_ih, state[0][k] @ w_hh.T + b_hh
            if self.lstm:
                gates = inputs + hidden
                candidate = self._tanh(gates[:, 2 * H:3 * H])
                s = sigmoid(gates)
                cell = s[:, H:2 * H] * state[1][k] + s[:, :H] * candidate
                h = s[:, 3 * H:] * self._tanh(cell)
                cs.append(cell)
            else:
                rz = sigmoid(inputs[:, :2 * H] + hidden[:, :2 * H])
                candidate = self._tanh(inputs[:, 2 * H:] + rz[:, :H] * hidden[:, 2 * H:])
                h = candidate + rz[:, H:] * (state[0][k] - candidate)
            hs.append(h)
        return h, ((hs, cs) if self.lstm else (hs,))
