"""The ELMUR model: step mode equals segment mode, and resets give fresh states."""

import pytest
import torch
import torch.nn.functional as F

from sb3_elmur.model import Attention, ElmurConfig, ElmurState, ElmurTransformer, SegmentStart, distance_bucket

CONFIG = dict(
    d_model=16,
    n_layers=2,
    n_heads=2,
    memory_size=4,
    segment_len=4,
    lru_alpha=0.79,
    memory_init="learned",
    norm_first=False,
)


# self-attention's reach, as (sliding_window, attention_segments): the current segment only; the last L steps (the
# default); the last 3L steps (back over two whole previous segments and into a third)
WINDOWS = {"segment": (False, 1), "L": (True, 1), "3L": (True, 3)}


def make_model(
    norm_first: bool, memory_size: int, segment_len: int = 4, window: str = "L", step_feature: str = ""
) -> ElmurTransformer:
    """``window``: a key of ``WINDOWS`` (for L = 4). ``step_feature``: which of "episode_clock", "segment_position"
    and "previous_action_embedding" (the last 2 of the 5 features then are the previous action) is on ("": none)."""
    torch.manual_seed(0)
    config = dict(CONFIG, memory_size=memory_size, segment_len=segment_len, norm_first=norm_first)
    config.update(episode_clock=step_feature == "episode_clock", segment_position=step_feature == "segment_position")
    embeds_action = step_feature == "previous_action_embedding"
    config.update(previous_action=embeds_action, previous_action_embedding=embeds_action)
    sliding_window, attention_segments = WINDOWS[window]
    config.update(sliding_window=sliding_window, attention_segments=attention_segments)
    model = ElmurTransformer(5, ElmurConfig(**config), 2 if embeds_action else 0)
    with torch.no_grad():  # make every bias, the initial memory and the position embedding matter
        for name, p in model.named_parameters():
            if ("bias" in name and p.dim() == 2) or name in ("initial_memory", "position.weight"):
                p.normal_()
    return model.eval()


def run_steps(model: ElmurTransformer, features: torch.Tensor):
    state = model.initial_state(features.shape[0])
    outputs = []
    for t in range(features.shape[1]):
        y, state = model.step(features[:, t], state)
        outputs.append(y)
    return torch.stack(outputs, 1), state


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))


def fresh_start(model: ElmurTransformer, batch_size: int) -> SegmentStart:
    return model.segment_start(model.initial_state(batch_size))


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("memory_size", [1, 2, 8])  # fewer slots than segments (blends) and more (only replacements)
@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("step_feature", ["", "episode_clock", "segment_position", "previous_action_embedding"])
def test_step_mode_equals_segment_mode(norm_first: bool, memory_size: int, window: str, step_feature: str, device: str):
    L, S, B = 4, 6, 3
    T = 5 * L + 2  # five whole segments and a partial one
    model = make_model(norm_first, memory_size, L, window, step_feature).to(device)
    with torch.device(device):  # every tensor below is made on the device
        features = torch.randn(B, T, 5)
        step_outputs, step_state = run_steps(model, features)

        padded = torch.zeros(B, S * L, 5)
        padded[:, :T] = features
        valid = torch.zeros(B, S * L, dtype=torch.bool)
        valid[:, :T] = True
        start_step = (torch.arange(S) * L).expand(B, S)
        episode_start = start_step == 0
        with torch.no_grad():
            segment_outputs, memories, end = model(
                padded.view(B, S, L, 5), fresh_start(model, B), start_step, episode_start, valid.view(B, S, L)
            )
        segment_outputs = segment_outputs.reshape(B, S * L, -1)[:, :T]
        assert (step_outputs - segment_outputs).abs().max() <= 1e-5
        assert (step_state.memory - memories[:, -1]).abs().max() <= 1e-5
        anchors = end.anchors
        assert torch.equal(step_state.anchors, anchors)
        assert torch.equal(end.memory, memories[:, -1])
        written = [L - 1 + L * s for s in range(5)]  # anchor = step of each segment's last token
        if memory_size >= 5:
            assert anchors[0, 0].tolist() == written + [-1] * (memory_size - 5)
        else:  # the oldest slots were blended by later segments
            assert sorted(anchors[0, 0].tolist()) == written[-memory_size:]
        assert torch.equal(step_state.step, torch.full((B,), T))


@pytest.mark.parametrize("window", WINDOWS)
def test_segment_mode_ends_where_step_mode_starts_the_next_segment(window: str):
    """After whole segments, segment mode returns the memory and the window's keys and values that step mode holds
    at the next segment's start: a later call can continue from there."""
    L, S, B = 4, 3, 2
    model = make_model(False, 2, L, window)
    features = torch.randn(B, S * L, 5)
    _, state = run_steps(model, features)
    start_step = (torch.arange(S) * L).expand(B, S)
    with torch.no_grad():
        _, _, end = model(
            features.view(B, S, L, 5), fresh_start(model, B), start_step, start_step == 0, torch.ones(B, S, L).bool()
        )
    expected = model.segment_start(state)
    for name, a, b in zip(end._fields, end, expected, strict=True):
        assert a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=1e-5), name
    assert end.keys.shape[2] == model.config.previous_len == {"segment": 0, "L": 3, "3L": 11}[window]


