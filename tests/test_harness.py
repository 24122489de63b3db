"""The benchmark harness (``benchmarks.harness``, ``benchmarks.tmaze_horizon``) on tiny jobs."""

import json
import math
import shutil

import numpy as np
import pytest

import sb3_elmur
from benchmarks import distinct_actions, harness, recall_by_position, tmaze_horizon
from sb3_elmur import SampledTMaze
from sb3_elmur.envs import DOWN, MOVE_ON, UP, TMaze
from sb3_elmur.model import ElmurConfig

TINY = dict(
    n_steps=32,
    batch_size=64,
    n_epochs=1,
    policy_kwargs=dict(d_model=16, n_layers=1, n_heads=1, memory_size=2, segment_len=4),
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    job = harness.make_job("ppo_elmur", "PassiveTMaze-v0", 256, 0, {"corridor_length": 3}, TINY, eval_episodes=8)
    first = harness.run_jobs([job], "tiny", results, progress_every=0)[0]
    return job, first, results


def test_job_runs_and_is_cached(tiny_run):
    job, first, results = tiny_run
    json_path, model_path = harness.job_paths(job, "tiny", results)
    assert json_path.exists() and model_path.exists()
    assert first["job"] == job and first["steps_trained"] >= 256 and 0 <= first["success"] <= 1
    assert first["elmur"]["segment_len"] == 4


def test_a_model_that_loads_other_than_trained_is_refused(tiny_run, tmp_path):
    job, first, results = tiny_run
    json_path, model_path = harness.job_paths(job, "tiny", tmp_path)
    json_path.parent.mkdir(parents=True)
    shutil.copy(harness.job_paths(job, "tiny", results)[1], model_path)
    harness.write_json(json_path, first)
    assert harness.load_model(job, "tiny", tmp_path).policy.config.segment_len == 4
    recorded = dict(first["configuration"]["policy_kwargs"], sliding_window=False)
    harness.write_json(json_path, {**first, "configuration": {**first["configuration"], "policy_kwargs": recorded}})
    with pytest.raises(ValueError, match="loads with sliding_window=True, but its result records sliding_window=False"):
        harness.load_model(job, "tiny", tmp_path)


def test_second_run_is_skipped(tiny_run, monkeypatch):
    job, first, results = tiny_run

    def fail(*args, **kwargs):
        raise AssertionError("a cached job ran again")

    monkeypatch.setattr(harness, "run_job", fail)
    assert harness.run_jobs([job], "tiny", results) == [first]


def test_result_records_configuration_and_versions(tiny_run):
    job, first, _ = tiny_run
    configuration = first["configuration"]
    assert configuration == harness.resolved_configuration(job)
    assert configuration["n_steps"] == 32 and configuration["gamma"] == 0.99  # given, and a PPOELMUR default
    assert configuration["policy"] == "ElmurPolicy"
    assert configuration["policy_kwargs"]["segment_len"] == 4  # given
    assert configuration["policy_kwargs"]["lru_alpha"] == ElmurConfig().lru_alpha  # an ElmurConfig default
    assert first["versions"]["sb3_elmur"] == sb3_elmur.__version__
    # how the update and acting run (compiled or not) is recorded beside the configuration, not in it
    for option in ("compile_update", "compile_acting"):
        assert option not in configuration and first[option] is False
        assert harness.changed_settings({**configuration, option: True}, job) == []


def test_a_result_of_other_settings_is_not_served(tiny_run, tmp_path):
    job, first, _ = tiny_run
    json_path, _ = harness.job_paths(job, "tiny", tmp_path)

    def recorded(configuration: dict, **policy_kwargs) -> dict:
        return {**first, "configuration": {**first["configuration"], **configuration, "policy_kwargs": policy_kwargs}}

    policy_kwargs = first["configuration"]["policy_kwargs"]
    harness.write_json(json_path, recorded({"ent_coef": 0.5}, **policy_kwargs))
    with pytest.raises(harness.StaleResult, match="ent_coef differ"):
        harness.cached_result(job, "tiny", tmp_path)
    # recorded before an option existed: served where the job leaves it at its default, not where it sets it
    without = {k: v for k, v in policy_kwargs.items() if k != "episode_clock"}
    harness.write_json(json_path, older := recorded({}, **without))
    assert harness.cached_result(job, "tiny", tmp_path) == older
    assert policy_kwargs["segment_len"] != harness.resolved_configuration(job, True)["policy_kwargs"]["segment_len"]
    harness.write_json(json_path, recorded({}, **{k: v for k, v in policy_kwargs.items() if k != "segment_len"}))
    with pytest.raises(harness.StaleResult, match=r"policy_kwargs\.segment_len differ"):
        harness.cached_result(job, "tiny", tmp_path)
    harness.write_json(json_path, recorded({"no_such_setting": None}, **policy_kwargs))  # a setting now gone
    with pytest.raises(harness.StaleResult, match="no_such_setting differ"):
        harness.cached_result(job, "tiny", tmp_path)
    legacy = {k: v for k, v in first.items() if k != "configuration"}  # recorded before configurations were
    harness.write_json(json_path, legacy)
    assert harness.cached_result(job, "tiny", tmp_path) == legacy


def test_cached_computes_once(tmp_path):
    calls = []
    path = tmp_path / "a" / "b.json"
    assert harness.cached(path, lambda: calls.append(1) or {"x": 1}) == {"x": 1}
    assert harness.cached(path, lambda: calls.append(1) or {"x": 2}) == {"x": 1}
    assert calls == [1] and [p.name for p in path.parent.iterdir()] == ["b.json"]  # no temporary file left


def test_an_interrupted_job_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    job = harness.make_job("ppo_elmur", "PassiveTMaze-v0", 768, 0, {"corridor_length": 3}, TINY, eval_episodes=4)
    _, model_path = harness.job_paths(job, "tiny", tmp_path)
    monkeypatch.setattr(harness, "CHECKPOINT_EVERY", 256)  # a rollout is 32 x 8 = 256 steps
    save = harness.save_checkpoint
    updates = []

    def save_then_die(model, *args, **kwargs):
        save(model, *args, **kwargs)
        if model.num_timesteps == 512:
            updates.append(model._n_updates)
            raise KeyboardInterrupt

    monkeypatch.setattr(harness, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        harness.cached_job(job, "tiny", tmp_path, progress_every=0)
    record = harness.checkpoint_progress_path(model_path)
    assert json.loads(record.read_text())["steps"] == 512 and harness.cached_result(job, "tiny", tmp_path) is None
    assert updates == [2]  # the checkpoint holds both rollouts' updates (n_epochs=1: one each)
    assert len(list(tmp_path.glob("tiny/*.checkpoint-*"))) == 1  # the 256-step checkpoint was replaced
    (line,) = harness.in_progress("tiny", tmp_path)
    assert line.startswith(f"{model_path.stem}: 512 of 768 steps, training success ")
    progress = json.loads(record.read_text())
    del progress["configuration"]["normalize_value_loss"]  # as if saved before the option (at its default) existed
    record.write_text(json.dumps(progress))

    monkeypatch.setattr(harness, "save_checkpoint", save)
    result = harness.cached_job(job, "tiny", tmp_path, progress_every=0)
    assert result["resumed_at"] == [512] and result["steps_trained"] == 768
    assert [p["steps"] for p in result["curve"]] == [256, 512, 768]  # the first process's curve is kept
    assert not list(tmp_path.glob("tiny/*.checkpoint*")) and model_path.exists()
    assert harness.in_progress("tiny", tmp_path) == []
    assert harness.load_model(job, "tiny", tmp_path)._n_updates == 3  # no rollout went untrained


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path, monkeypatch):
    job = harness.make_job("ppo_elmur", "PassiveTMaze-v0", 512, 0, {"corridor_length": 3}, TINY, eval_episodes=4)
    _, model_path = harness.job_paths(job, "tiny", tmp_path)
    monkeypatch.setattr(harness, "CHECKPOINT_EVERY", 256)

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    save = harness.save_checkpoint
    monkeypatch.setattr(harness, "save_checkpoint", lambda *a, **k: (save(*a, **k), die()))
    with pytest.raises(KeyboardInterrupt):
        harness.cached_job(job, "tiny", tmp_path, progress_every=0)
    record = harness.checkpoint_progress_path(model_path)
    progress = json.loads(record.read_text())
    progress["configuration"]["ent_coef"] = 0.5  # as if a default had changed since
    record.write_text(json.dumps(progress))
    monkeypatch.setattr(harness, "save_checkpoint", save)
    assert "resumed_at" not in harness.cached_job(job, "tiny", tmp_path, progress_every=0)


def test_key_depends_on_the_job():
    job = harness.make_job("ppo", "PassiveTMaze-v0", 256, 0, {"corridor_length": 3})
    assert harness.job_key(job) == harness.job_key(dict(job))
    assert harness.job_key(job) != harness.job_key({**job, "seed": 1})
    with pytest.raises(ValueError, match="unknown algorithm"):
        harness.make_job("dqn", "PassiveTMaze-v0", 256)


def test_table_contains_the_job(tiny_run):
    _job, first, _ = tiny_run
    table = harness.markdown_table([first])
    row = next(line for line in table.splitlines() if line.startswith(f"| ppo_elmur (r{harness.PPO_ELMUR_REVISION}) |"))
    assert "PassiveTMaze-v0" in row and '{"corridor_length": 3}' in row and "256" in row


def test_plots(tiny_run, tmp_path):
    pytest.importorskip("matplotlib")
    _, first, _ = tiny_run
    paths = harness.write_plots([first], tmp_path)
    assert paths and all(p.suffix == ".png" and p.stat().st_size > 0 for p in paths)


def test_presets():
    tuned, _ = harness.resolve_hyperparameters(harness.make_job("recurrent_ppo_tuned", "PassiveTMaze-v0", 1))
    assert tuned["policy_kwargs"] == {"lstm_hidden_size": 64, "ortho_init": False} and tuned["n_steps"] == 64
    pytest.importorskip("yaml")
    zoo, ignored = harness.resolve_hyperparameters(
        harness.make_job("ppo_elmur_zoo", "PassiveTMaze-v0", 1, hyperparameters={"n_epochs": 3})
    )
    assert zoo["n_epochs"] == 3 and zoo["policy_kwargs"]["segment_len"] == 16 and "n_timesteps" in ignored


def test_schedules_and_recurrent_ppo_zoo_preset():
    from stable_baselines3.common.utils import LinearSchedule

    out = harness.schedules({"learning_rate": "lin_1e-3", "clip_range": 0.2, "gamma": 0.9})
    assert isinstance(out["learning_rate"], LinearSchedule) and out["learning_rate"](0.5) == pytest.approx(5e-4)
    assert out["clip_range"] == 0.2 and out["gamma"] == 0.9
    pytest.importorskip("rl_zoo3")
    lstm, ignored = harness.resolve_hyperparameters(harness.make_job("recurrent_ppo_zoo", "CartPoleNoVel-v1", 1))
    assert lstm["policy_kwargs"]["lstm_hidden_size"] == 64 and lstm["n_epochs"] == 20 and ignored["normalize"]


def test_normalized_job(tmp_path):
    """A job with ``normalize`` trains in a VecNormalize, saves its statistics and evaluates with them frozen."""
    job = harness.make_job("ppo_elmur", "CartPole-v1", 256, 0, hyperparameters=TINY, eval_episodes=2, normalize=True)
    assert harness.job_key(job) != harness.job_key({k: v for k, v in job.items() if k != "normalize"})
    result = harness.run_jobs([job], "norm", tmp_path, progress_every=0)[0]
    _, model_path = harness.job_paths(job, "norm", tmp_path)
    assert model_path.with_suffix(".pkl").is_file() and result["mean_return"] > 0
    env = harness.evaluation_env(job, model_path.with_suffix(".pkl"))
    assert not env.training and not env.norm_reward and env.obs_rms.count > 256
    assert "VecNormalize" in harness.markdown_table([result])


def test_horizon_formula():
    # H(eps) = M * L * ln(eps) / ln(1 - lambda)
    assert harness.horizon(4, 16, 0.79, 0.05) == pytest.approx(4 * 16 * math.log(0.05) / math.log(0.21))
    assert harness.horizon(2, 10, 0.5, 0.25) == pytest.approx(40.0)  # two blends of 1/2 leave 1/4
    assert harness.horizon(4, 16, 0.0) == math.inf


def test_horizon_eval(tiny_run):
    _job, first, results = tiny_run
    evals = [tmaze_horizon.cached_eval(first, "tiny", n, episodes=6, n_envs=3, results=results) for n in (2, 7)]
    assert [e["episodes"] for e in evals] == [6, 6]
    assert [e["batch_steps"] for e in evals] == [2 * 3, 2 * 8]  # 2 rounds of corridor + 1 steps
    assert all(0 <= e["success"] <= 1 for e in evals)
    table = tmaze_horizon.horizon_table([first], evals, [2, 7])
    assert "| ppo_elmur |" in table


def test_probe(tiny_run):
    job, _first, results = tiny_run
    model = harness.load_model(job, "tiny", results)
    cues, memories = tmaze_horizon.record_memory(model, corridor_length=9, episodes=6)
    assert set(cues.tolist()) <= {0, 1} and len(memories) == 2  # boundaries after steps 4 and 8
    assert memories[0].shape == (6, 1 * 2 * 16)
    x = np.random.default_rng(0).normal(size=(400, 5))
    y = (x[:, 0] > 0).astype(int)
    assert np.mean(tmaze_horizon.logistic_probe(x[:200], y[:200])(x[200:]) == y[200:]) > 0.9
    # a cue imprint that halves every boundary: the fixed probe still reads it, the separation halves
    cues = np.arange(40) % 2
    base = np.random.default_rng(1).normal(size=(1, 8)) + 5.0
    signal = np.where(cues[:, None] == 1, 1.0, -1.0) * np.eye(8)[0]
    points = tmaze_horizon.retention(cues, [base + signal * 0.5**k for k in range(3)])
    assert [p["fixed_probe_accuracy"] for p in points] == [1.0, 1.0, 1.0]
    assert points[1]["separation"] == pytest.approx(points[0]["separation"] / 2, rel=0.05)
    # a cue that moved to another coordinate: the fixed probe no longer reads it
    moved = tmaze_horizon.retention(cues, [base + signal, base + np.roll(signal, 1, axis=1)])
    assert moved[1]["fixed_probe_accuracy"] <= 0.6


def test_sampled_tmaze():
    env = SampledTMaze(max_length=5, min_length=2)
    lengths = set()
    for seed in range(30):
        env.reset(seed=seed)
        lengths.add(env.corridor_length)
    assert lengths == {2, 3, 4, 5}


def test_tmaze_cue_option():
    """``reset(options={"cue": ...})`` sets the cue the first observation shows and the turn that succeeds."""
    env = TMaze(corridor_length=2)
    for cue in (UP, DOWN):
        obs, _ = env.reset(seed=0, options={"cue": cue})
        assert obs.tolist() == [float(cue == UP), float(cue == DOWN), 0.0]
        assert env.step(MOVE_ON)[0].tolist() == [0.0, 0.0, 0.0]
        assert env.step(MOVE_ON)[0].tolist() == [0.0, 0.0, 1.0]
        assert env.step(cue)[1:] == (1.0, True, False, {"is_success": True})
    with pytest.raises(ValueError, match="cue must be UP"):
        env.reset(options={"cue": MOVE_ON})


@pytest.mark.parametrize("last_step_terminates", [False, True])
def test_tmaze_time_limit(last_step_terminates: bool):
    """Moving on at the junction runs out of time: a truncation by default, a termination with the option; the
    reward and the rest of the episode are the same."""
    env = SampledTMaze(max_length=3, min_length=3, last_step_terminates=last_step_terminates)
    env.reset(seed=0)
    for _ in range(3):
        assert env.step(MOVE_ON)[1:4] == (0.0, False, False)
    _, reward, terminated, truncated, info = env.step(MOVE_ON)
    assert (reward, terminated, truncated, info) == (
        -1 / 3,
        last_step_terminates,
        not last_step_terminates,
        {"is_success": False},
    )


def test_float_box_and_previous_action_reward():
    import gymnasium as gym
    from gymnasium import spaces

    class Tiny(gym.Env):
        observation_space = spaces.MultiDiscrete([2, 3])
        action_space = spaces.Discrete(3)

        def reset(self, *, seed=None, options=None):
            return np.array([1, 2]), {}

        def step(self, action):
            return np.array([0, 1]), 0.5, False, False, {}

    env = harness.PreviousActionReward(harness.FloatBoxObservation(Tiny()))
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs, [0, 1, 0, 0, 1, 0, 0, 0, 0])
    obs, *_ = env.step(2)
    np.testing.assert_array_equal(obs, [1, 0, 0, 1, 0, 0, 0, 1, 0.5])
    assert obs.dtype == np.float32 and env.observation_space.shape == (9,)


