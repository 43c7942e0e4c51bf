"""How a decoder reads a code made of slots, as a part of `vae.TextVAE`: the slots, their keys and values, the
positions of their characters, the slots fed into the input, and the attention over them at the output
(Luong et al. 2015)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class _Reading(NamedTuple):
    """The output layers' weights, as `_read_slots` reads them."""
    positions: torch.Tensor | None      # (P, H) embeddings of a character's position (the query's part)
    mix: torch.Tensor | None            # (H, H) the state's columns of `mix`
    mix_bias: torch.Tensor | None
    logits: torch.Tensor                # (V, H) and (V,): `to_logits`
    logits_bias: torch.Tensor


class SlotReading:
    """The slot half of `TextVAE`'s decoder (a mixin: it reads the module's config and layers)."""

    def _slots(self, code: torch.Tensor) -> torch.Tensor:
        """The code's K slots (B, K, Z / K), without the label part of a conditioned code."""
        c = self.config
        return code[:, :c.slots * c.slot_dim].reshape(code.shape[0], c.slots, -1)

    def _slot_memory(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, K, H) of the code's K slots, for the attention of `_read_slots`. Both come
        ready for it: a key divided by sqrt(H) (scaled dot-product attention), a value already multiplied by
        the output layer's weights for the context (`mix`, whose input is the state and the context side by
        side), so that the attention's weighted sum of values is that layer's share of the context, by
        linearity, at the cost of K products per item instead of one per character."""
        z = self._slots(code)
        H = self.config.hidden_dim
        keys = (self.slot_key(z) + self.slot_embedding) / H ** 0.5
        return keys, self.slot_value(z) @ self.mix.weight[:, H:].t()

    def slot_positions(self, inputs: torch.Tensor) -> torch.Tensor:
        """The position of each step of decoder inputs (B, T) (<bos> c1 ..) in the code of slots: the index of
        the character it predicts, (1, T), or with slots that follow words the breaks before it, (B, T)."""
        if self.config.slot_break >= 0:
            return (inputs == self.config.slot_break).long().cumsum(dim=1)
        return torch.arange(inputs.shape[1], device=inputs.device).unsqueeze(0)

    def _code_words(self, code: torch.Tensor) -> torch.Tensor:
        """The words (B,) a code of slots that follow words holds: those before its trailing empty slots. In
        the last of them a decoding ends where a break would come (see `step`). Other codes: no bound (2^30)."""
        c = self.config
        none = torch.full((code.shape[0],), 2**30, dtype=torch.long, device=code.device)
        if c.slot_break < 0 or c.num_labels:
            return none
        words = self._pieces_held(self._slots(code))
        return torch.where(words > 0, words, none)

    def _pieces_held(self, slots: torch.Tensor) -> torch.Tensor:
        """The pieces (B,) that slots (B, K, d) hold: those before the trailing empty slots (0 where all are)."""
        full = ((slots - self._empty_slot().to(slots)).abs().amax(dim=2) > 1e-4).long()      # (B, K)
        return torch.where(full.any(dim=1), self.config.slots - full.flip(1).argmax(dim=1), 0)

    def _slot_pairs(self, code: torch.Tensor) -> torch.Tensor:
        """Each of the code's slots beside the next one, (B, K + 1, 2 Z / K), with a slot of zeros after the last
        (read past the item's end): what `_feed` gives each character."""
        z = self._slots(code)
        slots = torch.cat([z, z.new_zeros((z.shape[0], 1, z.shape[2]))], dim=1)              # (B, K + 1, d)
        return torch.cat([slots, torch.cat([slots[:, 1:], slots[:, -1:]], dim=1)], dim=2)

    def _feed(self, pairs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The slot of each step and the one after it, (B, T, 2 Z / K), from `_slot_pairs` (B, K + 1, 2 Z / K)
        and positions (B or 1, T)."""
        c = self.config
        index = positions if c.slot_break >= 0 else positions // c.slot_span
        index = index.expand(pairs.shape[0], -1).clamp(max=pairs.shape[1] - 1)
        return pairs.gather(1, index.unsqueeze(2).expand(-1, -1, pairs.shape[2]))

    def _read_slots(self, out: torch.Tensor, positions: torch.Tensor, keys: torch.Tensor,
                    values: torch.Tensor, weights: _Reading | None = None) -> torch.Tensor:
        """Logits (B, T, V) from the decoder's states `out` (B, T, H) and attention over the code's slots
        (keys and values (B, K, H) from `_slot_memory`): query = state + an embedding of the character's
        position; logits = to_logits(tanh(mix([state, context]))), the context's share of `mix` being the
        attention's weighted sum of the values. `weights`: the layers' weights as `_step_weights` keeps them."""
        w = weights or self._reading()
        query = out + F.embedding(positions.clamp(max=w.positions.shape[0] - 1), w.positions)
        attention = torch.matmul(query, keys.to(out.dtype).transpose(1, 2)).softmax(dim=-1)   # (B, T, K)
        mixed = torch.baddbmm(F.linear(out, w.mix, w.mix_bias), attention, values.to(out.dtype))
        return F.linear(torch.tanh(mixed), w.logits, w.logits_bias)

    def _reading(self) -> _Reading:
        """The weights of `_read_slots` (those of the output layer alone, without slots)."""
        H = self.config.hidden_dim
        if not self.config.slots:
            return _Reading(None, None, None, self.to_logits.weight, self.to_logits.bias)
        return _Reading(self.position_query.weight, self.mix.weight[:, :H], self.mix.bias,
                        self.to_logits.weight, self.to_logits.bias)
