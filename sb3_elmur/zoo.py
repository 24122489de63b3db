"""RL Zoo (rl_zoo3) and Optuna glue for PPOELMUR: the only module of the package that touches rl_zoo3 or optuna.

- :func:`register` makes ``--algo ppo_elmur`` work in the zoo's commands: it adds PPOELMUR to
  ``rl_zoo3.utils.ALGOS``, :func:`sample_ppo_elmur_params` / :func:`convert_ppo_elmur_params` to
  ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` / ``HYPERPARAMS_CONVERTER`` (``-optimize``, ``--trial-id``), and
  points ExperimentManager's default config for ``ppo_elmur`` at the packaged ``hyperparams/ppo_elmur.yml`` (an
  explicit ``-conf`` still wins). The start-up hook (``sb3_elmur_zoo_hook``) calls :func:`patch_module` as the zoo's
  modules are imported, so the zoo's own ``python -m rl_zoo3.train ...`` works with nothing else typed.
- :func:`run_zoo_command` backs ``python -m sb3_elmur.train`` / ``enjoy`` / ``record_video`` (hook not needed).
- :func:`sample_ppo_elmur_params` and :func:`optuna_storage` are usable from user code without the zoo (see
  ``examples/optuna_sweep.py``).

rl_zoo3 and optuna are imported inside the functions only: ``import sb3_elmur.zoo`` needs neither.
"""

from __future__ import annotations

import functools
import inspect
import random
import runpy
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sb3_elmur.model import ElmurConfig
from sb3_elmur.ppo_elmur import PPOELMUR

if TYPE_CHECKING:
    import optuna

ALGO = "ppo_elmur"
HYPERPARAMS_PATH = Path(__file__).resolve().parent / "hyperparams" / f"{ALGO}.yml"
ZOO_MODULES = ("rl_zoo3.utils", "rl_zoo3.hyperparams_opt", "rl_zoo3.exp_manager")


# ----------------------------------------------------------------------------------------------------------------
# Optuna search space
# ----------------------------------------------------------------------------------------------------------------


def sample_ppo_elmur_params(
    trial: optuna.Trial, n_actions: int = 0, n_envs: int = 1, additional_args: dict | None = None
) -> dict[str, Any]:
    """Sample PPOELMUR hyperparameters: PPO's and the ELMUR policy's (``policy_kwargs``).

    Same signature as the zoo's samplers (``n_actions`` and ``additional_args`` are unused). The raw parameters are
    those of :func:`convert_ppo_elmur_params`; ``batch_size`` is sampled as a number of whole training sequences
    (``sequence_segments * segment_len`` steps each).
    """
    params = {
        # PPO
        "n_steps_pow": trial.suggest_int("n_steps_pow", 5, 10),  # 32 .. 1024 steps per env and rollout
        "sequences_per_batch_pow": trial.suggest_int("sequences_per_batch_pow", 0, 3),  # 1 .. 8 sequences
        "sequence_segments": trial.suggest_categorical("sequence_segments", [1, 2, 4]),
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 1e-4, 0.03, log=True),
        "one_minus_gae_lambda": trial.suggest_float("one_minus_gae_lambda", 1e-4, 0.1, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 2e-3, log=True),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "clip_range": trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3]),
        "n_epochs": trial.suggest_categorical("n_epochs", [3, 5, 10]),
        # ELMUR
        "segment_len": trial.suggest_categorical("segment_len", [8, 16, 32]),
        "memory_size": trial.suggest_categorical("memory_size", [1, 2, 4, 8]),
        "lru_alpha": trial.suggest_float("lru_alpha", 0.1, 1.0),
        "d_model": trial.suggest_categorical("d_model", [32, 64, 128]),
        "n_layers": trial.suggest_int("n_layers", 1, 3),
        "n_heads": trial.suggest_categorical("n_heads", [1, 2, 4]),  # every choice divides every d_model
        "memory_gradient": trial.suggest_categorical("memory_gradient", [True, False]),
    }
    hyperparams = convert_ppo_elmur_params(params)
    for key in ("gamma", "gae_lambda", "n_steps", "batch_size"):  # show the real values in the study
        trial.set_user_attr(key, hyperparams[key])
    return hyperparams