def test_popgym_previous_action_inside_the_monitor():
    """POPGym's protocol (its previous action and first-step flag, flattened): the Monitor around it still records
    episodes, and the observation after a step carries that step's action one-hot."""
    pytest.importorskip("popgym")
    env = harness.make_env("popgym-MultiarmedBanditEasy-v0", 2, {}, ["popgym_previous_action", "float_box"], 0)
    assert env.observation_space.shape == (2 + 10 + 2,)  # win/lose one-hot, previous arm one-hot, first-step flag
    obs = env.reset()
    np.testing.assert_array_equal(obs[:, 2:], np.tile([1] + [0] * 9 + [0, 1], (2, 1)))  # null action 0, first step
    actions = np.array([3, 7])
    obs, _, dones, infos = env.step(actions)
    np.testing.assert_array_equal(obs[:, 2:12], np.eye(10)[actions])
    np.testing.assert_array_equal(obs[:, 12:], [[1, 0], [1, 0]])
    while not dones.any():
        obs, _, dones, infos = env.step(actions)
    assert "episode" in infos[int(np.argmax(dones))]
    with pytest.raises(ValueError, match="must come first"):
        harness.make_env("popgym-MultiarmedBanditEasy-v0", 1, {}, ["float_box", "popgym_previous_action"], 0)