def advance_where(mask: torch.Tensor, stepped: ElmurState, state: ElmurState) -> ElmurState:
    """The stepped state for the envs where ``mask`` (B,) is true, the old one elsewhere."""
    return ElmurState(
        *(torch.where(mask.view(-1, *[1] * (n.dim() - 1)), n, o) for n, o in zip(stepped, state, strict=True))
    )


@pytest.mark.parametrize("window", WINDOWS)
def test_replay_segment_equals_stepping_the_segment_so_far_with_new_weights(window: str):
    """A rollout begins mid-segment: ``replay_segment`` recomputes the segment's cache in one pass, as stepping its
    tokens again (from the same memory and previous segment) with the changed weights gives it."""
    L, B = 4, 4
    model = make_model(False, 2, L, window)
    lengths = torch.tensor([5, 8, 10, 3])  # 1, 0, 2 and 3 steps into a segment (the last env: its first segment)
    features = torch.randn(B, int(lengths.max()), 5)
    state = model.initial_state(B)
    with torch.no_grad():
        for t in range(features.shape[1]):
            state = advance_where(t < lengths, model.step(features[:, t], state)[1], state)
        for p in model.parameters():  # the update between two rollouts
            p.add_(0.1 * torch.randn_like(p))
        prefix, start = state.step % L, state.step - state.step % L
        segment = torch.zeros(B, L - 1, 5)  # each env's segment so far, then padding
        for b in range(B):
            segment[b, : prefix[b]] = features[b, start[b] : state.step[b]]
        replayed = model.replay_segment(segment, state)
        expected = state._replace(step=start)
        for j in range(L - 1):  # the step-by-step reference
            expected = advance_where(j < prefix, model.step(segment[:, j], expected)[1], expected)
    for name, a, b in zip(ElmurState._fields, replayed, expected, strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name
    change = (replayed.outputs - state.outputs).abs().amax(dim=(1, 2, 3))
    assert (change[prefix > 0] > 1e-2).all() and (change[prefix == 0] == 0).all()  # the old cache was stale


@pytest.mark.parametrize("window", WINDOWS)
def test_segment_mode_restarts_memory_at_an_episode_start(window: str):
    """One sequence may hold the end of an episode and the next one: the new episode starts from fresh memory (and
    does not attend to the previous episode's last segment); a sequence that starts mid-episode continues from
    the state stored at its start."""
    L = 4
    model = make_model(False, 2, L, window)
    first, second = torch.randn(1, 3 * L, 5), torch.randn(1, L + 2, 5)
    _, first_state = run_steps(model, first)  # memory after 3 writes
    second_outputs, _ = run_steps(model, second)  # a fresh episode
    # sequence: segment 2 of the first episode (steps 8..11), then segments 0 and 1 of the second episode
    features = torch.zeros(1, 3, L, 5)
    features[0, 0], features[0, 1], features[0, 2, :2] = first[0, 2 * L :], second[0, :L], second[0, L:]
    valid = torch.ones(1, 3, L, dtype=torch.bool)
    valid[0, 2, 2:] = False
    _, state_before = run_steps(model, first[:, : 2 * L])
    with torch.no_grad():
        outputs, _, _ = model(
            features,
            model.segment_start(state_before),
            torch.tensor([[2 * L, 0, L]]),
            torch.tensor([[False, True, False]]),
            valid,
        )
    first_outputs, _ = run_steps(model, first)
    assert (outputs[0, 0] - first_outputs[0, 2 * L :]).abs().max() <= 1e-5
    assert (outputs[0, 1:].reshape(2 * L, -1)[: L + 2] - second_outputs[0]).abs().max() <= 1e-5
    assert first_state.anchors.max() == 3 * L - 1


@pytest.mark.parametrize("position", [0, 3])  # a plain step and one that completes its segment (a write)
def test_step_mode_cost_does_not_depend_on_episode_step(position: int):
    """A step at t ~ 10^6 costs what it costs at t ~ 10: the same floating-point operations (counted by torch's
    FlopCounterMode) on a state of the same shapes."""
    from torch.utils.flop_counter import FlopCounterMode

    model = make_model(False, 4)
    L = model.config.segment_len
    costs, shapes = [], []
    for t in (2 * L + position, 250_000 * L + position):
        state = model.initial_state(1)._replace(
            step=torch.tensor([t]), anchors=torch.tensor([[[t - position - 1 - L * k for k in range(4)]] * 2])
        )
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            _, new_state = model.step(torch.randn(1, 5), state)
        costs.append(counter.get_total_flops())
        shapes.append([tuple(a.shape) for a in new_state])
    assert costs[0] == costs[1] > 0
    assert shapes[0] == shapes[1] == [tuple(a.shape) for a in model.initial_state(1)]


def test_reset_gives_fresh_state_per_environment():
    model = make_model(False, 4)
    features = torch.randn(3, 9, 5)
    _, state = run_steps(model, features)
    reset = model.reset(state, torch.tensor([True, False, True]))
    fresh = model.initial_state(3)
    for field, a, f, old in zip(state._fields, reset, fresh, state, strict=True):
        assert torch.equal(a[0], f[0]) and torch.equal(a[2], f[2]), field
        assert torch.equal(a[1], old[1]), field
    x = torch.randn(3, 5)
    with torch.no_grad():
        y_reset, _ = model.step(x, reset)
        y_fresh, _ = model.step(x, fresh)
    assert torch.allclose(y_reset[[0, 2]], y_fresh[[0, 2]], atol=1e-6)
    assert not torch.allclose(y_reset[1], y_fresh[1])


def test_distance_buckets_are_monotone_and_bounded():
    distance = torch.arange(1, 3 * 10**6, 997)
    bucket = distance_bucket(distance, torch.zeros_like(distance, dtype=torch.bool))
    assert bucket.min() >= 1 and bucket.max() <= 31
    assert (bucket[1:] >= bucket[:-1]).all()
    assert distance_bucket(torch.tensor([5]), torch.tensor([True])).item() == 0
    assert distance_bucket(torch.arange(1, 16), torch.zeros(15, dtype=torch.bool)).tolist() == list(range(1, 16))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(segment_len=0), "segment_len"),
        (dict(memory_size=0), "memory_size"),
        (dict(d_model=10, n_heads=3), "divisible"),
        (dict(lru_alpha=0.0), "lru_alpha"),
        (dict(lru_alpha=1.5), "lru_alpha"),
        (dict(memory_init="random"), "memory_init"),
        (dict(reconstruction_coef=-1.0), "reconstruction_coef"),
        (dict(previous_action_embedding=True), "needs previous_action=True"),
        (dict(attention_segments=0), "attention_segments"),
        (dict(attention_segments=2, sliding_window=False), "needs sliding_window=True"),
    ],
)
def test_invalid_configuration_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ElmurConfig(**dict(CONFIG, **kwargs))