def convert_ppo_elmur_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """Turn a trial's raw parameters (``study.trials[i].params``) into PPOELMUR keyword arguments."""
    params = dict(sampled_params)
    policy_kwargs = {
        key: params.pop(key)
        for key in ("segment_len", "memory_size", "lru_alpha", "d_model", "n_layers", "n_heads", "memory_gradient")
        if key in params
    }
    tokens = params["sequence_segments"] * policy_kwargs.get("segment_len", ElmurConfig.segment_len)
    hyperparams = {
        "n_steps": 2 ** params.pop("n_steps_pow"),
        "batch_size": tokens * 2 ** params.pop("sequences_per_batch_pow"),
        "gamma": 1 - params.pop("one_minus_gamma"),
        "gae_lambda": 1 - params.pop("one_minus_gae_lambda"),
        **params,
        "policy_kwargs": policy_kwargs,
    }
    return hyperparams


def optuna_storage(storage: str | None):
    """An Optuna storage for ``storage``: a ``.log`` path becomes a journal file (as in the zoo), else an RDB URL.

    ``None`` is in-memory; ``sqlite:///study.db`` and ``study.log`` are for processes on one machine;
    ``postgresql://user:password@host/db`` for processes on several machines.
    """
    import optuna

    if storage is not None and storage.endswith(".log"):
        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(storage))
    if storage is not None and "://" in storage:
        return rdb_storage(storage)
    return storage


# what a database says when another process created Optuna's tables (or their version row) a moment earlier
_SCHEMA_RACE = ("already exists", "unique constraint", "duplicate key", "database is locked")


def rdb_storage(url: str, attempts: int = 30) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage for ``url`` (SQLite, PostgreSQL, ...), safe for workers that start at the same moment.

    Optuna creates the schema of a fresh database without a lock, so of two workers started together on one the
    second can fail (``table ... already exists``, ``UNIQUE constraint failed: alembic_version``). Here such a
    failure is retried after a short random wait, by when the schema is complete; any other error is raised.
    """
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
            message = f"{error} {error.__cause__}".lower()  # Optuna wraps some database errors
            if attempt == attempts - 1 or not any(s in message for s in _SCHEMA_RACE):
                raise
            time.sleep(0.1 + 0.4 * random.random())
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------------------------------------------
# Registration with the zoo
# ----------------------------------------------------------------------------------------------------------------


def _patch_experiment_manager(exp_manager_class: type) -> None:
    """Make ExperimentManager read ``ppo_elmur``'s hyperparameters from the packaged yml unless ``-conf`` is given,
    and create a database storage's schema race-free (:func:`rdb_storage`) before ``-optimize`` workers use it."""
    original = exp_manager_class.__init__  # type: ignore[misc]
    if getattr(original, "_sb3_elmur", False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        arguments = signature.bind(self, *args, **kwargs).arguments
        if self.algo == ALGO and arguments.get("config") is None:
            self.config = str(HYPERPARAMS_PATH)
        storage = arguments.get("storage")
        if self.algo == ALGO and arguments.get("optimize_hyperparameters") and storage and "://" in storage:
            rdb_storage(storage).engine.dispose()  # the schema, race-free, before the zoo's create_study opens it

    __init__._sb3_elmur = True  # type: ignore[attr-defined]
    exp_manager_class.__init__ = __init__  # type: ignore[misc]


def patch_module(module: ModuleType) -> None:
    """Register ppo_elmur in one of the zoo's modules (idempotent); other modules are left alone."""
    name = module.__name__
    if name == "rl_zoo3.utils":
        module.ALGOS[ALGO] = PPOELMUR
    elif name == "rl_zoo3.hyperparams_opt":
        module.HYPERPARAMS_SAMPLER[ALGO] = sample_ppo_elmur_params
        module.HYPERPARAMS_CONVERTER[ALGO] = convert_ppo_elmur_params
    elif name == "rl_zoo3.exp_manager":
        _patch_experiment_manager(module.ExperimentManager)


def register() -> None:
    """Import the zoo's registry modules and register ppo_elmur in each (idempotent; needs rl_zoo3 and optuna)."""
    import importlib

    for name in ZOO_MODULES:
        patch_module(importlib.import_module(name))


def run_zoo_command(module: str) -> None:
    """Register, then run one of the zoo's command modules as ``python -m <module>`` would (argv is kept)."""
    register()
    sys.argv[0] = module
    runpy.run_module(module, run_name="__main__", alter_sys=True)