@pytest.mark.parametrize(
    "flag, wrappers",
    [([], "float_box"), (["--previous-action"], "popgym_previous_action + float_box")],
)
def test_popgym_suite_reprints_an_empty_cache(tmp_path, capsys, monkeypatch, flag: list[str], wrappers: str):
    from benchmarks import popgym_suite

    monkeypatch.setattr(popgym_suite, "easy_tasks", lambda: ["BattleshipEasy", "MineSweeperEasy"])  # popgym not needed
    popgym_suite.main([*flag, "--table-only", "--tasks", "BattleshipEasy", "--results", str(tmp_path)])
    printed = capsys.readouterr().out
    assert f"Observation wrappers (all algorithms): {wrappers}." in printed
    assert "| BattleshipEasy | - | - | - | - |" in printed


def test_popgym_suite_table_counts_leads_and_missing_seeds():
    from benchmarks import popgym_suite

    def result(task, algorithm, seed, score):  # training ended at score - 0.1 (sampled actions)
        curve = [dict(steps=1, mean_return=-1.0), dict(steps=2, mean_return=score - 0.1)]
        return dict(
            job=dict(env_id=f"popgym-{task}-v0", algorithm=algorithm, seed=seed), mean_return=score, curve=curve
        )

    results = [
        result("AEasy", "ppo_elmur", 0, 0.5),
        result("AEasy", "ppo_elmur", 1, 0.7),
        result("AEasy", "recurrent_ppo", 0, 0.2),
        result("BEasy", "ppo_elmur", 0, 0.1),
        result("BEasy", "recurrent_ppo", 0, 0.3),
        result("BEasy", "recurrent_ppo", 1, 0.3),
    ]
    table = popgym_suite.suite_table(results, ["AEasy", "BEasy"], ["ppo_elmur", "recurrent_ppo"], ["float_box"], 2)
    assert "| AEasy | 0.600 (2) | 0.200 (1) | +0.400 |" in table
    assert "| BEasy | 0.100 (1) | 0.300 (2) | -0.200 |" in table
    assert "| **mean** | 0.350 | 0.250 | |" in table
    assert "ahead by 0.05 or more on 1 (AEasy), behind by more than 0.05 on 1 (BEasy)" in table
    training = popgym_suite.suite_table(results, ["AEasy"], ["ppo_elmur", "recurrent_ppo"], ["float_box"], 2, "train")
    assert "| AEasy | 0.500 (2) | 0.100 (1) | +0.400 |" in training and "sampled actions" in training


