"""Benchmark harness: train (algorithm, env, seed, budget, hyperparameters) jobs, cache each result, table and plots.

    python -m benchmarks.harness --name tmaze10 --env PassiveTMaze-v0 --env-kwargs '{"corridor_length": 10}' \\
        --algorithms ppo_elmur recurrent_ppo ppo --seeds 0 1 --steps 150000
    python -m benchmarks.harness --name tmaze10 --table-only      # table and plots of what is cached

A job is a JSON-serialisable dict (see :func:`make_job`): algorithm, env id, env kwargs, wrappers (names from
:data:`WRAPPERS`), seed, budget in environment steps, number of envs (8 for every algorithm), hyperparameters (on
top of the algorithm's preset) and the evaluation settings. Its result is cached as
``benchmarks/results/<name>/<algorithm>__<env>__s<seed>__<key>.json`` (key = hash of the job), with the trained
model beside it (same stem, ``.zip``), so later evaluations reuse the model. A running job saves a checkpoint
(``<stem>.checkpoint*``: model with optimizer, VecNormalize statistics, curve) every :data:`CHECKPOINT_EVERY` steps;
running the same command again resumes an interrupted job there (its result lists the steps in ``resumed_at``).

Algorithms (:data:`ALGORITHMS`):

- ``ppo_elmur``: PPOELMUR with its defaults (``ElmurPolicy``, or ``MultiInputElmurPolicy`` for Dict observations)
- ``ppo_elmur_zoo``: PPOELMUR with the RL Zoo entry of the env (else ``default``) in
  ``sb3_elmur/hyperparams/ppo_elmur.yml``; the zoo keys that are not PPOELMUR arguments (``n_timesteps``,
  ``n_envs``, ``normalize``, ``env_wrapper``, ...) are not applied and are listed in the result as ``zoo_ignored``
- ``recurrent_ppo``: sb3-contrib RecurrentPPO, ``MlpLstmPolicy``, defaults
- ``recurrent_ppo_tuned``: RecurrentPPO with a hand-picked setting (:data:`RECURRENT_PPO_TUNED`), the best known for
  it on the T-Maze
- ``recurrent_ppo_zoo``: RecurrentPPO with the env's tuned entry in the installed rl_zoo3's ``ppo_lstm.yml``
  (sb3-contrib's own tuning, e.g. ``CartPoleNoVel-v1``; needs the zoo extra)
- ``ppo``: SB3 PPO, ``MlpPolicy`` (no memory)

Hyperparameter values ``"lin_X"`` (``learning_rate``, ``clip_range``) mean a linear decay from X to 0, as in the
RL Zoo. A job with ``normalize`` trains in a ``VecNormalize`` (observations and rewards) and is evaluated with the
frozen observation statistics (saved beside the model as ``.pkl``). Env ids ending in ``NoVel-v<k>`` come from
rl_zoo3 (velocity-masked classic control).

Only the package's public API is used (``PPOELMUR``, the registered ``PassiveTMaze-v0``, ``sb3_elmur.TMaze``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import importlib.metadata
import importlib.resources
import inspect
import json
import os
import shutil
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space

from sb3_elmur import SampledTMaze, SuccessOnPositiveReward, evaluate_success  # noqa: F401  (also registers PassiveTMaze-v0, SampledTMaze-v0)
from sb3_elmur.model import ElmurConfig, retention_horizon
from sb3_elmur.ppo_elmur import EARLIER_CRITIC_SHARE, EARLIER_DEFAULTS, resolve_critic_share

RESULTS = Path(__file__).resolve().parent / "results"
CHECKPOINT_EVERY = 100_000  # env steps between a running job's checkpoints (an interrupted job resumes from the last)
N_ENVS = 8

RECURRENT_PPO_TUNED: dict[str, Any] = {
    "learning_rate": 1e-3,
    "n_steps": 64,
    "batch_size": 128,
    "n_epochs": 10,
    "ent_coef": 0.03,
    "policy_kwargs": {"lstm_hidden_size": 64, "ortho_init": False},
}
# algorithm name -> (library, policy, preset hyperparameters)
ALGORITHMS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "ppo_elmur": ("ppo_elmur", "ElmurPolicy", {}),
    "ppo_elmur_zoo": ("ppo_elmur", "ElmurPolicy", {}),  # preset read from the zoo yml per env
    "recurrent_ppo": ("recurrent_ppo", "MlpLstmPolicy", {}),
    "recurrent_ppo_tuned": ("recurrent_ppo", "MlpLstmPolicy", RECURRENT_PPO_TUNED),
    "recurrent_ppo_zoo": ("recurrent_ppo", "MlpLstmPolicy", {}),  # preset read from rl_zoo3's ppo_lstm.yml per env
    "ppo": ("ppo", "MlpPolicy", {}),
}
DEFAULT_ALGORITHMS = ["ppo_elmur", "recurrent_ppo", "ppo"]
# What a ppo_elmur job learns, by revision of the package: a change that alters it (a default, the minibatching)
# bumps CODE_REVISION, so the cache does not serve results of the earlier code as current ones. Jobs of revision 1
# have no revision field (their cache keys predate it); ``--ppo-elmur-revision 1`` reprints their tables.
# 1: sessions up to the batch_size change; 2: SB3's number of minibatches, sliding-window self-attention by default;
# 3: a critic trunk of its own by default (separate_critic_trunk=True); 4: and a value head on the actor's trunk
# (actor_value_coef=0.5). Both lost a T-Maze check (3: corridor 30; 4: the zero-shot horizon), so the defaults went
# back to revision 2's. 5 and 6 (tried in one session, no job cached): the critic trunk and a value branch on the
# actor's trunk shaped as the critic's at actor_value_coef=0.1 (5), and with the actor's and critic's gradients
# clipped apart (6); 5 lost the T-Maze within one segment (3 seeds of 4), 6 the T-Maze at corridor 30 (seed 0). So
# the defaults went on learning as revision 2 did (the value branch is an option; the revision-2 ablations that set it
# ran it). 7: revision 2's code with a floor of 0.2 on the critic's share of the trunk's gradient (critic_share) and a
# pull of 0.003 towards the uniform policy for discrete actions (uniform_kl_coef) by default. 8: revision 7's code with
# a learned embedding of each token's position in its segment (segment_position=True) by default.
CODE_REVISION = 8  # what today's code learns
PPO_ELMUR_REVISION = CODE_REVISION  # the revision of the jobs a command makes or reads (``--ppo-elmur-revision``)
# Earlier revisions whose code learns exactly as a revision's does, differing only in defaults: a job of theirs that
# set today's defaults explicitly (an ablation of then) is today's job, and its result is adopted, not rerun.
SAME_CODE_REVISIONS: dict[int, list[int]] = {3: [2], 4: [3], 7: [2], 8: [7]}
# The defaults of the revisions in SAME_CODE_REVISIONS[CODE_REVISION], where they differ from today's: today's code
# runs a job of such a revision with them set (under the job's own settings), as that revision ran it, so
# ``--ppo-elmur-revision 2`` still extends or resumes revision 2's tables.
REVISION_DEFAULTS: dict[int, dict[str, Any]] = {
    2: {"critic_share": 0.0, "policy_kwargs": {"uniform_kl_coef": 0.0, "segment_position": False}},
    7: {"policy_kwargs": {"segment_position": False}},
}


# --- environments and wrappers ------------------------------------------------------------------------------------


class FloatBoxObservation(gym.ObservationWrapper):
    """Any Discrete / MultiDiscrete / MultiBinary / Tuple / Box observation as a flat float32 Box.

    Discrete parts become one-hot vectors (gymnasium's ``flatten``), so the same network input reaches every
    algorithm. Needed for Tuple observations (POPGym Autoencode) and for MultiDiscrete ones, with which
    RecurrentPPO 2.9.2 fails to construct (CountRecall, Concentration).
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        flat = spaces.flatten_space(env.observation_space)
        self.observation_space = spaces.Box(
            flat.low.astype(np.float32), flat.high.astype(np.float32), flat.shape, np.float32
        )

    def observation(self, observation):
        return spaces.flatten(self.env.observation_space, observation).astype(np.float32)


class PreviousActionReward(gym.Wrapper):
    """Append the previous action (flattened, one-hot for discrete actions) and reward to a flat Box observation.

    Zeros at the start of an episode. Put it after :class:`FloatBoxObservation`.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        if not isinstance(env.observation_space, spaces.Box) or len(env.observation_space.shape) != 1:
            raise ValueError("PreviousActionReward needs a flat Box observation: apply FloatBoxObservation first")
        self._action_dim = spaces.flatdim(env.action_space)
        obs_space = env.observation_space
        low = np.concatenate([obs_space.low, np.full(self._action_dim + 1, -np.inf)]).astype(np.float32)
        high = np.concatenate([obs_space.high, np.full(self._action_dim + 1, np.inf)]).astype(np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)

    def _extend(self, obs, action_vector: np.ndarray, reward: float) -> np.ndarray:
        return np.concatenate([obs, action_vector, [reward]]).astype(np.float32)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._extend(obs, np.zeros(self._action_dim, np.float32), 0.0), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        action_vector = spaces.flatten(self.env.action_space, action).astype(np.float32)
        return self._extend(obs, action_vector, float(reward)), reward, terminated, truncated, info


def popgym_previous_action(env: gym.Env) -> gym.Env:
    """POPGym's own observation in its paper's experiments: the previous action (POPGym's null action before the
    first) and a flag for the episode's first step, appended by POPGym's ``PreviousAction`` inside ``Antialias``.
    Put it before :class:`FloatBoxObservation`, which flattens the result (discrete actions one-hot)."""
    from popgym.wrappers import Antialias, PreviousAction

    return Antialias(PreviousAction(env.unwrapped))


def minigrid_rgb_partial_view(env: gym.Env) -> gym.Env:
    """MiniGrid's standard wrappers for the agent's own partial view as an RGB image (56x56x3 for the 7x7 view),
    without the mission string; success reported as ``is_success``."""
    from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper

    return SuccessOnPositiveReward(ImgObsWrapper(RGBImgPartialObsWrapper(env)))


WRAPPERS: dict[str, Callable[[gym.Env], gym.Env]] = {
    "float_box": FloatBoxObservation,
    "prev_action_reward": PreviousActionReward,
    "popgym_previous_action": popgym_previous_action,
    "minigrid_rgb_partial": minigrid_rgb_partial_view,
}
# the wrappers that need the env itself rather than the Monitor around it: first in a job's list, inside the Monitor
INSIDE_MONITOR = frozenset({"popgym_previous_action"})


def make_env(env_id: str, n_envs: int, env_kwargs: dict, wrappers: Sequence[str], seed: int, vec_env_cls=None):
    """A VecEnv of ``n_envs`` Monitor-wrapped copies of the env, each then wrapped with ``wrappers`` in order (those of
    :data:`INSIDE_MONITOR` come first in the list and go inside the Monitor)."""
    from stable_baselines3.common.env_util import make_vec_env

    if env_id.startswith("popgym-"):
        import popgym  # noqa: F401  (registers the popgym-* ids)
    if "NoVel-v" in env_id:
        import rl_zoo3.import_envs  # noqa: F401  (registers CartPoleNoVel-v1, PendulumNoVel-v1, ...)
    if env_id.startswith("MiniGrid-"):
        import minigrid  # noqa: F401  (registers the MiniGrid-* ids)

    inner = [name for name in wrappers if name in INSIDE_MONITOR]
    if list(wrappers[: len(inner)]) != inner:
        raise ValueError(f"wrappers {list(wrappers)}: {inner} wrap the env itself and must come first")

    def make(**kwargs) -> gym.Env:
        env = gym.make(env_id, **kwargs)
        for name in inner:
            env = WRAPPERS[name](env)
        return env

    def wrap(env: gym.Env) -> gym.Env:
        for name in wrappers[len(inner) :]:
            env = WRAPPERS[name](env)
        return env

    return make_vec_env(
        make if inner else env_id,
        n_envs=n_envs,
        seed=seed,
        env_kwargs=env_kwargs,
        wrapper_class=wrap,
        vec_env_cls=vec_env_cls,
    )


# --- jobs ---------------------------------------------------------------------------------------------------------


def make_job(
    algorithm: str,
    env_id: str,
    steps: int,
    seed: int = 0,
    env_kwargs: dict | None = None,
    hyperparameters: dict | None = None,
    wrappers: Sequence[str] = (),
    n_envs: int = N_ENVS,
    eval_episodes: int = 100,
    deterministic: bool = True,
    normalize: bool = False,
    eval_both_modes: bool = False,
) -> dict[str, Any]:
    """A job: everything that determines its result (and its cache key)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}: one of {', '.join(ALGORITHMS)}")
    for name in wrappers:
        if name not in WRAPPERS:
            raise ValueError(f"unknown wrapper {name!r}: one of {', '.join(WRAPPERS)}")
    job = dict(
        algorithm=algorithm,
        env_id=env_id,
        env_kwargs=dict(env_kwargs or {}),
        wrappers=list(wrappers),
        seed=int(seed),
        steps=int(steps),
        n_envs=int(n_envs),
        hyperparameters=dict(hyperparameters or {}),
        eval_episodes=int(eval_episodes),
        deterministic=bool(deterministic),
    )
    if normalize:  # only present when set, so the keys of earlier jobs stay valid
        job["normalize"] = True
    if ALGORITHMS[algorithm][0] == "ppo_elmur" and PPO_ELMUR_REVISION > 1:
        job["ppo_elmur_revision"] = PPO_ELMUR_REVISION
    if eval_both_modes:  # also evaluated with the other of deterministic / sampled actions
        job["eval_both_modes"] = True
    json.dumps(job)  # must be JSON-serialisable (the cache key hashes it)
    return job