def test_previous_action_embedding_needs_an_action_size():
    config = ElmurConfig(**dict(CONFIG, previous_action=True, previous_action_embedding=True))
    with pytest.raises(ValueError, match="action_dim >= 1"):
        ElmurTransformer(5, config)


def test_attention_over_one_key_is_its_value():
    """The one-key shortcut (a one-slot memory read) equals attention computed in full, bias or not."""
    torch.manual_seed(0)
    attention = Attention(8, 2)
    x, kv = torch.randn(3, 5, 8), torch.randn(3, 1, 8)
    k, v = attention.keys_values(kv)
    q = attention.query(x).view(3, 5, 2, 4).transpose(1, 2)
    for bias in (None, torch.randn(3, 2, 5, 1)):
        full = F.scaled_dot_product_attention(
            q, k.view(3, 1, 2, 4).transpose(1, 2), v.view(3, 1, 2, 4).transpose(1, 2), attn_mask=bias
        )
        expected = attention.out(full.transpose(1, 2).reshape(3, 5, 8))
        torch.testing.assert_close(attention(x, k, v, bias), expected, rtol=0, atol=1e-6)


def test_episode_clock_is_periodic_and_tells_steps_apart():
    from sb3_elmur.model import CLOCK_PERIODS, episode_clock

    longest = max(CLOCK_PERIODS)
    steps = torch.arange(longest)
    features = episode_clock(steps)
    assert torch.allclose(episode_clock(steps + 1000 * longest), features, atol=1e-6)
    assert torch.cdist(features, features).add(torch.eye(longest)).min() > 0.1  # every step of a period its own


def test_recency_bias_starts_attention_on_the_last_steps():
    """With ``recency_bias`` a fresh model's first head gives most of its self-attention to the last few steps, and
    every head less to a farther step; without it every head starts flat over the window."""
    config = dict(CONFIG, n_heads=4, attention_segments=2)
    flat = ElmurTransformer(5, ElmurConfig(**config)).layers[0].self_bias
    bias = ElmurTransformer(5, ElmurConfig(**config, recency_bias=True)).layers[0].self_bias
    assert flat.shape == bias.shape == (4, 8) and (flat == 0).all()
    assert (bias.diff(dim=1) < 0).all() and (bias.diff(dim=0) > 0)[:, 1:].all()  # by distance, and by head
    weights = bias.softmax(dim=1)  # attention to the distances 0..7, before the keys' content is learned
    assert weights[0, :3].sum() > 0.9 and weights[-1].max() < 0.2


def test_segment_position_starts_small():
    """The position embedding starts as small as the learned memory: a token's observation, not its position, is
    what a fresh model sees (the T-Maze within one segment is lost on some seeds with a unit-scale embedding)."""
    model = ElmurTransformer(5, ElmurConfig(**CONFIG, segment_position=True))
    tokens = model.embed(torch.randn(1000, 5))
    assert model.position.weight.std() < 0.1 * tokens.std()