def test_popgym_protocol_table_sets_each_algorithm_beside_itself_under_the_protocol():
    from benchmarks import popgym_suite

    def result(task, algorithm, seed, score):  # training ended at score - 0.1 (sampled actions)
        curve = [dict(steps=1, mean_return=score - 0.1)]
        return dict(
            job=dict(env_id=f"popgym-{task}-v0", algorithm=algorithm, seed=seed), mean_return=score, curve=curve
        )

    alone = [result("AEasy", "ppo_elmur", 0, 0.2), result("AEasy", "recurrent_ppo", 0, 0.3)]
    protocol = [result("AEasy", "ppo_elmur", 0, 0.6), result("AEasy", "ppo_elmur", 1, 0.8)]
    table = popgym_suite.protocol_table(alone, protocol, ["AEasy", "BEasy"], ["ppo_elmur", "recurrent_ppo"])
    assert (
        "| task | ppo_elmur | ppo_elmur, POPGym's protocol | recurrent_ppo | recurrent_ppo, POPGym's protocol |"
        in table
    )
    assert "| AEasy | 0.200 (0.100) [1] | 0.700 (0.600) [2] | 0.300 (0.200) [1] | - |" in table
    assert "| BEasy | - | - | - | - |" in table


def test_only_the_whole_popgym_suite_draws_its_plot():
    pytest.importorskip("popgym")
    from benchmarks import popgym_suite

    tasks, algorithms, today = popgym_suite.easy_tasks(), popgym_suite.DEFAULT_ALGORITHMS, harness.CODE_REVISION
    assert len(tasks) == 16
    assert popgym_suite.plot_name(today, list(reversed(tasks)), algorithms) == "popgym.png"
    assert popgym_suite.plot_name(today, tasks[:1], algorithms) == "popgym_partial.png"
    assert popgym_suite.plot_name(today, tasks, ["ppo_elmur"]) == "popgym_partial.png"
    assert popgym_suite.plot_name(7, tasks, algorithms) == "popgym_r7.png"
    assert popgym_suite.plot_name(7, tasks[:2], algorithms) == "popgym_r7_partial.png"


