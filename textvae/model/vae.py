"""The sequence VAE of Bowman et al. 2016, "Generating Sentences from a Continuous Space".

encoder RNN -> q(z|x) = N(mu, diag(exp(logvar)))  -> z -> decoder RNN's initial state
(and, optionally, an input at every step) -> p(x|z), one character at a time.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from ..settings import SLOT_SUMMARY, ModelConfig
from .codes import LOG_2PI, SLOT_BANK, Priors
from .prior import WordPrior, word_hashes, word_pieces
from .slots import SlotReading, _Reading

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class VAEOutput(NamedTuple):
    logits: torch.Tensor   # (B, T, V) scores of the next character
    mu: torch.Tensor       # (B, Z) posterior mean
    logvar: torch.Tensor   # (B, Z) posterior log-variance
    z: torch.Tensor        # (B, Z) the code the decoder saw
    log_q: torch.Tensor | None = None   # (B,) with a word prior: E log q(s|x) of the word slots (their entropy)
    log_p: torch.Tensor | None = None   # (B,) and log p(s|g) of the slots drawn (a lower bound: see `prior`)


class _StepWeights(NamedTuple):
    """What a decoding step reads of the module (see `TextVAE._step_weights`)."""
    characters: torch.Tensor            # (V, G) the first layer's gates' share of each character, with biases
    recurrent: torch.Tensor             # (H, G) the first layer's recurrent weights, transposed
    recurrent_bias: torch.Tensor | None  # (G,) a GRU's recurrent bias
    fed: torch.Tensor | None            # (2 Z / K, G) input weights of the fed slots, transposed
    reading: _Reading


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None,
                   eps: torch.Tensor | None = None) -> torch.Tensor:
    """z ~ q(z|x), differentiable in mu and logvar (Kingma & Welling 2014).

    `eps` is the standard normal noise when the caller draws it (it may add leading dimensions: K
    samples per item); otherwise it is drawn here, shaped like mu."""
    std = torch.exp(0.5 * logvar)
    if eps is None:
        eps = torch.randn(std.shape, generator=generator, device=std.device, dtype=std.dtype)
    return mu + std * eps.to(std.dtype)


def decoder_inputs(tokens: torch.Tensor) -> torch.Tensor:
    """<bos> c1 .. cn from c1 .. cn <eos>: the decoder predicts each character from those before it."""
    bos = torch.full_like(tokens[:, :1], BOS_ID)
    return torch.cat([bos, tokens[:, :-1]], dim=1)


class TextVAE(Priors, SlotReading, nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        rnn = CELLS[c.cell]
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=PAD_ID)
        drop = c.rnn_dropout if c.num_layers > 1 else 0.0
        directions = 2 if c.bidirectional else 1
        label_in = c.label_dim if c.num_labels else 0
        if c.num_labels:
            self.label_embedding = nn.Embedding(c.num_labels + int(c.null_label), c.label_dim)
        if not c.lm:
            # Two one-way stacks rather than nn.LSTM(bidirectional=True): the backward one reads each item
            # reversed within its own length, so padded batches need no packing (on CPUs the backward pass
            # of a packed sequence measured 20-40x slower than a padded one; see benchmarks/).
            # The encoder only summarises the item: by default half the decoder's width, about 3x cheaper.
            self.encoder = rnn(c.embed_dim, c.encoder_dim, c.num_layers, batch_first=True, dropout=drop)
            if c.bidirectional:
                self.encoder_reverse = rnn(c.embed_dim, c.encoder_dim, c.num_layers, batch_first=True, dropout=drop)
            per_code = c.slot_dim
            self.to_posterior = nn.Linear(directions * c.encoder_dim + label_in, 2 * per_code)
        if not c.lm or c.num_labels:
            # z (and label) -> the decoder's initial hidden state (and cell state, for an LSTM), every layer
            states = 2 if c.cell == "lstm" else 1
            self.to_state = nn.Linear(self._code_in, states * c.num_layers * c.hidden_dim)
        every_step = self._code_in if c.z_every_step and (not c.lm or c.num_labels) else 0
        if c.slots:
            # A code of many slots reaches every step as a short summary; its detail comes by attention
            # (Luong et al. 2015) over the slots, queried by the decoder's state and its position.
            self.to_summary = nn.Linear(self._code_in, SLOT_SUMMARY)
            every_step = (SLOT_SUMMARY if c.z_every_step else 0) + (2 * c.slot_dim if c.slot_feed else 0)
            H, slot_dim = c.hidden_dim, c.slot_dim
            self.slot_key = nn.Linear(slot_dim, H)
            self.slot_value = nn.Linear(slot_dim, H)
            self.slot_embedding = nn.Parameter(torch.randn(c.slots, H) * 0.1)
            self.position_query = nn.Embedding(c.slots * c.slot_span + 1, H)
            self.mix = nn.Linear(2 * H, H)
        self.decoder = rnn(c.embed_dim + every_step, c.hidden_dim, c.num_layers, batch_first=True, dropout=drop)
        self.to_logits = nn.Linear(c.hidden_dim, c.vocab_size)
        if c.fitted_prior and not c.lm:
            self.register_buffer("prior_mean", torch.zeros(c.latent_dim))
            self.register_buffer("prior_scale", torch.eye(c.latent_dim))        # Cholesky factor of the covariance
        if c.word_prior and not c.lm:
            self.word_prior = WordPrior(c.word_prior, c.slot_dim, c.global_dim, c.prior_hidden)
            # q(g|x): the words (classes and slots) read both ways, as the encoder reads characters
            E = self.word_prior.embed.embedding_dim
            self.global_reader = nn.LSTM(E, c.encoder_dim, batch_first=True)
            self.global_reader_reverse = nn.LSTM(E, c.encoder_dim, batch_first=True)
            self.to_global = nn.Linear(2 * c.encoder_dim, 2 * c.global_dim)
        if c.slot_prior and not c.lm:
            C, d = c.slot_prior, c.slot_dim
            self.register_buffer("slot_bank", torch.zeros(C, SLOT_BANK, d))          # member codes of each cluster
            self.register_buffer("slot_bank_size", torch.zeros(C, dtype=torch.long))
            self.register_buffer("slot_next", torch.zeros(C + 1, C + 1))            # row C: start, column C: end
            self.register_buffer("slot_words", torch.zeros(c.slots + 1))             # share of items of n words

    def start_decoder_from(self, lm: TextVAE, code_scale: float = 0.1) -> None:
        """Start this VAE's decoder from a trained language model (`--decoder-from`).

        The embedding, decoder RNN and output layer are copied; the weights that read the code (its
        columns of the decoder's input weights, and the code -> initial state layer) are scaled by
        `code_scale`, so the VAE begins as that language model and learns to use z from there."""
        c, s = self.config, lm.config
        if c.lm:
            raise ValueError("a language model has no code to learn: start a VAE from a language model")
        if c.slots:
            raise ValueError("a code of slots reads the decoder differently: start a one-code VAE (--slots 0)")
        if not s.lm or s.num_labels:
            raise ValueError("the decoder can only start from an unconditional language model (a --lm run)")
        for name in ("vocab_size", "cell", "embed_dim", "hidden_dim", "num_layers"):
            if getattr(c, name) != getattr(s, name):
                raise ValueError(f"the language model has {name} {getattr(s, name)}, this model {getattr(c, name)}")
        source = lm.state_dict()
        with torch.no_grad():
            for prefix in ("embedding", "decoder", "to_logits"):
                for name, p in getattr(self, prefix).named_parameters():
                    w = source[f"{prefix}.{name}"].to(p.dtype)
                    if p.shape == w.shape:
                        p.copy_(w)
                    else:                       # a layer-0 input weight: embedding columns first, then the code's
                        p[:, :w.shape[1]].copy_(w)
                        p[:, w.shape[1]:].mul_(code_scale)
            self.to_state.weight.mul_(code_scale)
            self.to_state.bias.zero_()

    @property
    def _code_in(self) -> int:
        return self.config.code_width

    def condition(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's code: z, with the label's embedding appended in a conditional model: (B, code)."""
        c = self.config
        if not c.num_labels:
            return z
        if labels is None:
            raise ValueError("this model is conditional: give a label for every item")
        y = self.label_embedding(labels.to(z.device)).to(z.dtype)
        return y if c.lm else torch.cat([z, y], dim=-1)

    # -- q(z|x) --------------------------------------------------------------------

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor,
               labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T) padded, lengths (B,) (, labels (B,)) -> mu, logvar (B, Z)."""
        c = self.config
        if c.lm:
            zeros = tokens.new_zeros((tokens.shape[0], c.latent_dim), dtype=self.to_logits.weight.dtype)
            return zeros, zeros
        if c.word_prior:
            return self._encode_words(tokens, lengths)
        B, T = tokens.shape
        last = (lengths - 1).clamp_min(0).view(B, 1, 1).expand(B, 1, c.encoder_dim)   # index of each item's last step
        out, _ = self.encoder(self.embedding(tokens))                                # (B, T, H) padded, no packing
        t = torch.arange(T, device=tokens.device).unsqueeze(0)                        # (1, T)
        if c.bidirectional:
            rev = torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)  # reverse within length
            out_r, _ = self.encoder_reverse(self.embedding(tokens.gather(1, rev)))
        if c.slots:                                   # each slot: the mean of the states over its characters
            if c.bidirectional:
                out = torch.cat([out, out_r.gather(1, rev.unsqueeze(2).expand_as(out_r))], dim=-1)  # (B, T, 2H)
            if c.slot_break >= 0:                     # the slot of a character: the breaks before it
                breaks = (tokens == c.slot_break).long()
                slot = (breaks.cumsum(dim=1) - breaks).clamp(max=c.slots - 1)         # (B, T)
            else:
                slot = (t // c.slot_span).clamp(max=c.slots - 1)                      # (1, T)
            inside = (t < lengths.unsqueeze(1)).to(out.dtype)                          # (B, T)
            weights = F.one_hot(slot, c.slots).to(out.dtype) * inside.unsqueeze(2)     # (B, T, K)
            weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1.0)
            summary = torch.einsum("btk,bth->bkh", weights, out)                       # (B, K, 2H)
        else:
            summary = out.gather(1, last).squeeze(1)                                  # (B, H) state after the item
            if c.bidirectional:
                summary = torch.cat([summary, out_r.gather(1, last).squeeze(1)], dim=-1)  # (B, 2H)
        if c.num_labels:
            y = self.label_embedding(labels).to(summary.dtype)
            summary = torch.cat([summary, y.unsqueeze(1).expand(-1, c.slots, -1) if c.slots else y], dim=-1)
        mu, logvar = self.to_posterior(summary).chunk(2, dim=-1)                       # (B, [K,] Z / K)
        return mu.reshape(B, -1), logvar.clamp(-20.0, 10.0).reshape(B, -1)

    def _read_both_ways(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The mean of the encoder's states, both ways, over each row's first `lengths` steps: (N, 2H)."""
        _, T = tokens.shape
        t = torch.arange(T, device=tokens.device).unsqueeze(0)
        out, _ = self.encoder(self.embedding(tokens))
        rev = torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)      # reverse within length
        out_r, _ = self.encoder_reverse(self.embedding(tokens.gather(1, rev)))
        out = torch.cat([out, out_r.gather(1, rev.unsqueeze(2).expand_as(out_r))], dim=-1)  # (N, T, 2H)
        inside = (t < lengths.unsqueeze(1)).to(out.dtype).unsqueeze(2)
        return (out * inside).sum(dim=1) / lengths.clamp_min(1).unsqueeze(1).to(out.dtype)

    def _word_posteriors(self, pieces: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(s|w) of words written alone: pieces (M, L) their characters then <eos>, lengths (M,) with the <eos>
        -> mean, log-variance (M, d) each. A word's slot depends on its characters alone, so a word's code in a
        sentence is the component the word prior gives it (`components`)."""
        mu, logvar = self.to_posterior(self._read_both_ways(pieces, lengths)).chunk(2, dim=-1)
        return mu, logvar.clamp(-20.0, 10.0)

    def _encode_words(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) of a word-prior model: each word's slot from its own characters (`_word_posteriors`), a slot past
        the last word its fixed empty code; the global code g from a reading, both ways, of the words (their
        classes and slots) in order."""
        c = self.config
        B, K, d = tokens.shape[0], c.slots, c.slot_dim
        pieces, piece_lengths, words = word_pieces(tokens, lengths, c.slot_break, K)
        inside = torch.arange(K, device=tokens.device).unsqueeze(0) < words.unsqueeze(1)       # (B, K)
        mu_w, logvar_w = self._word_posteriors(pieces, piece_lengths)                        # (M, d)
        empty = self.to_posterior.bias[:d]
        mu = empty.expand(B, K, d).clone().masked_scatter(inside.unsqueeze(2), mu_w.to(empty.dtype))
        logvar = torch.full_like(mu, -20.0).masked_scatter(inside.unsqueeze(2), logvar_w.to(empty.dtype))
        classes = self.word_prior.classes_of(word_hashes(tokens, lengths, c.slot_break, K)[0])
        x = self.word_prior.embed(classes) + self.word_prior.from_slot(mu)                  # (B, K, E)
        t = torch.arange(K, device=tokens.device).unsqueeze(0)
        rev = torch.where(inside, words.unsqueeze(1) - 1 - t, t)
        out, _ = self.global_reader(x)
        out_r, _ = self.global_reader_reverse(x.gather(1, rev.unsqueeze(2).expand_as(x)))
        last = (words - 1).view(B, 1, 1).expand(B, 1, out.shape[2])
        mu_g, logvar_g = self.to_global(torch.cat([out.gather(1, last), out_r.gather(1, last)], dim=2)[:, 0]).chunk(
            2, dim=-1)
        return (torch.cat([mu.reshape(B, -1), mu_g], dim=1),
                torch.cat([logvar.reshape(B, -1), logvar_g.clamp(-20.0, 10.0)], dim=1))

    # -- p(x|z) --------------------------------------------------------------------

    def initial_state(self, z: torch.Tensor):
        """The decoder's first state from the code, and what every step reads of the code, computed once per
        decoding rather than at every step: the RNN's state tanh(W z + b), (L, B, H) (two, for an LSTM); the
        part of the first layer's gates that comes from the code (1, B, G) (see `_code_gates`); with slots,
        the position (1, B) of the next character, the slots' attention keys and values (K, B, H), and for
        fed slots each slot beside the next (K + 1, B, 2 Z / K) and the code's word count (1, B). Every part
        has the batch on dim 1, where beam search and guidance index it.

        `z` here (and in `step`) is the conditioned code, `condition(z, labels)`."""
        self._step_weights(refresh=True)
        state = self._rnn_state(z)
        state = (*(state if isinstance(state, tuple) else (state,)), self._code_gates(z).unsqueeze(0))
        c = self.config
        if not c.slots:
            return state
        keys, values = self._slot_memory(z)
        position = torch.zeros((1, z.shape[0]), dtype=torch.long, device=z.device)
        state += (position, keys.transpose(0, 1), values.transpose(0, 1))
        if c.slot_feed:
            state += (self._slot_pairs(z).transpose(0, 1), self._code_words(z).unsqueeze(0))
        return state

    def _rnn_state(self, z: torch.Tensor):
        """The decoder RNN's first state, (L, B, H), or (h, c) for an LSTM."""
        c = self.config
        B = z.shape[0]
        if c.lm and not c.num_labels:
            h = z.new_zeros((c.num_layers, B, c.hidden_dim))
            return (h, torch.zeros_like(h)) if c.cell == "lstm" else h
        s = torch.tanh(self.to_state(z))
        if c.cell == "lstm":
            return tuple(s.view(B, 2, c.num_layers, c.hidden_dim).permute(1, 2, 0, 3).contiguous())
        return s.view(B, c.num_layers, c.hidden_dim).transpose(0, 1).contiguous()

    def _step_inputs(self, inputs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = self.embedding(inputs)                                           # (B, T, E)
        if self._every_step_code:
            code = self.to_summary(z) if self.config.slots else z
            x = torch.cat([x, code.unsqueeze(1).expand(-1, x.shape[1], -1).to(x.dtype)], dim=-1)
        return x

    def decode(self, z: torch.Tensor, inputs: torch.Tensor, lengths: torch.Tensor | None = None,
               labels: torch.Tensor | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced decoding: z (B, Z), inputs (B, T) starting with <bos> -> logits (B, T, V)."""
        return self.decode_code(self.condition(z, labels), inputs, positions)

    def decode_code(self, code: torch.Tensor, inputs: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced decoding of a conditioned code (B, code) -> logits (B, T, V). With slots, `positions`
        (from `slot_positions` of the uncorrupted inputs) when `inputs` had characters dropped."""
        # The decoder is causal, so padding after an item cannot change that item's logits: no packing.
        x = self._step_inputs(inputs, code)
        if self.config.slots:
            positions = self.slot_positions(inputs) if positions is None else positions
            if self.config.slot_feed:
                x = torch.cat([x, self._feed(self._slot_pairs(code), positions).to(x.dtype)], dim=-1)
        out, _ = self.decoder(x, self._rnn_state(code))
        if self.config.slots:
            return self._read_slots(out, positions, *self._slot_memory(code))
        return self.to_logits(out)                                           # (B, T, V)

    def step(self, z: torch.Tensor, inputs: torch.Tensor, state):
        """One decoding step for sampling: inputs (B,) -> logits (B, V), next state (from `initial_state`).

        The same numbers as teacher forcing (`decode_code`), from what `initial_state` computed once: the
        code's share of the first layer's gates, the slots' keys and values, and the weights as a step reads
        them (`_step_weights`). A step's arithmetic is then the RNN's recurrent product and the output
        layers, in a few dozen small operations (a step of a few rows costs about their count)."""
        c, w = self.config, self._step_weights()
        n = 2 if c.cell == "lstm" else 1
        rnn_state, (code_gates, *memory) = state[:n], state[n:]
        gates = code_gates[0] + F.embedding(inputs, w.characters)                # (B, G)
        if not c.slots:
            out, rnn_state = self._rnn_step(gates, rnn_state, w)
            return F.linear(out, w.reading.logits, w.reading.logits_bias), (*rnn_state, code_gates)
        position, keys, values, *fed = memory
        if c.slot_break >= 0:                  # the position counts the breaks read so far
            position = position + (inputs == c.slot_break).unsqueeze(0)
        if fed:                                # this character's slot and the next, through their weights
            pair = self._feed(fed[0].transpose(0, 1), position.t())[:, 0]
            gates = torch.addmm(gates, pair.to(gates.dtype), w.fed)
        out, rnn_state = self._rnn_step(gates, rnn_state, w)
        logits = self._read_slots(out.unsqueeze(1), position.t(), keys.transpose(0, 1), values.transpose(0, 1),
                                  w.reading)[:, 0]
        if fed and c.slot_break >= 0:          # the code's last word: where a break would start another, end
            words = fed[1]
            if bool((position >= words - 1).any()):
                ended = ((inputs == EOS_ID) | (inputs == PAD_ID)).unsqueeze(0)       # rows done: left alone
                words = torch.where(ended, 2**30, words)
                fed = [fed[0], words]
                last, stop = (position == words - 1)[0].unsqueeze(1), (position >= words)[0].unsqueeze(1)
                merged = logits.clone()
                merged[:, EOS_ID] = torch.logaddexp(logits[:, EOS_ID], logits[:, c.slot_break])
                merged[:, c.slot_break] = float("-inf")
                logits = torch.where(last, merged, logits)
                ended = torch.full_like(logits, float("-inf"))                         # past it: end at once
                ended[:, EOS_ID] = 0.0
                logits = torch.where(stop, ended, logits)
        after = position if c.slot_break >= 0 else position + 1
        return logits, (*rnn_state, code_gates, after, keys, values, *fed)

    @property
    def _every_step_code(self) -> int:
        return self.config.every_step_width

    def _code_gates(self, code: torch.Tensor) -> torch.Tensor:
        """The first layer's gates' share (B, G) of the code's part of its input at every step."""
        width = self._every_step_code
        weight = self.decoder.weight_ih_l0
        if not width:
            return code.new_zeros((code.shape[0], weight.shape[0]), dtype=weight.dtype)
        s = self.to_summary(code) if self.config.slots else code
        E = self.config.embed_dim
        return F.linear(s.to(weight.dtype), weight[:, E:E + width])

    def _step_weights(self, refresh: bool = False) -> _StepWeights:
        """The weights a decoding step reads, as it reads them, gathered once rather than looked up at every
        step: above all the first layer's gates' share (V, G) of each character's embedding, with the gates'
        biases (for a GRU the input's only: its candidate gate reads the recurrent bias apart). Kept between
        decodings; `initial_state` makes them again (`refresh`) when a weight changed (in place, or moved)."""
        kept = self.__dict__.get("_kept_step_weights")
        if not refresh and kept is not None:
            return kept[1]
        rnn, c = self.decoder, self.config
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in self.parameters())
        if kept is not None and kept[0] == key:
            return kept[1]
        lstm, E = c.cell == "lstm", c.embed_dim
        with torch.no_grad():
            bias = rnn.bias_ih_l0 + rnn.bias_hh_l0 if lstm else rnn.bias_ih_l0
            characters = F.linear(self.embedding.weight, rnn.weight_ih_l0[:, :E], bias)
        fed = rnn.weight_ih_l0[:, E + self._every_step_code:].t() if c.slots and c.slot_feed else None
        weights = _StepWeights(characters, rnn.weight_hh_l0.t(), None if lstm else rnn.bias_hh_l0, fed,
                               self._reading())
        self.__dict__["_kept_step_weights"] = (key, weights)
        return weights

    def _rnn_step(self, gates: torch.Tensor, state, w: _StepWeights):
        """The decoder RNN on one step, from its first layer's input gates (B, G) (the product of its input
        weights and input, plus biases: see `_step_weights`): its output (B, H) and next state. The cell's
        arithmetic (PyTorch's gate order and formulas) on the module's own weights, without the fixed cost of
        a sequence call; further layers by the fused cell functions. Dropout between layers is training's, not
        applied here."""
        c = self.config
        lstm, H = c.cell == "lstm", c.hidden_dim
        h = state[0][0]
        if lstm:                                                                   # gates i, f, g, o
            gates = torch.addmm(gates, h, w.recurrent)
            s = gates.sigmoid()
            cell = s[:, H:2 * H] * state[1][0] + s[:, :H] * gates[:, 2 * H:3 * H].tanh()
            h = s[:, 3 * H:] * cell.tanh()
            hs, cs = [h], [cell]
        else:                                                                      # gates r, z, n
            hidden = torch.addmm(w.recurrent_bias, h, w.recurrent)
            rz = (gates[:, :2 * H] + hidden[:, :2 * H]).sigmoid()
            candidate = torch.tanh(gates[:, 2 * H:] + rz[:, :H] * hidden[:, 2 * H:])
            h = candidate + rz[:, H:] * (h - candidate)
            hs, cs = [h], []
        rnn = self.decoder
        for k in range(1, c.num_layers):
            weights = (getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}"),
                       getattr(rnn, f"bias_ih_l{k}"), getattr(rnn, f"bias_hh_l{k}"))
            if lstm:
                h, cell = torch.lstm_cell(h, (state[0][k], state[1][k]), *weights)
                cs.append(cell)
            else:
                h = torch.gru_cell(h, state[0][k], *weights)
            hs.append(h)
        stack = (lambda xs: xs[0].unsqueeze(0)) if len(hs) == 1 else torch.stack
        return h, ((stack(hs), stack(cs)) if lstm else (stack(hs),))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, inputs: torch.Tensor | None = None,
                sample: bool = True, generator: torch.Generator | None = None,
                eps: torch.Tensor | None = None, labels: torch.Tensor | None = None, prior_weight: float = 1.0,
                prior_dropout: float = 0.0) -> VAEOutput:
        """tokens (B, T) = c1 .. cn <eos> padded; `inputs` lets the caller pass corrupted decoder inputs
        (character dropout); `eps` (B, Z) the noise of the reparameterisation; `sample=False` decodes
        from the posterior mean.

        With a word prior, also E log q(s|x) and log p(s|g) of the slots drawn: the encoder feels the prior's
        term with weight `prior_weight` (the KL's beta), the prior itself always with weight 1, so that it
        learns the codes from the first step while the KL is annealed; `prior_dropout` hides that share of the
        earlier words from the prior (`prior.WordPrior._states`)."""
        c = self.config
        mu, logvar = self.encode(tokens, lengths, labels)
        words = hashes = None
        if c.word_prior:
            hashes, words = word_hashes(tokens, lengths, c.slot_break, c.slots)
        if not sample or c.lm:
            z = mu
        else:
            if c.word_prior:
                if eps is None:
                    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
                eps = eps * self.random_dims(words)
            z = reparameterize(mu, logvar, generator, eps)
        positions = self.slot_positions(decoder_inputs(tokens)) if c.slots else None
        if inputs is None:
            inputs = decoder_inputs(tokens)
        logits = self.decode(z, inputs, lengths, labels, positions)
        if not c.word_prior:
            return VAEOutput(logits, mu, logvar, z)
        slots = self.random_dims(words)[:, :c.slots * c.slot_dim]
        log_q = (-0.5 * (LOG_2PI + 1 + logvar[:, :c.slots * c.slot_dim].float()) * slots).sum(dim=1)
        felt = z.detach() + prior_weight * (z - z.detach())                 # the value z, beta times its gradient
        z_p = torch.cat([felt[:, :c.slots * c.slot_dim], z[:, c.slots * c.slot_dim:]], dim=1)
        log_p = self.log_prior(z_p, words, self.word_prior.classes_of(hashes), prior_dropout, with_global=False)
        return VAEOutput(logits, mu, logvar, z, log_q, log_p)
