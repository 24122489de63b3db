"""The ELMUR model: a causal transformer whose every layer owns a bank of memory slots (pure torch, no SB3).

Shapes: B batch, T tokens, L segment length, M memory slots, d model width, H heads, n layers.

One token per environment step. An episode is cut into segments of ``segment_len`` steps; step ``t`` belongs
to segment ``t // L``. Every layer, for the tokens of the current segment:

1. causal self-attention over the segment's tokens, biased by the relative distance ``i - j`` only;
2. read: the tokens attend to the layer memory, biased by the bucketed distance ``t - anchor``;
3. a position-wise feed-forward;
4. write, once the segment is complete: the memory attends to the layer's output tokens, a memory
   feed-forward gives one candidate per slot, and :func:`lru_update` (the memory rule) changes one slot.

The same weights run two ways that give the same outputs: :meth:`ElmurTransformer.step` (one step of a batch
of environments, with a per-layer cache of the segment's keys, values and outputs; cost O(L) per step,
independent of t) and :meth:`ElmurTransformer.forward` (whole segments of a batch of sequences, each segment
in one causal pass).
"""

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

EXACT_DISTANCES = 16  # distances 1..15 get a bucket each
N_BUCKETS = 32  # bucket 0: empty slot; 1..15 exact; 16..31 log-spaced up to MAX_DISTANCE
MAX_DISTANCE = 2**20  # distances beyond share the last bucket, so any episode length is defined