def test_popgym_suite_seed_rule_asks_more_seeds_where_the_first_differ():
    from benchmarks import popgym_suite

    def result(task, algorithm, seed, score):
        return dict(job=dict(env_id=f"popgym-{task}-v0", algorithm=algorithm, seed=seed), mean_return=score)

    algorithms = ["ppo_elmur", "recurrent_ppo", "ppo"]
    results = [
        result("AEasy", "ppo_elmur", 0, 0.5),  # 0.1 apart: seeds 1 and 2 for both
        result("AEasy", "recurrent_ppo", 0, 0.4),
        result("AEasy", "recurrent_ppo", 2, 0.4),
        result("AEasy", "ppo", 0, 0.0),
        result("BEasy", "ppo_elmur", 0, 0.5),  # 0.04 apart: seed 0 is enough
        result("BEasy", "recurrent_ppo", 0, 0.46),
        result("AutoencodeEasy", "ppo_elmur", 0, 0.5),  # a reference task: seeded whatever seed 0 gives
        result("AutoencodeEasy", "recurrent_ppo", 0, 0.5),
        result("AutoencodeEasy", "ppo", 0, 0.5),
    ]
    todo = popgym_suite.runs_to_do(results, ["AEasy", "BEasy", "AutoencodeEasy"], algorithms, [0, 1, 2])
    assert todo == {
        "ppo_elmur": {"AEasy": [1, 2], "AutoencodeEasy": [1, 2]},
        "recurrent_ppo": {"AEasy": [1], "AutoencodeEasy": [1, 2]},
        "ppo": {"BEasy": [0]},
    }


