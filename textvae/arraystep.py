"""The decoder's step in numpy, for greedy and sampled decoding on a CPU.

A decoding step of a few rows is a few dozen small operations, and on a CPU its time goes to their fixed costs
rather than to arithmetic: a torch operation on a tensor of a few thousand numbers costs 2 to 10 microseconds on
the 2-core machines measured here, the same numpy operation about one. `ArraySteps` does what `TextVAE.step` does,
on the same weights (numpy views of them, or copies with the tanh gates' columns doubled) from the same code; the
decoding loop (`decode.decode_codes`) then keeps numpy arrays too, and only its random draws and sampling filters
go through torch's functions, so that a seed draws the same numbers. The logits agree with torch's to float
rounding (about 1e-5), which could change a choice between two characters whose scores tie that closely, as a
different batch size can in torch itself (thousands of items compared here came out identical).
`benchmarks/decode_speed.py` prints the two side by side.
"""

from __future__ import annotations

import numpy as np
import torch

from .model import TextVAE
from .tokenizer import EOS_ID, PAD_ID


def _array(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().numpy()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """sigmoid(x), in x's own memory (x is an array of the step's own): torch's kernel, 3x numpy's here."""
    torch.sigmoid_(torch.from_numpy(x))
    return x


def _tanh(x: np.ndarray) -> np.ndarray:
    """tanh(x) as 2 sigmoid(2x) - 1: torch's and numpy's tanh both take 3-4x their sigmoid's time here."""
    return 2.0 * _sigmoid(2.0 * x) - 1.0


class ArraySteps:
    """`initial_state` and `step` of a `TextVAE` on the CPU, in numpy (see the module's text).

    Every squashing function is a sigmoid: the first layer's gates that go through a tanh (an LSTM's candidate,
    a GRU's new state) have their weights doubled here, tanh(x) being 2 sigmoid(2x) - 1, so that one sigmoid
    covers all of a step's gates."""

    @classmethod
    def of(cls, model: TextVAE) -> ArraySteps:
        """The steps of `model`, kept with it while its weights stay as they are."""
        kept = model.__dict__.get("_kept_array_steps")
        if kept is None or kept.weights is not model._step_weights(refresh=True):
            kept = model.__dict__["_kept_array_steps"] = cls(model)
        return kept

    def __init__(self, model: TextVAE):
        self.model = model
        self.config = c = model.config
        self.lstm = c.cell == "lstm"
        self.weights = w = model._step_weights(refresh=True)
        H = c.hidden_dim
        self.doubled = slice(2 * H, 3 * H)             # the gates under a tanh: an LSTM's g, a GRU's n
        self.characters, self.recurrent = self._double(w.characters), self._double(w.recurrent)
        self.recurrent_bias, self.fed = self._double(w.recurrent_bias), self._double(w.fed)
        r = w.reading
        self.positions, self.mix, self.mix_bias = _array(r.positions), _array(r.mix), _array(r.mix_bias)
        self.logits, self.logits_bias = _array(r.logits).T, _array(r.logits_bias)
        if self.mix is not None:
            self.mix = self.mix.T
        rnn = model.decoder
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        self.layers = [tuple(_array(getattr(rnn, f"{name}_l{k}")) for name in names) for k in range(1, c.num_layers)]
        if c.slots:              # the attention through the slots' own weights (see `step`)
            with torch.no_grad():
                scale, context = H ** -0.5, model.mix.weight[:, H:]
                self.key_weight = _array(model.slot_key.weight * scale)                          # (H, d)
                self.key_bias = _array(((model.slot_key.bias + model.slot_embedding) * scale).T).copy()  # (H, K)
                self.value_weight = _array(model.slot_value.weight.T @ context.T)                # (d, H)
                self.value_bias = _array(model.slot_value.bias @ context.T)                      # (H,)

    def _double(self, weight: torch.Tensor | None) -> np.ndarray | None:
        """A copy of the first layer's gate weights (..., G) with the tanh gates' columns doubled."""
        if weight is None:
            return None
        out = np.array(_array(weight), dtype=np.float32, order="C")
        out[..., self.doubled] *= 2.0
        return out

    def initial_state(self, code: torch.Tensor):
        """The decoder's first state from the code, as arrays with the batch first: each layer's h (and c), the
        code's share of the first layer's gates (doubled as the weights are), and with slots the position, the
        slots themselves (B, K, Z / K), and for fed slots the pairs and the word count (see
        `TextVAE.initial_state`)."""
        m, c = self.model, self.config
        rnn = m._rnn_state(code)
        rnn = [list(s.numpy()) for s in (rnn if isinstance(rnn, tuple) else (rnn,))]      # per layer (B, H)
        code_gates = np.array(m._code_gates(code).numpy(), dtype=np.float32, order="C")
        code_gates[:, self.doubled] *= 2.0
        if not c.slots:
            return (*rnn, code_gates)
        parts = [np.zeros(len(code), dtype=np.int64), np.ascontiguousarray(m._slots(code).numpy())]
        if c.slot_feed:
            parts += [m._slot_pairs(code).numpy(), m._code_words(code).numpy()]
        return (*rnn, code_gates, *parts)

    def select_rows(self, state, rows: np.ndarray):
        """The state of the batch's rows `rows` alone."""
        return tuple([s[rows] for s in part] if isinstance(part, list) else part[rows] for part in state)

    def step(self, z: torch.Tensor, inputs: np.ndarray, state):
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
        logits = _tanh(mixed) @ self.logits + self.logits_bias
        if fed and c.slot_break >= 0:          # the code's last word: see `TextVAE.step`
            words = fed[1]
            if (position >= words - 1).any():
                words = np.where((x == EOS_ID) | (x == PAD_ID), 2**30, words)
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
        h = state[0][0]
        if self.lstm:                                                           # gates i, f, g, o
            s = _sigmoid(gates + h @ self.recurrent)
            cell = s[:, H:2 * H] * state[1][0] + s[:, :H] * (2.0 * s[:, 2 * H:3 * H] - 1.0)
            h = s[:, 3 * H:] * _tanh(cell)
            hs, cs = [h], [cell]
        else:                                                                   # gates r, z, n
            hidden = h @ self.recurrent + self.recurrent_bias
            rz = _sigmoid(gates[:, :2 * H] + hidden[:, :2 * H])
            candidate = 2.0 * _sigmoid(gates[:, 2 * H:] + rz[:, :H] * hidden[:, 2 * H:]) - 1.0
            h = candidate + rz[:, H:] * (h - candidate)
            hs, cs = [h], []
        for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.layers, start=1):     # further layers, from h below
            inputs, hidden = h @ w_ih.T + b_ih, state[0][k] @ w_hh.T + b_hh
            if self.lstm:
                gates = inputs + hidden
                candidate = _tanh(gates[:, 2 * H:3 * H])
                s = _sigmoid(gates)
                cell = s[:, H:2 * H] * state[1][k] + s[:, :H] * candidate
                h = s[:, 3 * H:] * _tanh(cell)
                cs.append(cell)
            else:
                rz = _sigmoid(inputs[:, :2 * H] + hidden[:, :2 * H])
                candidate = _tanh(inputs[:, 2 * H:] + rz[:, :H] * hidden[:, 2 * H:])
                h = candidate + rz[:, H:] * (state[0][k] - candidate)
            hs.append(h)
        return h, ((hs, cs) if self.lstm else (hs,))