def add_revision_argument(parser: argparse.ArgumentParser) -> None:
    """``--ppo-elmur-revision N``: the jobs (and cached results) of an earlier revision of the package."""
    parser.add_argument(
        "--ppo-elmur-revision",
        type=int,
        default=None,
        help=f"ppo_elmur jobs of this package revision (default {PPO_ELMUR_REVISION}, the current code)",
    )


def add_compile_argument(parser: argparse.ArgumentParser) -> None:
    """``--compile``: PPOELMUR jobs that run train with ``compile_update=True`` and ``compile_acting=True`` (faster;
    the same results up to rounding)."""
    parser.add_argument(
        "--compile",
        action="store_true",
        help="PPOELMUR trainings run their updates and acting steps through torch.compile (not part of the job: "
        "the same computation)",
    )


def apply_revision(args: argparse.Namespace) -> None:
    global PPO_ELMUR_REVISION
    if args.ppo_elmur_revision is not None:
        PPO_ELMUR_REVISION = args.ppo_elmur_revision


def job_key(job: dict[str, Any]) -> str:
    """Hash of the job's canonical JSON (12 hex digits)."""
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:12]


def job_stem(job: dict[str, Any]) -> str:
    env = job["env_id"].replace("/", "_")
    return f"{job['algorithm']}__{env}__s{job['seed']}__{job_key(job)}"