def test_recall_by_position_counts_are_cached_and_outlive_the_model(tiny_run, tmp_path):
    job, _, results = tiny_run
    name = "tiny"
    cache = tmp_path / name
    shutil.copytree(results / name, cache)
    counts = recall_by_position.counts(job, name, 4, tmp_path)
    assert counts is not None and counts["segment_len"] == 4
    right, answers = np.array(counts["right"]), np.array(counts["answers"])
    assert answers[0] >= 4 and (right <= answers).all()  # every episode started answers at step 0
    harness.job_paths(job, name, tmp_path)[1].unlink()  # the model zip gone, as on a fresh checkout
    assert recall_by_position.counts(job, name, 4, tmp_path) == counts
    assert recall_by_position.counts(job, name, 8, tmp_path) is None  # other counts, and no model to make them


def test_count_recall_timer_bound_is_the_hypergeometric_mode():
    bound = recall_by_position.count_recall_timer_bound(3)
    assert bound[0] == 1  # the one card dealt is the one in view
    # one card before it, from the 51 others: of the queried colour with chance 25/51 (if the card in view is, and
    # then counted) or 26/51; the policy answers the likelier count
    assert bound[1] == pytest.approx((26 / 51 + 26 / 51) / 2)
    two = [math.comb(25, k) * math.comb(26, 2 - k) / math.comb(51, 2) for k in range(3)]
    assert bound[2] == pytest.approx(max(two))  # by symmetry the same for both colours of the card in view


def test_a_job_of_an_other_revision_with_the_same_code_and_configuration_is_adopted(tiny_run, tmp_path, monkeypatch):
    """An ablation of a revision with the same code that set today's defaults explicitly is today's job: adopted
    with its model, not rerun; one whose configuration differs, or of a revision with other code, is not."""
    job, first, results = tiny_run
    before = 99  # a revision whose code learns as today's (SAME_CODE_REVISIONS)
    monkeypatch.setattr(harness, "SAME_CODE_REVISIONS", {job["ppo_elmur_revision"]: [before]})
    today = ElmurConfig()
    defaults = {"separate_critic_trunk": today.separate_critic_trunk, "actor_value_coef": today.actor_value_coef}
    explicit = {**TINY, "policy_kwargs": {**TINY["policy_kwargs"], **defaults}}
    then = {**job, "ppo_elmur_revision": before, "hyperparameters": explicit}
    source, _ = harness.job_paths(then, "ablation_then", tmp_path)
    source.parent.mkdir(parents=True)
    shutil.copy(harness.job_paths(job, "tiny", results)[1], source.with_suffix(".zip"))

    def fail(*args, **kwargs):
        raise AssertionError("the job ran")

    monkeypatch.setattr(harness, "run_job", fail)
    other_trunks = dict(first["configuration"]["policy_kwargs"], separate_critic_trunk=not today.separate_critic_trunk)
    without_window = {k: v for k, v in first["configuration"]["policy_kwargs"].items() if k != "sliding_window"}
    for other in [
        {**first, "job": then, "configuration": {**first["configuration"], "policy_kwargs": other_trunks}},
        {**first, "job": {**then, "ppo_elmur_revision": 1}},
        {**first, "job": {**then, "seed": 1}},
        # recorded before sliding_window existed: it ran with the value of that time (off), not today's default
        {**first, "job": then, "configuration": {**first["configuration"], "policy_kwargs": without_window}},
        # recorded before critic_share existed: it ran without the floor, not with today's default
        {
            **first,
            "job": then,
            "configuration": {k: v for k, v in first["configuration"].items() if k != "critic_share"},
        },
    ]:
        harness.write_json(source, other)
        with pytest.raises(AssertionError, match="the job ran"):
            harness.cached_job(job, "suite", tmp_path)
    harness.write_json(source, {**first, "job": then})
    adopted = harness.cached_job(job, "suite", tmp_path)
    assert adopted["job"] == job and adopted["adopted_from"]["job"] == then
    assert adopted["adopted_from"]["path"] == f"ablation_then/{source.name}"
    assert {k: adopted[k] for k in ("success", "configuration", "curve")} == {
        k: first[k] for k in ("success", "configuration", "curve")
    }
    assert harness.cached_job(job, "suite", tmp_path) == adopted  # now cached under its own key
    config = harness.load_model(job, "suite", tmp_path).policy.config
    assert (config.separate_critic_trunk, config.actor_value_coef) == tuple(defaults.values())