def distance_bucket(distance: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    """Bucket index of a token-to-slot distance ``t - anchor`` (int64, >= 1 for written slots).

    :param distance: steps between a token and a slot's anchor
    :param empty: True where the slot was never written (bucket 0, whatever the distance)
    """
    d = distance.clamp(min=1)
    scale = (N_BUCKETS - 1 - EXACT_DISTANCES) / math.log(MAX_DISTANCE / EXACT_DISTANCES)
    log_bucket = EXACT_DISTANCES + (torch.log(d.float() / EXACT_DISTANCES) * scale).long()
    bucket = torch.where(d < EXACT_DISTANCES, d, log_bucket.clamp(max=N_BUCKETS - 1))
    return torch.where(empty, torch.zeros_like(bucket), bucket)


def lru_update(
    memory: torch.Tensor,
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    anchor_step: torch.Tensor,
    lru_alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The memory rule (ELMUR Algorithm 2): exactly one slot of each memory changes per completed segment.

    If a slot is empty (anchor -1) the first empty slot is replaced by its candidate. Otherwise the slot with the
    oldest anchor is blended, ``m <- lru_alpha * u + (1 - lru_alpha) * m``. The written slot's anchor becomes
    ``anchor_step``, the episode step of the segment's last token.

    :param memory: (B, M, d) slots
    :param anchors: (B, M) int64 step of each slot's last write, -1 when never written
    :param candidates: (B, M, d) candidate content for each slot
    :param anchor_step: (B,) int64 step of the completed segment's last token
    :param lru_alpha: blend rate lambda in (0, 1]
    :return: new memory (B, M, d) and new anchors (B, M)
    """
    empty = anchors < 0
    has_empty = empty.any(dim=-1)
    first_empty = empty.int().argmax(dim=-1)
    oldest = torch.where(empty, torch.iinfo(anchors.dtype).max, anchors).argmin(dim=-1)
    slot = torch.where(has_empty, first_empty, oldest)  # (B,)
    written = F.one_hot(slot, memory.shape[1]).bool()  # (B, M)
    rate = torch.full_like(memory[:, :1, 0], lru_alpha).masked_fill(has_empty[:, None], 1.0)  # (B, 1)
    weight = (written * rate)[..., None]  # (B, M, 1)
    new_memory = (1 - weight) * memory + weight * candidates
    new_anchors = torch.where(written, anchor_step[:, None], anchors)
    return new_memory, new_anchors


class ElmurState(NamedTuple):
    """Recurrent state of a batch of environments: per-layer memory and the current segment's cache.

    ``keys``, ``values`` and ``outputs`` hold the first ``step % L`` tokens of the current segment (self-attention
    keys and values, layer outputs for the write); ``step`` is the episode step of the next token.
    """

    memory: torch.Tensor  # (B, n, M, d)
    anchors: torch.Tensor  # (B, n, M) int64, -1 = empty slot
    keys: torch.Tensor  # (B, n, L-1, d)
    values: torch.Tensor  # (B, n, L-1, d)
    outputs: torch.Tensor  # (B, n, L-1, d)
    step: torch.Tensor  # (B,) int64


class Attention(nn.Module):
    """Multi-head attention with an additive per-head bias (one attention path for self, read and write)."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.key_value(x).chunk(2, dim=-1)  # (B, Tk, d) each

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        # x (B, Tq, d), k and v (B, Tk, d), bias (B or 1, H, Tq, Tk) with -inf where masked, or None
        (b, tq, d), tk, h = x.shape, k.shape[1], self.n_heads
        q = self.query(x).view(b, tq, h, d // h).transpose(1, 2)
        k = k.reshape(b, tk, h, d // h).transpose(1, 2)
        v = v.reshape(b, tk, h, d // h).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype))
        return self.out(y.transpose(1, 2).reshape(b, tq, d))


def feed_forward(d_model: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))


class ElmurLayer(nn.Module):
    """One ELMUR layer: self-attention, memory read, feed-forward on the tokens; write for the memory.

    :param norm_first: pre-norm (``x + f(norm(x))``) on the token path instead of post-norm
        (``norm(x + f(x))``). The memory path is post-norm in both cases, so candidates have bounded norm.
    """

    def __init__(self, d_model: int, n_heads: int, segment_len: int, norm_first: bool):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn, self.read_attn, self.write_attn = (Attention(d_model, n_heads) for _ in range(3))
        self.ff, self.memory_ff = feed_forward(d_model), feed_forward(d_model)
        self.norm_self, self.norm_read, self.norm_ff, self.norm_write, self.norm_memory_ff = (
            nn.LayerNorm(d_model) for _ in range(5)
        )
        self.self_bias = nn.Parameter(torch.zeros(n_heads, segment_len))  # by distance i - j in the segment
        self.read_bias = nn.Parameter(torch.zeros(n_heads, N_BUCKETS))  # by bucket of t - anchor
        self.write_bias = nn.Parameter(torch.zeros(n_heads, N_BUCKETS))

    def _input(self, x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        return norm(x) if self.norm_first else x

    def _residual(self, x: torch.Tensor, update: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        return x + update if self.norm_first else norm(x + update)

    def self_attention_bias(self, query_pos: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
        """(B or 1, H, Tq, Tk) bias from the in-segment distance; -inf for keys after the query."""
        distance = query_pos[..., :, None] - key_pos[..., None, :]  # (B or 1, Tq, Tk)
        bias = self.self_bias[:, distance.clamp(0, self.self_bias.shape[1] - 1)].transpose(0, 1)
        return bias.masked_fill((distance < 0)[:, None], float("-inf"))

    def read_and_feed_forward(
        self, x: torch.Tensor, memory: torch.Tensor, anchors: torch.Tensor, steps: torch.Tensor
    ) -> torch.Tensor:
        # x (B, T, d), memory (B, M, d), anchors (B, M), steps (B, T)
        distance = steps[:, :, None] - anchors[:, None, :]  # (B, T, M)
        bias = self.read_bias[:, distance_bucket(distance, (anchors < 0)[:, None, :])].transpose(0, 1)
        k, v = self.read_attn.keys_values(memory)
        x = self._residual(x, self.read_attn(self._input(x, self.norm_read), k, v, bias), self.norm_read)
        return self._residual(x, self.ff(self._input(x, self.norm_ff)), self.norm_ff)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, anchors: torch.Tensor, steps: torch.Tensor
    ) -> torch.Tensor:
        """Segment mode: the tokens of one segment (B, T <= L, d) in one causal pass, starting at its first step."""
        pos = torch.arange(x.shape[1], device=x.device)[None]
        h = self._input(x, self.norm_self)
        k, v = self.self_attn.keys_values(h)
        x = self._residual(x, self.self_attn(h, k, v, self.self_attention_bias(pos, pos)), self.norm_self)
        return self.read_and_feed_forward(x, memory, anchors, steps)

    def step(
        self,
        x: torch.Tensor,
        cache_keys: torch.Tensor,
        cache_values: torch.Tensor,
        memory: torch.Tensor,
        anchors: torch.Tensor,
        steps: torch.Tensor,
        pos: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step mode: one token per sequence (B, 1, d) at in-segment position ``pos`` (B,), with cached keys and
        values (B, L-1, d) of the segment's earlier tokens. Returns the output and the token's key and value."""
        h = self._input(x, self.norm_self)
        k, v = self.self_attn.keys_values(h)  # (B, 1, d)
        key_pos = torch.cat(
            [torch.arange(cache_keys.shape[1], device=x.device)[None].expand(len(x), -1), pos[:, None]], 1
        )
        valid = torch.cat([key_pos[:, :-1] < pos[:, None], torch.ones_like(pos[:, None], dtype=torch.bool)], 1)
        bias = self.self_attention_bias(pos[:, None], key_pos).masked_fill(~valid[:, None, None], float("-inf"))
        attn = self.self_attn(h, torch.cat([cache_keys, k], 1), torch.cat([cache_values, v], 1), bias)
        x = self._residual(x, attn, self.norm_self)
        return self.read_and_feed_forward(x, memory, anchors, steps), k, v

    def write_candidates(
        self, memory: torch.Tensor, anchors: torch.Tensor, outputs: torch.Tensor, steps: torch.Tensor
    ) -> torch.Tensor:
        """Candidates (B, M, d): the memory (B, M, d) attends to the completed segment's outputs (B, L, d)."""
        distance = steps[:, None, :] - anchors[:, :, None]  # (B, M, L)
        bias = self.write_bias[:, distance_bucket(distance, (anchors < 0)[:, :, None])].transpose(0, 1)
        k, v = self.write_attn.keys_values(outputs)
        m = self.norm_write(memory + self.write_attn(memory, k, v, bias))
        return self.norm_memory_ff(m + self.memory_ff(m))


class ElmurTransformer(nn.Module):
    """Token embedding and a stack of ELMUR layers with their memory.

    :param input_dim: size of the per-step features that become tokens
    :param d_model: token and memory slot width
    :param n_layers: number of ELMUR layers (each with its own memory)
    :param n_heads: attention heads (must divide d_model)
    :param memory_size: memory slots M per layer
    :param segment_len: steps per segment L; the memory is written once per completed segment
    :param lru_alpha: blend rate lambda of the LRU rule, in (0, 1]
    :param memory_init: initial memory of every episode, ``"learned"`` (a trained parameter) or ``"zeros"``
    :param norm_first: pre-norm instead of post-norm on the token path

    The defaults users see live in :class:`~sb3_elmur.policies.ElmurActorCriticPolicy`.
    """

    def __init__(
        self,
        input_dim: int,
        *,
        d_model: int,
        n_layers: int,
        n_heads: int,
        memory_size: int,
        segment_len: int,
        lru_alpha: float,
        memory_init: str,
        norm_first: bool,
    ):
        super().__init__()
        check_elmur_config(d_model, n_layers, n_heads, memory_size, segment_len, lru_alpha, memory_init)
        self.d_model, self.n_layers, self.memory_size = d_model, n_layers, memory_size
        self.segment_len, self.lru_alpha = segment_len, lru_alpha
        self.embed = nn.Linear(input_dim, d_model)
        self.layers = nn.ModuleList(ElmurLayer(d_model, n_heads, segment_len, norm_first) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        initial_memory = torch.randn(n_layers, memory_size, d_model) * 0.02
        if memory_init == "learned":
            self.initial_memory = nn.Parameter(initial_memory)
        else:
            self.register_buffer("initial_memory", torch.zeros(n_layers, memory_size, d_model))

    def initial_state(self, batch_size: int) -> ElmurState:
        """The state of ``batch_size`` fresh episodes."""
        n, m, d, c = self.n_layers, self.memory_size, self.d_model, self.segment_len - 1
        device = self.initial_memory.device
        cache = torch.zeros(batch_size, n, c, d, device=device)
        return ElmurState(
            memory=self.initial_memory.detach()[None].expand(batch_size, -1, -1, -1).clone(),
            anchors=torch.full((batch_size, n, m), -1, dtype=torch.long, device=device),
            keys=cache,
            values=cache.clone(),
            outputs=cache.clone(),
            step=torch.zeros(batch_size, dtype=torch.long, device=device),
        )

    def reset(self, state: ElmurState, episode_start: torch.Tensor) -> ElmurState:
        """Replace the state of the environments where ``episode_start`` (B,) is true by a fresh one."""
        if not episode_start.any():
            return state
        fresh = self.initial_state(len(episode_start))
        return ElmurState(
            *(
                torch.where(episode_start.view(-1, *[1] * (a.dim() - 1)), f, a)
                for a, f in zip(state, fresh, strict=True)
            )
        )

    def step(self, features: torch.Tensor, state: ElmurState) -> tuple[torch.Tensor, ElmurState]:
        """One environment step for a batch: features (B, input_dim) -> outputs (B, d) and the next state."""
        L = self.segment_len
        pos = state.step % L  # (B,) position in the segment
        steps = state.step[:, None]  # (B, 1)
        completes = pos == L - 1  # these envs finish their segment with this step: write
        x = self.embed(features)[:, None]  # (B, 1, d)
        memory, anchors, keys, values, outputs = (list(a.unbind(1)) for a in state[:5])
        for i, layer in enumerate(self.layers):
            x, k, v = layer.step(x, keys[i], values[i], memory[i], anchors[i], steps, pos)
            if completes.any():
                idx = completes.nonzero().squeeze(1)
                segment_outputs = torch.cat([outputs[i][idx], x[idx]], 1)  # (b, L, d)
                segment_steps = state.step[idx, None] - L + 1 + torch.arange(L, device=x.device)
                new_memory, new_anchors = self._write(
                    layer, memory[i][idx], anchors[i][idx], segment_outputs, segment_steps
                )
                memory[i] = memory[i].index_copy(0, idx, new_memory)
                anchors[i] = anchors[i].index_copy(0, idx, new_anchors)
            if L > 1:  # store this token in the cache at its position (a completed segment's cache is stale)
                slot = F.one_hot(pos.clamp(max=L - 2), L - 1).bool()[:, :, None] & ~completes[:, None, None]
                keys[i], values[i] = keys[i].where(~slot, k), values[i].where(~slot, v)
                outputs[i] = outputs[i].where(~slot, x)
        new_state = ElmurState(*(torch.stack(a, 1) for a in (memory, anchors, keys, values, outputs)), state.step + 1)
        return self.final_norm(x[:, 0]), new_state

    def forward(
        self,
        features: torch.Tensor,
        memory: torch.Tensor,
        anchors: torch.Tensor,
        start_step: torch.Tensor,
        episode_start: torch.Tensor,
        valid: torch.Tensor,
        memory_gradient: bool = True,
        write_last: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Segment mode over sequences of S segments, each segment of the batch in one causal pass.

        The segments of a sequence follow each other in time; a segment that begins an episode starts from the
        initial memory, so one sequence can hold the end of one episode and the start of the next.

        :param features: (B, S, L, input_dim) tokens; in each segment, padding only after the valid tokens
        :param memory: (B, n, M, d) memory at the start of each sequence
        :param anchors: (B, n, M) anchors at the start of each sequence
        :param start_step: (B, S) episode step of each segment's first token (a multiple of L)
        :param episode_start: (B, S) true where a segment begins an episode
        :param valid: (B, S, L) true for real tokens
        :param memory_gradient: let gradients flow from later segments through the memory written by earlier
            ones (truncated backpropagation through time over segments); if false the memory is detached
        :param write_last: also write the memory of the last segment (needed only by who reads the memory after it)
        :return: outputs (B, S, L, d), the memory after each segment (B, S, n, M, d) and the anchors after the last
            segment (B, n, M)
        """
        S, L = features.shape[1:3]
        x = self.embed(features)
        memory, anchors = list(memory.unbind(1)), list(anchors.unbind(1))
        outputs, memories = [], []
        for s in range(S):
            steps = start_step[:, s, None] + torch.arange(L, device=x.device)  # (B, L)
            complete = valid[:, s].all(dim=1)  # a write needs the whole segment
            fresh = episode_start[:, s]
            h, written = x[:, s], []
            for i, layer in enumerate(self.layers):
                memory[i] = torch.where(fresh[:, None, None], self.initial_memory[i], memory[i])
                anchors[i] = anchors[i].masked_fill(fresh[:, None], -1)
                h = layer(h, memory[i], anchors[i], steps)
                if s < S - 1 or write_last:
                    new_memory, new_anchors = self._write(layer, memory[i], anchors[i], h, steps)
                    memory[i] = torch.where(complete[:, None, None], new_memory, memory[i])
                    anchors[i] = torch.where(complete[:, None], new_anchors, anchors[i])
                written.append(memory[i])
                if not memory_gradient:  # the next segment reads it without a gradient path to this write
                    memory[i] = memory[i].detach()
            outputs.append(h)
            memories.append(torch.stack(written, 1))
        return self.final_norm(torch.stack(outputs, 1)), torch.stack(memories, 1), torch.stack(anchors, 1)

    def _write(
        self, layer: ElmurLayer, memory: torch.Tensor, anchors: torch.Tensor, outputs: torch.Tensor, steps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        candidates = layer.write_candidates(memory, anchors, outputs, steps)
        return lru_update(memory, anchors, candidates, steps[:, -1], self.lru_alpha)


class MemoryReconstruction(nn.Module):
    """Auxiliary decoder: learned per-position queries read a written memory and reconstruct its segment's inputs.

    Trained with an MSE to the segment's features, it makes the write keep what the segment showed (an
    observation-reconstruction loss, as Memory Gym's Transformer-XL PPO needed).

    :param d_model: memory slot width
    :param n_heads: attention heads of the read
    :param segment_len: positions to reconstruct
    :param target_dim: size of each position's features
    """

    def __init__(self, d_model: int, n_heads: int, segment_len: int, target_dim: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(segment_len, d_model) * 0.02)
        self.read = Attention(d_model, n_heads)
        self.out = nn.Linear(d_model, target_dim)

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        """(B, n, M, d) memory of every layer -> (B, L, target_dim) reconstructed segment."""
        k, v = self.read.keys_values(memory.flatten(1, 2))  # (B, n * M, d)
        queries = self.queries.expand(len(memory), -1, -1)
        return self.out(self.read(queries, k, v, None))


def check_elmur_config(
    d_model: int, n_layers: int, n_heads: int, memory_size: int, segment_len: int, lru_alpha: float, memory_init: str
) -> None:
    """Raise ValueError for a configuration the model cannot run."""
    for name, value in (("d_model", d_model), ("n_layers", n_layers), ("n_heads", n_heads)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if memory_size < 1:
        raise ValueError(f"memory_size must be >= 1, got {memory_size}")
    if segment_len < 1:
        raise ValueError(f"segment_len must be >= 1, got {segment_len}")
    if d_model % n_heads != 0:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
    if not 0 < lru_alpha <= 1:
        raise ValueError(f"lru_alpha must be in (0, 1], got {lru_alpha}")
    if memory_init not in ("learned", "zeros"):
        raise ValueError(f"memory_init must be 'learned' or 'zeros', got {memory_init!r}")