def job_paths(job: dict[str, Any], name: str, results: Path = RESULTS) -> tuple[Path, Path]:
    """The job's result JSON and model zip (VecNormalize statistics, if any: the zip's stem + ``.pkl``)."""
    stem = results / name / job_stem(job)
    return stem.with_suffix(".json"), stem.with_suffix(".zip")


def zoo_hyperparameters(env_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """PPOELMUR arguments from the packaged zoo yml entry of ``env_id`` (else ``default``), and the ignored keys."""
    import yaml

    text = importlib.resources.files("sb3_elmur").joinpath("hyperparams/ppo_elmur.yml").read_text()
    entries = yaml.safe_load(text)
    entry = dict(entries.get(env_id, entries["default"]))
    from sb3_elmur import PPOELMUR

    accepted = set(inspect.signature(PPOELMUR.__init__).parameters) - {"self", "policy", "env", "_init_setup_model"}
    if isinstance(entry.get("policy_kwargs"), str):
        entry["policy_kwargs"] = _literal_dict_call(entry["policy_kwargs"])
    used = {k: v for k, v in entry.items() if k in accepted}
    ignored = {k: v for k, v in entry.items() if k not in accepted}
    return used, ignored


def _literal_dict_call(text: str) -> dict[str, Any]:
    """``"dict(a=1, b=2)"`` -> ``{"a": 1, "b": 2}`` (literal values only)."""
    call = ast.parse(text, mode="eval").body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "dict") or call.args:
        raise ValueError(f"expected dict(key=literal, ...), got {text!r}")
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def recurrent_ppo_zoo_hyperparameters(env_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """RecurrentPPO arguments from the installed rl_zoo3's ``ppo_lstm.yml`` entry of ``env_id``, and ignored keys."""
    import rl_zoo3
    import torch.nn as nn
    import yaml

    entries = yaml.safe_load((Path(rl_zoo3.__file__).parent / "hyperparams" / "ppo_lstm.yml").read_text())
    if env_id not in entries:
        raise ValueError(f"rl_zoo3's ppo_lstm.yml has no entry for {env_id!r}")
    entry = dict(entries[env_id])
    if isinstance(entry.get("policy_kwargs"), str):
        entry["policy_kwargs"] = eval(entry["policy_kwargs"], {"nn": nn, "dict": dict})  # the zoo evaluates it too
    ignored = {k: entry.pop(k) for k in ("n_envs", "n_timesteps", "policy", "normalize") if k in entry}
    return entry, ignored


def schedules(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """``"lin_X"`` values of ``learning_rate`` / ``clip_range`` as SB3 linear schedules from X to 0."""
    from stable_baselines3.common.utils import LinearSchedule

    out = dict(hyperparameters)
    for key in ("learning_rate", "clip_range"):
        if isinstance(out.get(key), str) and out[key].startswith("lin_"):
            out[key] = LinearSchedule(float(out[key][4:]), 0.0, 1.0)
    return out


def resolve_hyperparameters(job: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The constructor arguments of the job's algorithm (its revision's defaults where they differ from today's, the
    preset, then the job's own on top) and ignored zoo keys."""
    library, _, preset = ALGORITHMS[job["algorithm"]]
    ignored: dict[str, Any] = {}
    if job["algorithm"] == "ppo_elmur_zoo":
        preset, ignored = zoo_hyperparameters(job["env_id"])
    if job["algorithm"] == "recurrent_ppo_zoo":
        preset, ignored = recurrent_ppo_zoo_hyperparameters(job["env_id"])
    if library == "ppo_elmur":
        preset = merge_settings(revision_settings(job.get("ppo_elmur_revision", 1)), preset)
    return schedules(merge_settings(preset, job["hyperparameters"])), ignored


def revision_settings(revision: int) -> dict[str, Any]:
    """What today's code must be given to learn as PPOELMUR of ``revision`` did ({} for today's); ValueError for a
    revision whose code was not today's."""
    if revision == CODE_REVISION:
        return {}
    if revision not in REVISION_DEFAULTS:
        raise ValueError(
            f"today's code learns as revision {CODE_REVISION}; it cannot run a job of revision {revision} (its cached "
            "results still reprint)"
        )
    return REVISION_DEFAULTS[revision]


def merge_settings(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments ``top`` over ``base``, their ``policy_kwargs`` merged the same way."""
    merged = {**base, **top}
    if policy_kwargs := {**base.get("policy_kwargs", {}), **top.get("policy_kwargs", {})}:
        merged["policy_kwargs"] = policy_kwargs
    return merged


def algorithm_class(library: str):
    if library == "ppo_elmur":
        from sb3_elmur import PPOELMUR

        return PPOELMUR
    if library == "recurrent_ppo":
        from sb3_contrib import RecurrentPPO

        return RecurrentPPO
    from stable_baselines3 import PPO

    return PPO


# constructor arguments that do not change what a job learns (or that every job sets itself)
NOT_SETTINGS = {
    "self",
    "policy",
    "env",
    "seed",
    "device",
    "verbose",
    "tensorboard_log",
    "_init_setup_model",
    "compile_update",
    "compile_acting",
}
NOT_POLICY_SETTINGS = {"self", "observation_space", "action_space", "lr_schedule"}
VERSIONED = (
    "sb3_elmur",
    "stable_baselines3",
    "sb3_contrib",
    "rl_zoo3",
    "torch",
    "gymnasium",
    "numpy",
    "popgym",
    "minigrid",
)


def policy_name(library: str, observation_space: spaces.Space) -> str:
    """The library's policy for the observation space: Dict -> MultiInput, image -> Cnn, else the MLP policy."""
    if isinstance(observation_space, spaces.Dict):
        return {"ppo_elmur": "MultiInputElmurPolicy", "recurrent_ppo": "MultiInputLstmPolicy"}.get(
            library, "MultiInputPolicy"
        )
    if is_image_space(observation_space):
        return {"ppo_elmur": "CnnElmurPolicy", "recurrent_ppo": "CnnLstmPolicy"}.get(library, "CnnPolicy")
    return {"ppo_elmur": "ElmurPolicy", "recurrent_ppo": "MlpLstmPolicy"}.get(library, "MlpPolicy")


def _defaults(cls: type, exclude: set[str]) -> dict[str, Any]:
    """Default constructor arguments of ``cls``; where its ``__init__`` passes ``*args`` / ``**kwargs`` on, those
    of its bases too (a subclass's default wins)."""
    defaults: dict[str, Any] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        for p in parameters:
            if p.name not in exclude and p.default is not inspect.Parameter.empty:
                defaults.setdefault(p.name, p.default)
        if not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters):
            break
    return defaults


def _describe(value: Any) -> Any:
    """JSON for a setting: classes and functions by qualified name, other objects by their repr."""
    if isinstance(value, dict):
        return {k: _describe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if inspect.isclass(value) or inspect.isfunction(value):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def resolved_configuration(job: dict[str, Any], defaults_only: bool = False) -> dict[str, Any]:
    """Every setting of the job's algorithm and policy after defaults (PPO arguments, policy arguments and, for
    PPOELMUR, every :class:`sb3_elmur.model.ElmurConfig` field), as JSON. Recorded in each result; a cached result is
    served only while it still equals this, so a default changed later never mixes into a table silently. With
    ``defaults_only``, the library's defaults alone (no preset, no hyperparameters of the job)."""
    library, _, _ = ALGORITHMS[job["algorithm"]]
    hyperparameters = {} if defaults_only else resolve_hyperparameters(job)[0]
    cls = algorithm_class(library)
    settings = {**_defaults(cls, NOT_SETTINGS), **hyperparameters}
    env = training_env(job, 1, hyperparameters)
    name = policy_name(library, env.observation_space)
    env.close()
    given = dict(settings.pop("policy_kwargs", None) or {})
    policy = {**_defaults(cls.policy_aliases[name], NOT_POLICY_SETTINGS), **given}
    if library == "ppo_elmur":
        elmur_fields = {f.name for f in dataclasses.fields(ElmurConfig)}
        config = ElmurConfig(**{k: v for k, v in policy.items() if k in elmur_fields})
        policy.update(dataclasses.asdict(config))
        settings["critic_share"] = resolve_critic_share(settings["critic_share"], config.separate_critic_trunk)
    settings["policy"], settings["policy_kwargs"] = name, policy
    return _describe(settings)


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries a result depends on (None: not installed)."""
    versions: dict[str, str | None] = {}
    for package in VERSIONED:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def load_model(job: dict[str, Any], name: str, results: Path = RESULTS, device: str = "auto"):
    """The trained model of a finished job. Raises ValueError if a PPOELMUR model loads with ELMUR settings other
    than those its result records (the model evaluated would not be the one trained)."""
    library, _, _ = ALGORITHMS[job["algorithm"]]
    json_path, model_path = job_paths(job, name, results)
    model = algorithm_class(library).load(model_path, device=device)
    recorded = json.loads(json_path.read_text()).get("configuration") if json_path.exists() else None
    if library == "ppo_elmur" and recorded is not None:
        loaded, trained = dataclasses.asdict(model.policy.config), recorded["policy_kwargs"]
        differ = [k for k, v in loaded.items() if k in trained and trained[k] != v]
        if differ:
            raise ValueError(
                f"{model_path} loads with {', '.join(f'{k}={loaded[k]!r}' for k in differ)}, but its result records "
                f"{', '.join(f'{k}={trained[k]!r}' for k in differ)}: the checkpoint does not name the settings it "
                "was trained with"
            )
    return model


def training_env(job: dict[str, Any], n_envs: int, hyperparameters: dict[str, Any]):
    """The job's training envs (in a ``VecNormalize`` with ``normalize``, which turns image spaces into float Boxes)."""
    env = make_env(job["env_id"], n_envs, job["env_kwargs"], job["wrappers"], job["seed"])
    if not job.get("normalize"):
        return env
    from stable_baselines3.common.vec_env import VecNormalize

    return VecNormalize(env, gamma=hyperparameters.get("gamma", 0.99))


def evaluation_env(job: dict[str, Any], training_env=None):
    """Fresh envs for evaluation (seed + 1000); with ``normalize``, frozen observation statistics of the training env
    (or of the ``.pkl`` saved beside the model, passed as ``training_env``: a path)."""
    from stable_baselines3.common.vec_env import VecNormalize, sync_envs_normalization

    env = make_env(job["env_id"], job["n_envs"], job["env_kwargs"], job["wrappers"], job["seed"] + 1000)
    if not job.get("normalize"):
        return env
    if isinstance(training_env, (str, Path)):
        env = VecNormalize.load(str(training_env), env)
    else:
        env = VecNormalize(env)
        sync_envs_normalization(training_env, env)
    env.training, env.norm_reward = False, False
    return env


def _progress_callback(total: int, every: int, checkpoint: Callable[[Any, list[dict]], None] | None = None):
    from stable_baselines3.common.callbacks import BaseCallback

    class Progress(BaseCallback):
        """Print the timesteps every ``every`` steps; record a learning curve at each rollout end; call
        ``checkpoint(model, curve)`` at the first rollout start past each multiple of :data:`CHECKPOINT_EVERY` steps."""

        def __init__(self):
            super().__init__()
            self.curve: list[dict[str, float]] = []
            self.start = time.perf_counter()
            self.first_step = self.next_print = self.next_checkpoint = 0

        def _on_training_start(self) -> None:  # num_timesteps is where this process begins (later than 0 on resume)
            self.first_step = self.num_timesteps
            self.next_print = (self.num_timesteps // every + 1) * every if every > 0 else 0
            self.next_checkpoint = (self.num_timesteps // CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY

        def _on_step(self) -> bool:
            if every > 0 and self.num_timesteps >= self.next_print:
                rate = (self.num_timesteps - self.first_step) / (time.perf_counter() - self.start)
                eta = max((total - self.num_timesteps) / max(rate, 1e-9), 0.0)
                print(f"  {self.num_timesteps}/{total} steps, {rate:.0f} steps/s, ~{eta:.0f} s left", flush=True)
                self.next_print = (self.num_timesteps // every + 1) * every
            return True

        def _on_rollout_start(self) -> None:  # every step so far has been trained on: a consistent checkpoint
            if checkpoint is not None and self.num_timesteps >= self.next_checkpoint:
                checkpoint(self.model, self.curve)
                self.next_checkpoint = (self.num_timesteps // CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY

        def _on_rollout_end(self) -> None:
            episodes = self.model.ep_info_buffer
            if episodes:
                point = dict(steps=self.num_timesteps, mean_return=float(np.mean([e["r"] for e in episodes])))
                if self.model.ep_success_buffer:
                    point["success"] = float(np.mean(self.model.ep_success_buffer))
                self.curve.append(point)

    return Progress()


def checkpoint_progress_path(model_path: Path) -> Path:
    """A running job's checkpoint record beside its final model (JSON, not named ``.json``: the cache globs those).
    It names the checkpoint's model zip and VecNormalize statistics and is written last, atomically."""
    return model_path.with_name(model_path.stem + ".checkpoint")


def save_model(model, zip_path: Path) -> Path | None:
    """Save the model as ``zip_path`` and, where it trains in a VecNormalize, its statistics beside it (``.pkl``,
    whose path is returned; None without one)."""
    model.save(zip_path)
    env = model.get_env()
    if not hasattr(env, "obs_rms"):
        return None
    pkl_path = zip_path.with_suffix(".pkl")
    env.save(str(pkl_path))
    return pkl_path


def save_checkpoint(
    model, job: dict[str, Any], curve: list[dict], wall_s: float, resumed_at: list[int], model_path: Path
):
    """Model (with its optimizer), VecNormalize statistics and progress, so an interrupted job resumes here."""
    steps = int(model.num_timesteps)
    zip_path = model_path.with_name(f"{model_path.stem}.checkpoint-{steps}.zip")
    pkl_path = save_model(model, zip_path)
    progress = dict(
        steps=steps,
        budget=job["steps"],
        model=zip_path.name,
        vec_normalize=pkl_path.name if pkl_path else None,
        configuration=resolved_configuration(job),
        wall_s=wall_s,
        curve=curve,
        resumed_at=resumed_at,
    )
    write_json(checkpoint_progress_path(model_path), progress)
    remove_checkpoint(model_path, keep={zip_path.name, pkl_path.name if pkl_path else ""})


def remove_checkpoint(model_path: Path, keep: set[str] = frozenset()) -> None:
    """Delete a job's checkpoint files (all but ``keep``; the record too when nothing is kept)."""
    for path in model_path.parent.glob(f"{model_path.stem}.checkpoint-*"):
        if path.name not in keep:
            path.unlink()
    if not keep:
        checkpoint_progress_path(model_path).unlink(missing_ok=True)


def load_checkpoint(job: dict[str, Any], model_path: Path, env, compiled: dict[str, bool] | None = None):
    """The model, env and progress of the job's last checkpoint, or None (none, or made with other settings).
    ``compiled``: PPOELMUR's compile options to turn on for the resumed training (not part of the job)."""
    progress_path = checkpoint_progress_path(model_path)
    if not progress_path.exists():
        return None
    progress = json.loads(progress_path.read_text())
    if changed := changed_settings(progress["configuration"], job):
        print(f"  the checkpoint was made with other settings ({', '.join(changed)}): starting over", flush=True)
        remove_checkpoint(model_path)
        return None
    if progress["vec_normalize"]:
        from stable_baselines3.common.vec_env import VecNormalize

        env = VecNormalize.load(str(model_path.with_name(progress["vec_normalize"])), env.venv)
    library, _, _ = ALGORITHMS[job["algorithm"]]
    model = algorithm_class(library).load(model_path.with_name(progress["model"]), env=env, **(compiled or {}))
    model.set_random_seed(job["seed"] + model.num_timesteps)
    print(f"  resuming at {model.num_timesteps} steps", flush=True)
    return model, env, progress


def evaluate(model, job: dict[str, Any], env=None) -> dict[str, Any]:
    """Mean return (and success rate, where the env reports ``is_success``) over the job's evaluation episodes."""
    if env is None:
        env = evaluation_env(job)
    success, mean_return, returns = evaluate_success(
        model, env, job["eval_episodes"], job["deterministic"], return_episode_returns=True
    )
    env.close()
    return dict(mean_return=mean_return, std_return=float(np.std(returns)), success=success)


def run_job(
    job: dict[str, Any], model_path: Path | None = None, progress_every: int = 50_000, compile: bool = False
) -> dict[str, Any]:
    """Train and evaluate one job (one thread); save the model to ``model_path`` if given. ``compile``: a
    PPOELMUR job's updates and acting steps run compiled (the same computation up to rounding, so not part of the job
    or its configuration; recorded in the result)."""
    import torch

    torch.set_num_threads(1)
    library, _, _ = ALGORITHMS[job["algorithm"]]
    hyperparameters, ignored = resolve_hyperparameters(job)
    env = training_env(job, job["n_envs"], hyperparameters)
    wall_before, resumed_at, curve = 0.0, [], []
    compiled = dict(compile_update=True, compile_acting=True) if compile and library == "ppo_elmur" else {}
    if compiled:  # the compiled code of an earlier job in this process (another model, other shapes) is of no use
        torch.compiler.reset()  # here, and it counts towards torch.compile's limit of recompilations per function
    if model_path is not None and (resumed := load_checkpoint(job, model_path, env, compiled)) is not None:
        model, env, progress = resumed
        wall_before, curve = progress["wall_s"], progress["curve"]
        resumed_at = [*progress["resumed_at"], int(model.num_timesteps)]
    else:
        model = algorithm_class(library)(
            policy_name(library, env.observation_space), env, seed=job["seed"], **hyperparameters, **compiled
        )
    policy = policy_name(library, env.observation_space)
    start = time.perf_counter()

    def checkpoint(model, curve: list[dict]) -> None:
        assert model_path is not None
        save_checkpoint(model, job, curve, wall_before + time.perf_counter() - start, resumed_at, model_path)

    callback = _progress_callback(job["steps"], progress_every, checkpoint if model_path else None)
    callback.curve = curve
    model.learn(job["steps"] - model.num_timesteps, callback=callback, reset_num_timesteps=False)
    wall = wall_before + time.perf_counter() - start
    if model_path is not None:
        save_model(model, model_path)
    scores = evaluate(model, job, evaluation_env(job, env))
    if job.get("eval_both_modes"):  # also with the other kind of actions (a policy that must guess shows 0.5)
        other = {**job, "deterministic": not job["deterministic"]}
        scores["other_mode"] = evaluate(model, other, evaluation_env(other, env))
    env.close()
    result = dict(
        job=job,
        key=job_key(job),
        hyperparameters_used=_describe(hyperparameters),
        zoo_ignored=ignored,
        configuration=resolved_configuration(job),
        versions=library_versions(),
        policy=policy,
        steps_trained=int(model.num_timesteps),  # whole rollouts: SB3 PPO's 2048 x 8 steps can pass the budget
        wall_s=wall,
        curve=callback.curve,
        **scores,
    )
    if resumed_at:  # trained in several processes: the steps at which each later one resumed
        result["resumed_at"] = resumed_at
    if library == "ppo_elmur":
        result["elmur"] = elmur_config(model)
        result["compile_update"] = bool(model.compile_update)
        result["compile_acting"] = bool(model.compile_acting)
    return result


class StaleResult(RuntimeError):
    """A cached result made with settings that differ from what the job resolves to today."""


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically: the file appears only once it is complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one per process: no two writers share it
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def cached(path: Path, compute: Callable[[], Any]) -> Any:
    """The JSON at ``path``; else ``compute()``, written there (:func:`write_json`). The one cache of the benchmarks:
    training jobs, evaluations and probes all go through it."""
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    write_json(path, result)
    return result


def probe_path(job: dict[str, Any], name: str, probe: str, episodes: int, results: Path = RESULTS) -> Path:
    """Where :func:`cached_probe` keeps a probe's measure of the job's model over ``episodes`` episodes."""
    return results / name / probe / f"{job_stem(job)}__e{episodes}.json"


def cached_probe(
    job: dict[str, Any], name: str, probe: str, episodes: int, compute: Callable[[], Any], results: Path = RESULTS
) -> Any:
    """What the probe ``probe`` measured of a finished job's model in ``episodes`` episodes, cached as
    ``<name>/<probe>/<job stem>__e<episodes>.json``: the JSON if there, else ``compute()`` (written there) if the job's
    result and model zip are on disk, else None (model zips are not committed, the probes' JSONs are)."""
    path = probe_path(job, name, probe, episodes, results)
    if not path.exists() and (
        not job_paths(job, name, results)[1].exists() or cached_result(job, name, results) is None
    ):
        return None
    return cached(path, compute)


def _flat(configuration: dict[str, Any]) -> dict[str, Any]:
    """A configuration with its policy arguments as ``policy_kwargs.<name>`` settings beside the others."""
    policy = {f"policy_kwargs.{k}": v for k, v in configuration["policy_kwargs"].items()}
    return {**{k: v for k, v in configuration.items() if k != "policy_kwargs"}, **policy}


def changed_settings(recorded: dict[str, Any], job: dict[str, Any]) -> list[str]:
    """The settings of a recorded configuration (:func:`resolved_configuration`) that differ from the job's today.

    A setting the record lacks did not exist when it was made: it is a difference only where the job sets it away
    from its default (a new option comes with a default that keeps the old behaviour; a change of behaviour bumps
    ``CODE_REVISION`` instead)."""
    was = {k: v for k, v in _flat(recorded).items() if k not in NOT_SETTINGS}  # recorded before it was left out
    now = _flat(resolved_configuration(job))
    added = [k for k in now if k not in was]  # settings that did not exist when it was made
    default = _flat(resolved_configuration(job, defaults_only=True)) if added else {}
    return sorted(
        k for k in was.keys() | now.keys() if k not in now or (was[k] != now[k] if k in was else now[k] != default[k])
    )


def other_revision(job: dict[str, Any]) -> bool:
    """Whether ``job`` is a ppo_elmur job of a revision other than today's code (``--ppo-elmur-revision``)."""
    return ALGORITHMS[job["algorithm"]][0] == "ppo_elmur" and job.get("ppo_elmur_revision", 1) != CODE_REVISION


def cached_result(job: dict[str, Any], name: str, results: Path = RESULTS) -> dict | None:
    """The job's cached result, or None if it has not been run. Raises :class:`StaleResult` if the result records a
    configuration other than the job's today (:func:`changed_settings`): a default changed since it ran. (A job of
    another revision is served as recorded: today's defaults are not the ones it ran with.)"""
    json_path, _ = job_paths(job, name, results)
    if not json_path.exists():
        return None
    result = json.loads(json_path.read_text())
    if other_revision(job):
        return result
    if "configuration" in result and (changed := changed_settings(result["configuration"], job)):
        raise StaleResult(
            f"{json_path} was made with other settings ({', '.join(changed)} differ from today's); bump "
            "CODE_REVISION in benchmarks/harness.py after changing a default, or use another --name"
        )
    return result


def equivalent_result(job: dict[str, Any], results: Path = RESULTS) -> tuple[Path, dict] | None:
    """A result, under any benchmark name, of a ppo_elmur job of one of ``SAME_CODE_REVISIONS`` whose hyperparameters
    resolve to exactly the job's configuration today (everything else of the job equal): the same training."""
    same_code = SAME_CODE_REVISIONS.get(job.get("ppo_elmur_revision", 1), [])
    if not same_code:  # nothing to look for: no need to read every cached result
        return None

    def rest(j: dict[str, Any]) -> dict[str, Any]:  # what besides its settings and revision makes a job
        return {k: v for k, v in j.items() if k not in ("hyperparameters", "ppo_elmur_revision")}

    for path in sorted(results.glob("*/*.json")):
        result = json.loads(path.read_text())
        other = result.get("job", {})
        if other.get("ppo_elmur_revision") not in same_code or "configuration" not in result:
            continue
        if rest(other) != rest(job):
            continue
        if not changed_settings(with_earlier_defaults(result["configuration"]), job):
            return path, result
    return None


def with_earlier_defaults(configuration: dict[str, Any]) -> dict[str, Any]:
    """A recorded PPOELMUR configuration with the ELMUR knobs it lacks at the values they had before they were
    recorded (``sb3_elmur.ppo_elmur.EARLIER_DEFAULTS``, ``EARLIER_CRITIC_SHARE``), not at today's defaults: a knob
    whose default changed since is then compared as it was."""
    policy = {**EARLIER_DEFAULTS, **configuration["policy_kwargs"]}
    return {"critic_share": EARLIER_CRITIC_SHARE, **configuration, "policy_kwargs": policy}


def adopt(job: dict[str, Any], name: str, source: Path, result: dict, results: Path = RESULTS) -> dict:
    """Cache ``result`` (:func:`equivalent_result`, from the JSON at ``source``) as the job's, with its model zip (and
    VecNormalize statistics) if they are there, recording where it came from."""
    json_path, model_path = job_paths(job, name, results)
    for suffix in (".zip", ".pkl"):
        if source.with_suffix(suffix).exists():
            json_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.with_suffix(suffix), model_path.with_suffix(suffix))
    adopted = {
        **result,
        "job": job,
        "key": job_key(job),
        "adopted_from": {"path": str(source.relative_to(results)), "job": result["job"]},
    }
    write_json(json_path, adopted)
    print(f"adopted {source} as {json_path.name}: {summary(adopted)}", flush=True)
    return adopted


def cached_job(
    job: dict[str, Any],
    name: str,
    results: Path = RESULTS,
    progress_every: int = 50_000,
    compile: bool = False,
) -> dict:
    """The job's cached result, else an equivalent one adopted (:func:`equivalent_result`), else run it and cache it
    (JSON and model zip under ``results/name/``)."""
    if (result := cached_result(job, name, results)) is not None:
        return result
    if other_revision(job):
        revision_settings(job.get("ppo_elmur_revision", 1))  # a ValueError before anything runs
    if (found := equivalent_result(job, results)) is not None:
        return adopt(job, name, *found, results=results)
    json_path, model_path = job_paths(job, name, results)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"running {job_stem(job)}: {job['algorithm']} {job['env_id']} {job['env_kwargs']} seed {job['seed']}",
        flush=True,
    )
    result = run_job(job, model_path, progress_every, compile)
    write_json(json_path, result)  # the JSON appears only once the job (and its model) is complete
    remove_checkpoint(model_path)
    print(f"done {job_stem(job)}: {summary(result)}", flush=True)
    return result


def run_jobs(
    jobs: Iterable[dict],
    name: str,
    results: Path = RESULTS,
    progress_every: int = 50_000,
    parallel: int = 1,
    compile: bool = False,
) -> list[dict]:
    """Run (or read) the jobs, ``parallel`` at a time (one process and one torch thread each); results in order."""
    jobs = list(jobs)
    if parallel <= 1:
        return [cached_job(job, name, results, progress_every, compile) for job in jobs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(parallel) as pool:
        n = len(jobs)
        return list(pool.map(cached_job, jobs, [name] * n, [results] * n, [progress_every] * n, [compile] * n))


def cached_results(name: str, results: Path = RESULTS) -> list[dict]:
    """Every cached job result of a benchmark."""
    return [json.loads(p.read_text()) for p in sorted((results / name).glob("*.json"))]


def in_progress(name: str, results: Path = RESULTS) -> list[str]:
    """One line per job of a benchmark with a checkpoint on this disk (started, not finished): its steps so far and
    the training success (or mean return) of its last 100 training episodes."""
    lines = []
    for path in sorted((results / name).glob("*.checkpoint")):
        progress = json.loads(path.read_text())
        budget = f" of {progress['budget']:,}" if "budget" in progress else ""
        curve = progress["curve"]  # one point per rollout: the mean over the last 100 training episodes
        if not curve:
            score = "no episode finished yet"
        elif curve[-1].get("success") is None:
            score = f"training mean return {curve[-1]['mean_return']:.3f}"
        else:
            score = f"training success {curve[-1]['success']:.2f}"
        lines.append(f"{path.stem}: {progress['steps']:,}{budget} steps, {score}")
    return lines


def print_in_progress(name: str, results: Path = RESULTS) -> None:
    """Print :func:`in_progress`'s lines under a heading, if any job of the benchmark is in progress."""
    if running := in_progress(name, results):
        print("\nIn progress (a checkpoint on this disk; the command that started a job resumes it):")
        print("\n".join(f"- {line}" for line in running))


def summary(result: dict) -> str:
    success = "" if result.get("success") is None else f"success {result['success']:.2f}, "
    return f"{success}mean return {result['mean_return']:.3f}, {result['wall_s']:.0f} s"


# --- ELMUR horizon ------------------------------------------------------------------------------------------------


def elmur_config(model) -> dict[str, Any]:
    """``memory_size``, ``segment_len``, ``lru_alpha`` (and the other ELMUR knobs) of a PPOELMUR model."""
    config = model.policy.config
    return {
        k: getattr(config, k) for k in ("d_model", "n_layers", "n_heads", "memory_size", "segment_len", "lru_alpha")
    }


def horizon(memory_size: int, segment_len: int, lru_alpha: float, eps: float = 0.05) -> float:
    """:func:`sb3_elmur.model.retention_horizon` (the closed form lives next to the memory rule)."""
    return retention_horizon(memory_size, segment_len, lru_alpha, eps)


# --- table and plots ----------------------------------------------------------------------------------------------


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(results: Sequence[dict]) -> str:
    """One row per (algorithm, env, env kwargs, wrappers, steps, hyperparameters): seeds, success and mean return
    (mean over seeds). PPOELMUR rows name the package revision of their jobs (r1, r2, ...)."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        job = r["job"]
        revision = job.get("ppo_elmur_revision", 1 if ALGORITHMS[job["algorithm"]][0] == "ppo_elmur" else None)
        group = (
            job["algorithm"] + (f" (r{revision})" if revision else ""),
            job["env_id"],
            json.dumps(job["env_kwargs"], sort_keys=True),
            "+".join(job["wrappers"] + (["VecNormalize"] if job.get("normalize") else [])) or "-",
            job["steps"],
            json.dumps(job["hyperparameters"], sort_keys=True) if job["hyperparameters"] else "-",
        )
        groups.setdefault(group, []).append(r)
    lines = [
        "| algorithm | env | env kwargs | wrappers | budget (trained) | hyperparameters | seeds | success "
        "| mean return | per seed | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (algorithm, env_id, kwargs, wrappers, steps, hp), rows in groups.items():
        successes = [r["success"] for r in rows if r.get("success") is not None]
        success = statistics.mean(successes) if successes else None
        mean_return = statistics.mean(r["mean_return"] for r in rows)
        wall = statistics.mean(r["wall_s"] for r in rows)
        trained = max(r.get("steps_trained", steps) for r in rows)
        per_seed = ", ".join(
            f"s{r['job']['seed']}: "
            + (_fmt(r["success"]) if r.get("success") is not None else f"{r['mean_return']:.4g}")
            for r in sorted(rows, key=lambda r: r["job"]["seed"])
        )
        lines.append(
            f"| {algorithm} | {env_id} | {kwargs} | {wrappers} | {steps} ({trained}) | {hp} | {len(rows)} | "
            f"{_fmt(success)} | {mean_return:.3f} | {per_seed} | {wall:.0f} |"
        )
    return "\n".join(lines)


def pyplot():
    """matplotlib.pyplot with the Agg backend (ImportError if matplotlib is missing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` as PNG (creating the folder) and close it."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    pyplot().close(fig)
    return path


def plot_learning_curves(results: Sequence[dict], path: Path) -> Path:
    """One panel per env: the rolling training return (success where reported) against steps, per job."""
    plt = pyplot()
    envs = sorted({(r["job"]["env_id"], json.dumps(r["job"]["env_kwargs"], sort_keys=True)) for r in results})
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.5), squeeze=False)
    for ax, (env_id, kwargs) in zip(axes[0], envs, strict=True):
        for r in results:
            job = r["job"]
            if (job["env_id"], json.dumps(job["env_kwargs"], sort_keys=True)) != (env_id, kwargs):
                continue
            curve = r.get("curve") or []
            metric = "success" if curve and all("success" in p for p in curve) else "mean_return"
            ax.plot(
                [p["steps"] for p in curve],
                [p[metric] for p in curve],
                marker="." if len(curve) < 20 else None,
                label=f"{job['algorithm']} s{job['seed']}",
            )
            ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(f"{env_id} {kwargs if kwargs != '{}' else ''}", fontsize=8)
        ax.set_xlabel("environment steps")
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_final(results: Sequence[dict], path: Path) -> Path:
    """Bar chart: per env, the evaluation metric (success if reported, else mean return) of each algorithm."""
    plt = pyplot()
    algorithms = sorted({r["job"]["algorithm"] for r in results})
    envs = sorted({r["job"]["env_id"] + " " + json.dumps(r["job"]["env_kwargs"], sort_keys=True) for r in results})
    width = 0.8 / max(len(algorithms), 1)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(envs) * len(algorithms) * 0.6 + 2), 3.5))
    for i, algorithm in enumerate(algorithms):
        values = []
        for env in envs:
            rows = [
                r
                for r in results
                if r["job"]["algorithm"] == algorithm
                and r["job"]["env_id"] + " " + json.dumps(r["job"]["env_kwargs"], sort_keys=True) == env
            ]
            metric = [r["success"] if r.get("success") is not None else r["mean_return"] for r in rows]
            values.append(statistics.mean(metric) if metric else np.nan)
        ax.bar(np.arange(len(envs)) + i * width, values, width, label=algorithm)
    ax.set_xticks(np.arange(len(envs)) + 0.4 - width / 2)
    ax.set_xticklabels([e.replace(" {}", "") for e in envs], rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("success (else mean return)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def write_plots(results: Sequence[dict], directory: Path) -> list[Path]:
    """Learning curves and final-metric bars as PNG under ``directory`` (skipped if matplotlib is missing)."""
    try:
        pyplot()
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    return [
        plot_learning_curves(results, directory / "learning_curves.png"),
        plot_final(results, directory / "final.png"),
    ]


# --- CLI ----------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="benchmark name: results go to benchmarks/results/<name>/")
    parser.add_argument("--env", default="PassiveTMaze-v0")
    parser.add_argument("--env-kwargs", type=json.loads, default={}, help="JSON dict")
    parser.add_argument("--wrappers", nargs="*", default=[], choices=list(WRAPPERS))
    parser.add_argument("--algorithms", nargs="+", default=DEFAULT_ALGORITHMS, choices=list(ALGORITHMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=100_000, help="training budget per job (environment steps)")
    parser.add_argument(
        "--hyperparams", type=json.loads, default={}, help="JSON dict {algorithm: {argument: value}} on the presets"
    )
    parser.add_argument("--normalize", action="store_true", help="train in a VecNormalize (obs and reward)")
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--stochastic", action="store_true", help="evaluate with sampled actions")
    parser.add_argument(
        "--eval-both-modes", action="store_true", help="also evaluate with the other of deterministic / sampled actions"
    )
    parser.add_argument("--progress-every", type=int, default=50_000, help="print the timesteps every N steps")
    parser.add_argument("--table-only", action="store_true", help="only the table and plots of the cached results")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at a time (one process each)")
    add_compile_argument(parser)
    parser.add_argument("--results", type=Path, default=RESULTS)
    add_revision_argument(parser)
    args = parser.parse_args(argv)
    apply_revision(args)

    if args.table_only:
        results = cached_results(args.name, args.results)
    else:
        jobs = [
            make_job(
                algorithm,
                args.env,
                args.steps,
                seed,
                args.env_kwargs,
                args.hyperparams.get(algorithm, {}),
                args.wrappers,
                eval_episodes=args.eval_episodes,
                deterministic=not args.stochastic,
                normalize=args.normalize,
                eval_both_modes=args.eval_both_modes,
            )
            for algorithm in args.algorithms
            for seed in args.seeds
        ]
        results = run_jobs(jobs, args.name, args.results, args.progress_every, args.jobs, args.compile)
    print()
    print(markdown_table(results))
    print_in_progress(args.name, args.results)
    for path in write_plots(results, args.results / args.name):
        print(f"plot: {path}")


if __name__ == "__main__":
    main()