def test_a_job_of_an_other_revision_is_read_as_recorded_and_never_run(tiny_run, tmp_path, monkeypatch):
    job, first, _ = tiny_run
    monkeypatch.setattr(harness, "PPO_ELMUR_REVISION", 4)  # --ppo-elmur-revision 4
    old = harness.make_job("ppo_elmur", "PassiveTMaze-v0", 256, 0, {"corridor_length": 3}, TINY, eval_episodes=8)
    assert old["ppo_elmur_revision"] == 4 and harness.other_revision(old) and not harness.other_revision(job)
    message = f"today's code learns as revision {harness.CODE_REVISION}; it cannot run a job of revision 4"
    with pytest.raises(ValueError, match=message):
        harness.cached_job(old, "tiny", tmp_path)
    revision_4 = dict(first["configuration"]["policy_kwargs"], actor_value_coef=0.5)  # its defaults
    recorded = {**first, "configuration": {**first["configuration"], "policy_kwargs": revision_4}}
    harness.write_json(harness.job_paths(old, "tiny", tmp_path)[0], {**recorded, "job": old})
    assert harness.cached_result(old, "tiny", tmp_path) == {**recorded, "job": old}
    harness.write_json(harness.job_paths(job, "tiny", tmp_path)[0], recorded)  # today's job: stale
    with pytest.raises(harness.StaleResult, match=r"policy_kwargs\.actor_value_coef"):
        harness.cached_result(job, "tiny", tmp_path)


def test_a_job_of_an_earlier_revision_with_todays_code_runs_with_that_revisions_defaults(tiny_run, monkeypatch):
    """``--ppo-elmur-revision 2`` extends revision 2's tables: today's code, given the defaults that revision had
    where they differ from today's, under the job's own settings (which win)."""
    job, first, _ = tiny_run
    (earlier,) = harness.SAME_CODE_REVISIONS[harness.CODE_REVISION]
    then = harness.REVISION_DEFAULTS[earlier]
    assert then
    monkeypatch.setattr(harness, "PPO_ELMUR_REVISION", earlier)
    own = next(iter(then["policy_kwargs"]))  # a default of then that the job sets itself (to today's)
    settings = dict(
        TINY, policy_kwargs=dict(TINY["policy_kwargs"], **{own: first["configuration"]["policy_kwargs"][own]})
    )
    old = harness.make_job("ppo_elmur", "PassiveTMaze-v0", 256, 0, {"corridor_length": 3}, settings, eval_episodes=8)
    configuration = harness.resolved_configuration(old)
    for key, value in then.items():
        if key != "policy_kwargs":
            assert configuration[key] == value != first["configuration"][key]
    for key, value in then["policy_kwargs"].items():
        assert value != first["configuration"]["policy_kwargs"][key]  # today's default differs from then's
        expected = first["configuration"]["policy_kwargs"][key] if key == own else value  # the job's own setting wins
        assert configuration["policy_kwargs"][key] == expected
    assert harness.resolved_configuration(job) == first["configuration"]  # today's jobs: today's defaults
    with pytest.raises(ValueError, match="cannot run a job of revision 1"):
        harness.revision_settings(1)


