"""The ELMUR model: a causal transformer whose every layer owns a bank of memory slots (pure torch, no SB3).

Shapes: B batch, T tokens, L segment length, M memory slots, d model width, H heads, n layers.

One token per environment step: the step's features, embedded, plus a learned embedding of the step's position in
its segment, ``t % L`` (``segment_position``). An episode is cut into segments of ``segment_len`` steps; step ``t``
belongs to segment ``t // L``. Every layer, for the tokens of the current segment:

1. causal self-attention over a sliding window of the last W steps (``sliding_window``, W = ``attention_segments`` x L,
   by default L; the keys and values of the W-1 steps before the segment are cached, as in Transformer-XL) or over
   the current segment's tokens only, biased by the relative distance ``i - j`` only;
2. read: the tokens attend to the layer memory, biased by the bucketed distance ``t - anchor``;
3. a position-wise feed-forward;
4. write, once the segment is complete: the memory attends to the layer's output tokens, a memory
   feed-forward gives one candidate per slot, and :func:`lru_update` (the memory rule) changes one slot.

The same weights run two ways that give the same outputs: :meth:`ElmurTransformer.step` (one step of a batch
of environments, with a per-layer cache of the attention window's keys and values and of the segment's outputs;
cost O(W + L) per step, independent of t) and :meth:`ElmurTransformer.forward` (whole segments of a batch of
sequences, each segment in one causal pass).
"""

import dataclasses
import math
from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn

EXACT_DISTANCES = 16  # distances 1..15 get a bucket each
N_BUCKETS = 32  # bucket 0: empty slot; 1..15 exact; 16..31 log-spaced up to MAX_DISTANCE
MAX_DISTANCE = 2**20  # distances beyond share the last bucket, so any episode length is defined
CLOCK_PERIODS = (2, 4, 8, 16, 32, 64, 128)  # steps: the episode clock's features repeat every 128 steps


