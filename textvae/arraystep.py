"""The decoder's step in numpy, for decoding a few rows on a CPU.

A decoding step of a few rows is a few dozen small operations, and on a CPU its time goes to their fixed costs
rather than to arithmetic: a torch operation on a tensor of a few thousand numbers costs 3 to 10 microseconds on
the 2-core machines measured here, the same numpy operation about one. `ArraySteps` does what `TextVAE.step` does,
on the same weights (numpy views of them, nothing copied) and from the same first state, for the decoding loop
(`decode.decode_codes`), which takes its logits as tensors again; the loop, its rules and its random draws stay
torch's. The numbers agree with torch's to float rounding (about 1e-5 in the logits), which can change a
choice between two characters whose scores tie that closely, as a different batch size can in torch itself.
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
    return 0.5 * np.tanh(0.5 * x) + 0.5          # no overflow for large |x|


class ArraySteps:
    """`initial_state` and `step` of a `TextVAE` on the CPU, in numpy (see the module's text). The state is a tuple
    of arrays with the batch first: each layer's h (and c), the code's share of the first layer's gates, and with
    slots the position, the keys (B, H, K), the values (B, K, H), the fed pairs and the word count."""

    def __init__(self, model: TextVAE):
        self.model = model
        self.config = c = model.config
        self.lstm = c.cell == "lstm"
        w = model._step_weights(refresh=True)
        self.characters, self.recurrent = _array(w.characters), _array(w.recurrent)
        self.recurrent_bias, self.fed = _array(w.recurrent_bias), _array(w.fed)
        r = w.reading
        self.positions, self.mix, self.mix_bias = _array(r.positions), _array(r.mix), _array(r.mix_bias)
        self.logits, self.logits_bias = _array(r.logits).T, _array(r.logits_bias)
        if self.mix is not None:
            self.mix = self.mix.T
        rnn = model.decoder
        self.layers = [tuple(_array(getattr(rnn, f"{name}_l{k}")) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                       for k in range(1, c.num_layers)]

    def initial_state(self, code: torch.Tensor):
        """`TextVAE.initial_state`'s state, as arrays with the batch first."""
        c = self.config
        state = [s.numpy() for s in self.model.initial_state(code)]
        n = 2 if self.lstm else 1
        rnn = [list(s) for s in state[:n]]                                   # per layer (B, H)
        code_gates = np.ascontiguousarray(state[n][0])
        if not c.slots:
            return (*rnn, code_gates)
        position, keys, values, *fed = state[n + 1:]
        parts = [position[0].copy(), np.ascontiguousarray(keys.transpose(1, 2, 0)),
                 np.ascontiguousarray(values.transpose(1, 0, 2))]
        if fed:
            parts += [np.ascontiguousarray(fed[0].transpose(1, 0, 2)), fed[1][0].copy()]
        return (*rnn, code_gates, *parts)

    def select_rows(self, state, rows: torch.Tensor):
        """The state of the batch's rows `rows` alone."""
        index = rows.numpy()
        return tuple([s[index] for s in part] if isinstance(part, list) else part[index] for part in state)

    def step(self, z: torch.Tensor, inputs: torch.Tensor, state):
        """`TextVAE.step`: inputs (B,) -> logits (B, V) (a tensor), next state."""
        c = self.config
        x = inputs.numpy()
        n = 2 if self.lstm else 1
        rnn, (code_gates, *memory) = state[:n], state[n:]
        gates = code_gates + self.characters[x]
        if c.slots:
            position, keys, values, *fed = memory
            if c.slot_break >= 0:
                position = position + (x == c.slot_break)
            if fed:
                pairs = fed[0]
                index = position if c.slot_break >= 0 else position // c.slot_span
                index = np.minimum(index, pairs.shape[1] - 1)
                gates = gates + pairs[np.arange(len(x)), index] @ self.fed
        out, rnn = self._rnn(gates, rnn)
        if not c.slots:
            return torch.from_numpy(out @ self.logits + self.logits_bias), (*rnn, code_gates)
        query = out + self.positions[np.minimum(position, len(self.positions) - 1)]
        scores = (query[:, None, :] @ keys)[:, 0]                              # (B, K)
        attention = np.exp(scores - scores.max(axis=1, keepdims=True))
        attention /= attention.sum(axis=1, keepdims=True)
        mixed = out @ self.mix + self.mix_bias + (attention[:, None, :] @ values)[:, 0]
        logits = np.tanh(mixed) @ self.logits + self.logits_bias
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
        return torch.from_numpy(logits), (*rnn, code_gates, after, keys, values, *fed)

    def _rnn(self, gates: np.ndarray, state):
        """`TextVAE._rnn_step` in numpy: (output (B, H), next state)."""
        H = self.config.hidden_dim
        hs, cs = [], []
        h = state[0][0]
        for k in range(self.config.num_layers):
            if k:                                                               # a further layer, from h below
                w_ih, w_hh, b_ih, b_hh = self.layers[k - 1]
                gates = h @ w_ih.T + b_ih
                h = state[0][k]
                if self.lstm:
                    gates = gates + b_hh
            if self.lstm:                                                       # gates i, f, g, o
                gates = gates + h @ (self.recurrent if k == 0 else w_hh.T)
                s = _sigmoid(gates)
                cell = s[:, H:2 * H] * state[1][k] + s[:, :H] * np.tanh(gates[:, 2 * H:3 * H])
                h = s[:, 3 * H:] * np.tanh(cell)
                cs.append(cell)
            else:                                                               # gates r, z, n
                hidden = h @ self.recurrent + self.recurrent_bias if k == 0 else h @ w_hh.T + b_hh
                rz = _sigmoid(gates[:, :2 * H] + hidden[:, :2 * H])
                candidate = np.tanh(gates[:, 2 * H:] + rz[:, :H] * hidden[:, 2 * H:])
                h = candidate + rz[:, H:] * (h - candidate)
            hs.append(h)
        return h, ((hs, cs) if self.lstm else (hs,))