def test_training_trace_prints_the_updates_around_the_largest_kl_after_learning(tmp_path, capsys):
    from benchmarks import training_trace

    header = list(training_trace.COLUMNS)
    rows = [  # steps, success, return, entropy loss, approx KL, clip fraction, value loss
        (1024, 0.0, -0.7, -1.0, 5.0, 0.3, 0.1),  # a larger KL before the success reached 0.95: not the one
        (2048, 0.96, 0.9, -0.1, 0.01, 0.1, 0.01),
        (3072, 1.0, 1.0, -0.01, 0.0, 0.0, 0.001),
        (4096, 0.5, 0.4, -0.02, 1.25, 0.2, 0.01),
        (5120, 0.0, -0.03, -0.002, 0.0, 0.0, 0.001),
    ]
    path = tmp_path / "trace.csv"
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, row)) for row in rows]) + "\n")
    training_trace.print_window(path, before=1, after=0)
    printed = capsys.readouterr().out
    assert "0.95 training success at 2048 steps" in printed
    table = [line for line in printed.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert table == [
        "| 3.07e+03 | 1 | 1 | -0.01 | 0 | 0 | 0.001 |",
        "| 4.1e+03 | 0.5 | 0.4 | -0.02 | 1.25 | 0.2 | 0.01 |",
    ]


def test_distinct_actions_counts_the_first_episode_of_each_env():
    env = harness.make_env("PassiveTMaze-v0", 3, {"corridor_length": 3}, [], 0)

    class Alternating:  # MOVE_ON, UP, MOVE_ON, UP, ... in every env
        t = 0

        def predict(self, obs, state, episode_start, deterministic):
            self.t += 1
            return np.full(len(obs), MOVE_ON if self.t % 2 else UP), state

    actions, returns = distinct_actions.first_episodes(Alternating(), env, deterministic=True)
    lengths = [lengths[0] for lengths in env.env_method("get_episode_lengths")]
    rewards = [rewards[0] for rewards in env.env_method("get_episode_rewards")]
    assert [len(a) for a in actions] == lengths  # each env's first episode, no step of a later one
    assert returns == pytest.approx(rewards)
    assert [len(set(a)) for a in actions] == [2, 2, 2]
    assert [distinct_actions.repeated_steps(a) for a in actions] == [0, 0, 0]  # it alternates
    assert distinct_actions.repeated_steps([(1, 2), (1, 2), (3, 4), (1, 2), (1, 2), (1, 2)]) == 3
    assert actions[0][:2] == [(MOVE_ON,), (UP,)]


def test_an_ablation_job_saves_its_model_and_asks_it_for_other_corridor_lengths_and_its_memory(tmp_path, monkeypatch):
    from benchmarks import ablation

    task = {
        "env_id": "SampledTMaze-v0",
        "env_kwargs": {"max_length": 3},
        "steps": 256,
        "policy_kwargs": TINY["policy_kwargs"],
        "eval_env_id": "PassiveTMaze-v0",
        "eval_env_kwargs": {"corridor_length": 5},
    }
    monkeypatch.setattr(ablation, "RESULTS", tmp_path)
    monkeypatch.setitem(ablation.TASKS, "tiny_horizon", task)
    monkeypatch.setitem(ablation.VARIANTS, "tiny", {k: v for k, v in TINY.items() if k != "policy_kwargs"})
    result = ablation.cached_job("tiny", "tiny_horizon", 0)
    saved = ablation.result_path("tiny", "tiny_horizon", 0).with_suffix(".zip")
    assert saved.exists() and 0 <= result["success"] <= 1
    models = ablation.saved_tmaze_models([("tiny", "tiny_horizon", 0), ("tiny", "tiny_horizon", 1)])
    table = ablation.zero_shot_table(models, [2, 7])
    rows = table.strip().splitlines()
    assert rows[0] == "| task | variant | seed | corridor 2 | corridor 7 |"
    assert len(rows) == 3 and rows[2].startswith("| tiny_horizon | tiny | 0 | ")  # seed 1 has no saved model
    cells = [cell.strip() for cell in rows[2].split("|")[4:6]]
    for cell in cells:  # "deterministic (sampled)", each a success rate of 100 episodes
        deterministic, sampled = cell.replace("(", "").replace(")", "").split()
        assert 0 <= float(deterministic) <= 1 and 0 <= float(sampled) <= 1
    imprints = ablation.imprint_table(models, 9).strip().splitlines()
    assert imprints[2].startswith("| tiny_horizon | tiny | 0 | ")
    assert len(imprints[2].split("|")[4].split(",")) == 2  # segments of 4: writes after steps 4 and 8 of 9