@dataclasses.dataclass(frozen=True)
class ElmurConfig:
    """The ELMUR knobs, their defaults and their validation (users pass them flat, as the policy's keyword
    arguments: ``policy_kwargs=dict(segment_len=10)``).

    :param d_model: token and memory slot width
    :param n_layers: ELMUR layers, each with its own memory
    :param n_heads: attention heads per layer (must divide ``d_model``)
    :param memory_size: memory slots M per layer
    :param segment_len: environment steps per segment L; the memory is written once per completed segment
    :param lru_alpha: LRU blend rate lambda in (0, 1]: weight of the new content when the oldest slot is rewritten
    :param memory_init: initial memory of each episode, ``"learned"`` (a trained parameter) or ``"zeros"``
    :param norm_first: pre-norm instead of post-norm on the token path
    :param sliding_window: self-attention sees the last W = ``attention_segments * segment_len`` steps of the
        episode (each token and the W-1 before it, back into the previous segments, whose keys and values are cached)
        instead of the current segment's tokens only, so recall of the last W steps does not hang on the memory at a
        segment boundary
    :param attention_segments: with ``sliding_window``, how many segments' length self-attention reaches back; the
        memory is still written once per segment, and PPO still trains on whole segments
    :param recency_bias: start the self-attention bias of head h (of H) at ``-distance * 2 ** (-8 * h / H)``
        instead of 0, so that before training the first head looks mostly at the last few steps and the others
        further back (as ALiBi's slopes), rather than every head averaging the whole window; the bias is learned
    :param memory_gradient: in training, let the PPO gradient flow from a segment back through the memory (and the
        cached keys and values) written by the earlier segments of the same training sequence; if
        false they are detached
    :param separate_critic_trunk: give the value function its own ELMUR trunk (and memory) instead of a value head
        on the actor's trunk
    :param actor_value_coef: with ``separate_critic_trunk``, weight of an auxiliary loss (0 = off): the actor's trunk
        keeps a value branch of its own (an MLP shaped as the critic's, then a linear head) that learns the returns
        (squared error, as the critic's), so the actor's trunk learns features that predict the return; its values
        are not used for the advantages. Without a critic trunk the value head already sits on the actor's trunk, and
        this knob has no effect
    :param features_skip: feed the current step's features to the actor and critic MLPs beside the trunk output
        (a direct path that does not go through attention and memory)
    :param reconstruction_coef: weight of an auxiliary loss (0 = off): after each complete training segment, a
        small decoder reads the freshly written memory and reconstructs the segment's features (MSE)
    :param uniform_kl_coef: weight of a penalty (0 = off) on KL(uniform || policy) at each training step, for
        discrete actions (Discrete, MultiDiscrete, MultiBinary; continuous actions have none: a Gaussian's spread
        does not depend on the state). Unlike the entropy bonus, its pull on an action's probability does not vanish
        as that probability nears 0, so an action the policy has given up at some state is still sampled now and
        then, and can be learned back
    :param episode_clock: add to each token a learned projection of :func:`episode_clock` features of its episode
        step, so the policy can tell how far into the episode it is beyond what its attention window shows
    :param segment_position: add to each token a learned embedding of its position in its segment (the episode
        step modulo ``segment_len``), as a transformer's position embedding over its block: every segment has the
        same positions, so no step of a longer episode looks new, and within an episode's first segment the policy
        knows the step
    :param previous_action: each step's token also sees the action taken at the step before (zeros at an episode's
        first step; one-hot for discrete actions), so the policy knows what it did, not only what it observed; the
        recurrent state carries that action from one step to the next
    :param previous_action_embedding: with ``previous_action``, the action enters each token through its own learned
        projection, started at std 0.02 as the segment position, instead of through the features' projection, so
        that early in training a token is its observation and the action's weight is learned up from small
    """

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    memory_size: int = 1
    segment_len: int = 16
    lru_alpha: float = 0.79
    memory_init: str = "learned"
    norm_first: bool = False
    sliding_window: bool = True
    attention_segments: int = 1
    recency_bias: bool = False
    memory_gradient: bool = True
    separate_critic_trunk: bool = False
    actor_value_coef: float = 0.0
    features_skip: bool = True
    reconstruction_coef: float = 0.0
    uniform_kl_coef: float = 0.003
    episode_clock: bool = False
    segment_position: bool = True
    previous_action: bool = False
    previous_action_embedding: bool = False

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "memory_size", "segment_len", "attention_segments"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if not 0 < self.lru_alpha <= 1:
            raise ValueError(f"lru_alpha must be in (0, 1], got {self.lru_alpha}")
        if self.memory_init not in ("learned", "zeros"):
            raise ValueError(f"memory_init must be 'learned' or 'zeros', got {self.memory_init!r}")
        for name in ("reconstruction_coef", "actor_value_coef", "uniform_kl_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.attention_segments != 1 and not self.sliding_window:
            raise ValueError("attention_segments > 1 needs sliding_window=True (without it a token sees its segment)")
        if self.previous_action_embedding and not self.previous_action:
            raise ValueError("previous_action_embedding=True needs previous_action=True (the action it embeds)")

    @property
    def window(self) -> int:
        """W: the steps self-attention sees, each token and the W-1 before it (with ``sliding_window``; without it
        a token sees its own segment's tokens up to it, at most ``segment_len``)."""
        return self.attention_segments * self.segment_len

    @property
    def previous_len(self) -> int:
        """P: cached tokens from before the segment that self-attention can see (W-1 with sliding_window, else 0)."""
        return self.window - 1 if self.sliding_window else 0


def episode_clock(step: torch.Tensor) -> torch.Tensor:
    """Sine and cosine of the episode step (...,) int64 at each of ``CLOCK_PERIODS``: (..., 2 * 7) features, bounded
    and periodic, so any episode length is defined."""
    periods = torch.tensor(CLOCK_PERIODS, device=step.device)
    angle = (step[..., None] % periods).float() * (2 * math.pi / periods)
    return torch.cat([angle.sin(), angle.cos()], -1)


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


def retention_horizon(memory_size: int, segment_len: int, lru_alpha: float, eps: float = 0.05) -> float:
    """Steps after which a slot keeps a fraction ``eps`` of its content under :func:`lru_update`'s blending.

    ``H(eps) = M * L * ln(eps) / ln(1 - lambda)``: a full memory rewrites its oldest slot every segment, so each slot
    is blended once per ``M`` segments (``M * L`` steps) and keeps ``(1 - lambda)`` of its content each time.
    """
    if not 0 < lru_alpha < 1:
        return math.inf if lru_alpha <= 0 else float(memory_size * segment_len)  # lambda 1: gone at the first rewrite
    return memory_size * segment_len * math.log(eps) / math.log(1 - lru_alpha)


class ElmurState(NamedTuple):
    """Recurrent state of a batch of environments: per-layer memory and the segment cache.

    ``keys`` and ``values`` hold the last P tokens before the current segment (P = W-1 with ``sliding_window``, else
    0; a token from before the episode's start is never attended to), then the first ``step % L`` tokens of the
    current segment; ``outputs`` holds the current segment's layer outputs (for the write); ``step`` is the episode
    step of the next token; ``previous_action`` the action taken at the step before it, as the next token's input
    sees it (A = 0 without ``previous_action``).
    """

    memory: torch.Tensor  # (B, n, M, d)
    anchors: torch.Tensor  # (B, n, M) int64, -1 = empty slot
    keys: torch.Tensor  # (B, n, P + L-1, d)
    values: torch.Tensor  # (B, n, P + L-1, d)
    outputs: torch.Tensor  # (B, n, L-1, d)
    step: torch.Tensor  # (B,) int64
    previous_action: torch.Tensor  # (B, A)


class SegmentStart(NamedTuple):
    """What a segment needs from before it: the memory and the keys and values of the P steps before it."""

    memory: torch.Tensor  # (B, n, M, d)
    anchors: torch.Tensor  # (B, n, M)
    keys: torch.Tensor  # (B, n, P, d)
    values: torch.Tensor  # (B, n, P, d)


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
        if tk == 1:  # one key (a one-slot memory read): every query gives it weight 1, so the output is its value
            return self.out(v.expand(b, tq, d))
        q = self.query(x).view(b, tq, h, d // h).transpose(1, 2)
        k = k.reshape(b, tk, h, d // h).transpose(1, 2)
        v = v.reshape(b, tk, h, d // h).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype))
        return self.out(y.transpose(1, 2).reshape(b, tq, d))


def feed_forward(d_model: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))


class ElmurLayer(nn.Module):
    """One ELMUR layer: self-attention, memory read, feed-forward on the tokens; write for the memory.

    With ``norm_first`` the token path is pre-norm (``x + f(norm(x))``), else post-norm (``norm(x + f(x))``). The
    memory path is post-norm in both cases, so candidates have bounded norm.
    """

    def __init__(self, config: ElmurConfig):
        super().__init__()
        d, h = config.d_model, config.n_heads
        self.norm_first = config.norm_first
        self.self_attn, self.read_attn, self.write_attn = (Attention(d, h) for _ in range(3))
        self.ff, self.memory_ff = feed_forward(d), feed_forward(d)
        self.norm_self, self.norm_read, self.norm_ff, self.norm_write, self.norm_memory_ff = (
            nn.LayerNorm(d) for _ in range(5)
        )
        # by distance i - j < W, query to key; with recency_bias sloping down, 1 per step for the first head
        slopes = 2.0 ** (-8.0 * torch.arange(h) / h) if config.recency_bias else torch.zeros(h)  # (H,)
        self.self_bias = nn.Parameter(-slopes[:, None] * torch.arange(config.window))
        self.read_bias = nn.Parameter(torch.zeros(h, N_BUCKETS))  # by bucket of t - anchor
        self.write_bias = nn.Parameter(torch.zeros(h, N_BUCKETS))

    def _input(self, x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        return norm(x) if self.norm_first else x

    def _residual(self, x: torch.Tensor, update: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        return x + update if self.norm_first else norm(x + update)

    def self_attention_bias(self, distance: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """(B or 1, H, Tq, Tk) bias from the distances (B or 1, Tq, Tk); -inf where ``masked``."""
        bias = self.self_bias[:, distance.clamp(0, self.self_bias.shape[1] - 1)].transpose(0, 1)  # clamped: masked
        return bias.masked_fill(masked[:, None], float("-inf"))

    def read_and_feed_forward(self, x: torch.Tensor, memory: torch.Tensor, bucket: torch.Tensor) -> torch.Tensor:
        # x (B, T, d), memory (B, M, d), bucket (B, T, M) of each token-to-slot distance
        k, v = self.read_attn.keys_values(memory)
        bias = self.read_bias[:, bucket].transpose(0, 1)
        x = self._residual(x, self.read_attn(self._input(x, self.norm_read), k, v, bias), self.norm_read)
        return self._residual(x, self.ff(self._input(x, self.norm_ff)), self.norm_ff)

    def forward(
        self,
        x: torch.Tensor,
        previous_keys: torch.Tensor,
        previous_values: torch.Tensor,
        self_bias_args: tuple[torch.Tensor, torch.Tensor],
        memory: torch.Tensor,
        bucket: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens x (B, T, d) attend to cached keys and values (B, Tc, d) and to their own (causally, by the
        distances and mask of ``self_bias_args``), then read the memory (B, M, d). Returns the outputs and the
        tokens' own keys and values (B, T, d)."""
        h = self._input(x, self.norm_self)
        k, v = self.self_attn.keys_values(h)
        bias = self.self_attention_bias(*self_bias_args)
        attn = self.self_attn(h, torch.cat([previous_keys, k], 1), torch.cat([previous_values, v], 1), bias)
        x = self._residual(x, attn, self.norm_self)
        return self.read_and_feed_forward(x, memory, bucket), k, v

    def write_candidates(self, memory: torch.Tensor, outputs: torch.Tensor, bucket: torch.Tensor) -> torch.Tensor:
        """Candidates (B, M, d): the memory (B, M, d) attends to the completed segment's outputs (B, L, d), with
        the bucket (B, M, L) of each slot-to-token distance."""
        bias = self.write_bias[:, bucket].transpose(0, 1)
        k, v = self.write_attn.keys_values(outputs)
        m = self.norm_write(memory + self.write_attn(memory, k, v, bias))
        return self.norm_memory_ff(m + self.memory_ff(m))


class ElmurTransformer(nn.Module):
    """Token embedding and a stack of ELMUR layers with their memory.

    :param input_dim: size of the per-step features that become tokens (with ``previous_action``, the last
        ``action_dim`` of them are the previous action, which the state carries)
    :param config: the ELMUR knobs (:class:`ElmurConfig`)
    :param action_dim: size of an encoded action, for the state's ``previous_action`` (0 without it)
    """

    def __init__(self, input_dim: int, config: ElmurConfig, action_dim: int = 0):
        super().__init__()
        self.config = config
        self.action_dim = action_dim
        embeds_action = config.previous_action_embedding
        if embeds_action and action_dim < 1:
            raise ValueError("previous_action_embedding=True needs the size of an encoded action (action_dim >= 1)")
        self.embed = nn.Linear(input_dim - action_dim if embeds_action else input_dim, config.d_model)
        self.action_embed = nn.Linear(action_dim, config.d_model, bias=False) if embeds_action else None
        self.clock = nn.Linear(2 * len(CLOCK_PERIODS), config.d_model) if config.episode_clock else None
        self.position = nn.Embedding(config.segment_len, config.d_model) if config.segment_position else None
        self.layers = nn.ModuleList(ElmurLayer(config) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(config.d_model) if config.norm_first else nn.Identity()
        shape = (config.n_layers, config.memory_size, config.d_model)
        if self.position is not None:  # small, as the learned memory: a first token is not swamped by its position
            nn.init.normal_(self.position.weight, std=0.02)
        if self.action_embed is not None:
            nn.init.normal_(self.action_embed.weight, std=0.02)
        if config.memory_init == "learned":
            self.initial_memory = nn.Parameter(torch.randn(shape) * 0.02)
        else:
            self.register_buffer("initial_memory", torch.zeros(shape))

    def initial_state(self, batch_size: int) -> ElmurState:
        """The state of ``batch_size`` fresh episodes."""
        c = self.config
        n, m, d, L, P = c.n_layers, c.memory_size, c.d_model, c.segment_len, c.previous_len
        device = self.initial_memory.device
        return ElmurState(
            memory=self.initial_memory.detach()[None].expand(batch_size, -1, -1, -1).clone(),
            anchors=torch.full((batch_size, n, m), -1, dtype=torch.long, device=device),
            keys=torch.zeros(batch_size, n, P + L - 1, d, device=device),
            values=torch.zeros(batch_size, n, P + L - 1, d, device=device),
            outputs=torch.zeros(batch_size, n, L - 1, d, device=device),
            step=torch.zeros(batch_size, dtype=torch.long, device=device),
            previous_action=torch.zeros(batch_size, self.action_dim, device=device),
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

    def segment_start(self, state: ElmurState) -> SegmentStart:
        """The part of a state at a segment start (``step % L == 0``) that the segment's training pass starts from."""
        P = self.config.previous_len
        return SegmentStart(state.memory, state.anchors, state.keys[:, :, :P], state.values[:, :, :P])

    def step(self, features: torch.Tensor, state: ElmurState) -> tuple[torch.Tensor, ElmurState]:
        """One environment step for a batch: features (B, input_dim) -> outputs (B, d) and the next state."""
        L, P, W = self.config.segment_len, self.config.previous_len, self.config.window
        pos = state.step % L  # (B,) position in the segment
        completes = pos == L - 1  # these envs finish their segment with this step: write
        # cached keys at in-segment positions -P..L-2, then this token; only the last W steps of this episode
        key_pos = torch.arange(-P, L, device=pos.device).expand(len(pos), -1).clone()  # (B, P + L)
        key_pos[:, -1] = pos
        distance = pos[:, None] - key_pos
        before_episode = (state.step - pos)[:, None] + key_pos < 0
        masked = (distance <= 0) | (distance >= W) | before_episode
        masked[:, -1] = False  # the token itself
        self_bias_args = (distance[:, None], masked[:, None])
        read_bucket = distance_bucket(state.step[:, None, None] - state.anchors, state.anchors < 0)  # (B, n, M)
        x = self._tokens(features, state.step)[:, None]  # (B, 1, d)
        memory, anchors = state.memory, state.anchors
        new_k, new_v, new_x = [], [], []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(
                x, state.keys[:, i], state.values[:, i], self_bias_args, memory[:, i], read_bucket[:, i, None]
            )
            new_k.append(k[:, 0])
            new_v.append(v[:, 0])
            new_x.append(x[:, 0])
        keys, values, outputs = (torch.stack(a, 1) for a in (new_k, new_v, new_x))  # (B, n, d) each
        completing = completes if completes.any() else None  # None: no env writes at this step (asked once)
        if completing is not None:  # write every env's segment, keep it where the segment is complete
            segment_steps = state.step[:, None] - L + 1 + torch.arange(L, device=pos.device)  # (B, L)
            segment_outputs = torch.cat([state.outputs, outputs[:, :, None]], 2)  # (B, n, L, d)
            memory, anchors = self._write(memory, anchors, segment_outputs, segment_steps)
            memory = torch.where(completes[:, None, None, None], memory, state.memory)
            anchors = torch.where(completes[:, None, None], anchors, state.anchors)
        new_state = ElmurState(
            memory,
            anchors,
            _cache_token(state.keys, keys, pos, P, completing),
            _cache_token(state.values, values, pos, P, completing),
            _cache_token(state.outputs, outputs, pos, 0, completing),
            state.step + 1,
            state.previous_action,  # the caller sets it to the action it takes at this step
        )
        return self.final_norm(x[:, 0]), new_state

    def forward(
        self,
        features: torch.Tensor,
        start: SegmentStart,
        start_step: torch.Tensor,
        episode_start: torch.Tensor,
        valid: torch.Tensor,
        write_last: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, SegmentStart]:
        """Segment mode over sequences of S segments, each segment of the batch in one causal pass.

        The segments of a sequence follow each other in time; a segment that begins an episode starts from the
        initial memory (and no previous segment), so one sequence can hold the end of one episode and the start
        of the next.

        :param features: (B, S, L, input_dim) tokens; in each segment, padding only after the valid tokens
        :param start: memory, anchors and the keys and values of the P steps before each sequence
        :param start_step: (B, S) episode step of each segment's first token (a multiple of L; -1 for padding)
        :param episode_start: (B, S) true where a segment begins an episode
        :param valid: (B, S, L) true for real tokens
        :param write_last: also write the memory of the last segment (needed only by who reads the memory after it)
        :return: outputs (B, S, L, d), the memory after each segment (B, S, n, M, d) and what a segment after the last
            one starts from (memory, anchors, the keys and values of the last P steps)
        """
        S, L = features.shape[1:3]
        P, initial = self.config.previous_len, self.initial_memory
        positions = torch.arange(L, device=features.device)
        x = self._tokens(features, start_step[..., None] + positions)  # (B, S, L, d)
        memory, anchors, prev_keys, prev_values = start
        outputs, memories = [], []
        for s in range(S):
            steps = start_step[:, s, None] + positions  # (B, L)
            complete = valid[:, s].all(dim=1)  # a write needs the whole segment
            fresh = episode_start[:, s]
            memory = torch.where(fresh[:, None, None, None], initial, memory)
            anchors = anchors.masked_fill(fresh[:, None, None], -1)
            h, written, keys, values = self._segment_pass(x[:, s], steps, memory, anchors, prev_keys, prev_values)
            if s < S - 1 or write_last:
                new_memory, new_anchors = self._write(memory, anchors, written, steps)
                memory = torch.where(complete[:, None, None, None], new_memory, memory)
                anchors = torch.where(complete[:, None, None], new_anchors, anchors)
            outputs.append(h)
            memories.append(memory)
            prev_keys, prev_values = _last_tokens(prev_keys, keys, P), _last_tokens(prev_values, values, P)
            if not self.config.memory_gradient:  # the next segment reads them without a gradient path to here
                memory, prev_keys, prev_values = memory.detach(), prev_keys.detach(), prev_values.detach()
        end = SegmentStart(memory, anchors, prev_keys, prev_values)
        return self.final_norm(torch.stack(outputs, 1)), torch.stack(memories, 1), end

    def replay_segment(self, features: torch.Tensor, state: ElmurState) -> ElmurState:
        """The state with its current segment's cache recomputed, in one causal pass, by the current weights.

        :param features: (B, L-1, input_dim) the features of each env's segment so far (``state.step % L`` of them,
            then padding)
        :param state: the state ``state.step % L`` steps into the segment (its cache written by other weights)
        """
        P = self.config.previous_len
        prefix_len = state.step % self.config.segment_len  # (B,)
        positions = torch.arange(features.shape[1], device=features.device)
        steps = (state.step - prefix_len)[:, None] + positions  # (B, L-1)
        prev_keys, prev_values = state.keys[:, :, :P], state.values[:, :, :P]
        x = self._tokens(features, steps)
        _, outputs, keys, values = self._segment_pass(x, steps, state.memory, state.anchors, prev_keys, prev_values)
        seen = (positions < prefix_len[:, None])[:, None, :, None]  # (B, 1, L-1, 1): the tokens of the segment so far
        return state._replace(
            keys=torch.cat([prev_keys, torch.where(seen, keys, state.keys[:, :, P:])], 2),
            values=torch.cat([prev_values, torch.where(seen, values, state.values[:, :, P:])], 2),
            outputs=torch.where(seen, outputs, state.outputs),
        )

    def _segment_pass(
        self,
        x: torch.Tensor,
        steps: torch.Tensor,
        memory: torch.Tensor,
        anchors: torch.Tensor,
        prev_keys: torch.Tensor,
        prev_values: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens x (B, T, d) of one segment (T <= L, at episode steps (B, T)) through every layer: each attends
        causally to the last W steps (the keys and values (B, n, P, d) of the P steps before the segment too, those
        of this episode) and reads the memory (B, n, M, d) with its anchors (B, n, M).

        :return: the last layer's outputs (B, T, d), and every layer's outputs, keys and values (B, n, T, d) each
        """
        T, P, W = x.shape[1], self.config.previous_len, self.config.window
        positions = torch.arange(T, device=x.device)
        key_pos = torch.arange(-P, T, device=x.device)
        distance = (positions[:, None] - key_pos[None])[None]  # (1, T, P + T)
        # causal, within the last W steps, and none from before the episode's start: (B, T, P + T)
        before_episode = (key_pos < 0) & (steps[:, :1] + key_pos < 0)  # (B, P + T)
        masked = (distance < 0) | (distance >= W) | before_episode[:, None]
        read_bucket = distance_bucket(steps[:, None, :, None] - anchors[:, :, None], (anchors < 0)[:, :, None])
        written, keys, values = [], [], []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, prev_keys[:, i], prev_values[:, i], (distance, masked), memory[:, i], read_bucket[:, i])
            written.append(x)
            keys.append(k)
            values.append(v)
        return x, torch.stack(written, 1), torch.stack(keys, 1), torch.stack(values, 1)

    def _tokens(self, features: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Tokens (..., d) of the features (..., input_dim) at episode steps (...)."""
        if self.action_embed is None:
            x = self.embed(features)
        else:  # the last action_dim features are the previous action
            x = self.embed(features[..., : -self.action_dim]) + self.action_embed(features[..., -self.action_dim :])
        if self.clock is not None:
            x = x + self.clock(episode_clock(step).to(x.dtype))
        if self.position is not None:
            x = x + self.position(step % self.config.segment_len)
        return x

    def _write(
        self, memory: torch.Tensor, anchors: torch.Tensor, outputs: torch.Tensor, steps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every layer's write: memory (B, n, M, d), anchors (B, n, M), the segment's outputs (B, n, L, d) of each
        layer and its steps (B, L) -> the new memory and anchors."""
        bucket = distance_bucket(steps[:, None, None, :] - anchors[..., None], (anchors < 0)[..., None])  # (B,n,M,L)
        new_memory, new_anchors = [], []
        for i, layer in enumerate(self.layers):
            candidates = cast(ElmurLayer, layer).write_candidates(memory[:, i], outputs[:, i], bucket[:, i])
            m, a = lru_update(memory[:, i], anchors[:, i], candidates, steps[:, -1], self.config.lru_alpha)
            new_memory.append(m)
            new_anchors.append(a)
        return torch.stack(new_memory, 1), torch.stack(new_anchors, 1)


def _cache_token(
    cache: torch.Tensor, token: torch.Tensor, pos: torch.Tensor, P: int, completes: torch.Tensor | None
) -> torch.Tensor:
    """Store each env's token (B, n, d) in its cache (B, n, P + L-1, d) at slot P + pos; where the segment
    completes (``completes`` (B,), None where no env does), the last P tokens of the cache and this one become the
    tokens before the next segment."""
    if cache.shape[2] == 0:
        return cache
    slot = (P + pos.clamp(max=cache.shape[2] - P - 1)).view(-1, 1, 1, 1).expand(-1, cache.shape[1], 1, cache.shape[3])
    stored = cache.scatter(2, slot, token[:, :, None])
    if P == 0 or completes is None:  # (P == 0: a completed segment's cache is stale, the next overwrites it)
        return stored
    shifted = torch.cat([_last_tokens(cache, token[:, :, None], P), cache[:, :, P:]], 2)
    return torch.where(completes[:, None, None, None], shifted, stored)


def _last_tokens(before: torch.Tensor, tokens: torch.Tensor, P: int) -> torch.Tensor:
    """The last P tokens (B, n, P, d) of ``before`` (B, n, Tb, d) followed by ``tokens`` (B, n, T, d)."""
    if P <= tokens.shape[2]:
        return tokens[:, :, tokens.shape[2] - P :]
    return torch.cat([before, tokens], 2)[:, :, -P:]


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
