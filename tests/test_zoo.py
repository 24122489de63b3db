"""RL Zoo / Optuna integration: the sampler, the registration, the start-up hook; slow: the zoo's commands in fresh
virtual environments after ``pip install .`` and ``pip install -e .``."""

import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import pytest
from stable_baselines3.common.env_util import make_vec_env

from sb3_elmur import PPOELMUR
from sb3_elmur.zoo import (
    ALGO,
    HYPERPARAMS_PATH,
    _patch_experiment_manager,
    convert_ppo_elmur_params,
    patch_module,
    sample_ppo_elmur_params,
)
from tests.conftest import zoo_optimize_arguments

ROOT = Path(__file__).resolve().parents[1]


class RandomTrial:
    """Duck-typed stand-in for optuna.Trial (so the fast tests need no optuna): uniform random choices."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.params, self.user_attrs = {}, {}

    def suggest_int(self, name, low, high, log=False):
        self.params[name] = self.rng.randint(low, high)
        return self.params[name]

    def suggest_float(self, name, low, high, log=False):
        self.params[name] = self.rng.uniform(low, high)
        return self.params[name]

    def suggest_categorical(self, name, choices):
        self.params[name] = self.rng.choice(choices)
        return self.params[name]

    def set_user_attr(self, key, value):
        self.user_attrs[key] = value


def check_constructs(hyperparams):
    env = make_vec_env("PassiveTMaze-v0", n_envs=2, env_kwargs=dict(corridor_length=4))
    model = PPOELMUR("ElmurPolicy", env, device="cpu", **hyperparams)
    tokens = model.sequence_segments * model.policy.segment_len
    assert model.batch_size % tokens == 0
    for key, value in hyperparams["policy_kwargs"].items():
        assert getattr(model.policy.config, key) == value
    env.close()


@pytest.mark.parametrize("seed", range(8))
def test_sampled_params_construct_ppo_elmur(seed):
    trial = RandomTrial(seed)
    hyperparams = sample_ppo_elmur_params(trial, 0, 2, {})
    check_constructs(hyperparams)
    # the converter alone, from the stored raw parameters, gives the same (as --trial-id does)
    assert convert_ppo_elmur_params(trial.params) == hyperparams
    assert trial.user_attrs["batch_size"] == hyperparams["batch_size"]


def test_sampler_with_optuna():
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(4):
        trial = study.ask()
        check_constructs(sample_ppo_elmur_params(trial, 0, 2, {}))
        study.tell(trial, 0.0)
    fixed = optuna.trial.FixedTrial(study.trials[0].params)
    assert sample_ppo_elmur_params(fixed, 0, 2, {}) == convert_ppo_elmur_params(study.trials[0].params)


ZOO_ONLY_KEYS = ("policy", "n_envs", "n_timesteps", "normalize", "env_wrapper", "env_kwargs")


@pytest.mark.parametrize(
    "entry", ["default", "PassiveTMaze-v0", "PassiveTMaze30-v0", "CartPoleNoVel-v1", "PendulumNoVel-v1"]
)
def test_yml_entries_construct_ppo_elmur(entry):
    """The packaged yml's entries, read as the zoo reads them ("lin_X" schedules, policy_kwargs strings)."""
    yaml = pytest.importorskip("yaml")
    from stable_baselines3.common.utils import LinearSchedule

    hyperparams = dict(yaml.safe_load(HYPERPARAMS_PATH.read_text())[entry])
    env_id = "PassiveTMaze-v0" if entry == "default" else entry
    if "NoVel" in env_id:
        pytest.importorskip("rl_zoo3")
        import rl_zoo3.import_envs  # noqa: F401
    env = make_vec_env(env_id, n_envs=hyperparams["n_envs"], env_kwargs=hyperparams.get("env_kwargs"))
    policy = hyperparams["policy"]
    for key in ZOO_ONLY_KEYS:
        hyperparams.pop(key, None)
    hyperparams["learning_rate"] = LinearSchedule(float(hyperparams["learning_rate"].removeprefix("lin_")), 0.0, 1.0)
    hyperparams["policy_kwargs"] = eval(hyperparams["policy_kwargs"], {"dict": dict})
    model = PPOELMUR(policy, env, device="cpu", **hyperparams)
    assert model.policy.segment_len == hyperparams["policy_kwargs"]["segment_len"]
    env.close()


def test_patch_module_registers_idempotently():
    utils = types.ModuleType("rl_zoo3.utils")
    utils.ALGOS = {"ppo": object}
    opt = types.ModuleType("rl_zoo3.hyperparams_opt")
    opt.HYPERPARAMS_SAMPLER, opt.HYPERPARAMS_CONVERTER = {}, {}
    for _ in range(2):
        patch_module(utils)
        patch_module(opt)
        patch_module(types.ModuleType("rl_zoo3.other"))
    assert utils.ALGOS == {"ppo": object, ALGO: PPOELMUR}
    assert opt.HYPERPARAMS_SAMPLER == {ALGO: sample_ppo_elmur_params}
    assert opt.HYPERPARAMS_CONVERTER == {ALGO: convert_ppo_elmur_params}


def test_experiment_manager_config_path():
    class ExperimentManager:
        def __init__(self, args, algo, env_id, log_folder="logs", config=None):
            self.algo, self.config = algo, config or f"zoo/hyperparams/{algo}.yml"

    _patch_experiment_manager(ExperimentManager)
    _patch_experiment_manager(ExperimentManager)  # idempotent
    assert ExperimentManager(None, ALGO, "X").config == str(HYPERPARAMS_PATH)
    assert ExperimentManager(None, ALGO, "X", "logs", "mine.yml").config == "mine.yml"  # -conf wins
    assert ExperimentManager(None, "ppo", "X").config == "zoo/hyperparams/ppo.yml"
    assert HYPERPARAMS_PATH.is_file()
    assert (ROOT / "hyperparams" / "ppo_elmur.yml").read_text() == HYPERPARAMS_PATH.read_text()


def test_hook_is_lean_and_idempotent():
    code = (
        "import sys, sb3_elmur_zoo_hook as h; h.install(); h.install(); "
        "n = sum(getattr(f, '_sb3_elmur_zoo_finder', False) for f in sys.meta_path); "
        "print(n, sorted(m for m in ('torch', 'rl_zoo3', 'optuna', 'sb3_elmur') if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if k != "SB3_ELMUR_NO_ZOO_HOOK"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1 []"  # one finder however often installed; nothing heavy imported
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "SB3_ELMUR_NO_ZOO_HOOK": "1"},
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "0 []"  # opted out: no finder, at start (.pth) or from install()


def test_hook_patches_a_fresh_zoo_import():
    pytest.importorskip("rl_zoo3")
    code = (
        "import sb3_elmur_zoo_hook as h; h.install(); "
        "from rl_zoo3.utils import ALGOS; from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER as S; "
        "from rl_zoo3.exp_manager import ExperimentManager as E; "
        "print('ppo_elmur' in ALGOS, 'ppo_elmur' in S, getattr(E.__init__, '_sb3_elmur', False))"
    )
    env = {k: v for k, v in os.environ.items() if k != "SB3_ELMUR_NO_ZOO_HOOK"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "True True True"


# ------------------------------------------------------------------------------------------------------------------
# Slow: the zoo's own commands in fresh virtual environments
# ------------------------------------------------------------------------------------------------------------------

SETUP_FILES = ["pyproject.toml", "sb3_elmur_zoo_hook.py", "startup/sb3_elmur_zoo.pth", "startup/sb3_elmur_zoo.start"]
TINY = [
    "-params",
    "n_envs:2",
    "n_steps:64",
    "batch_size:128",
    "n_epochs:1",
    "policy_kwargs:dict(d_model=16, n_layers=1, n_heads=1, segment_len=8)",
]


def fresh_venv(mode: str) -> Path:
    """A venv with ``pip install [-e] ".[zoo]"`` of this checkout, cached in the temp dir by a hash of the setup
    files (a regular install gets the current sources re-installed on every use)."""
    digest = hashlib.sha256(f"{mode} {ROOT}".encode())
    for name in SETUP_FILES:
        digest.update((ROOT / name).read_bytes())
    venv = Path(tempfile.gettempdir()) / f"sb3_elmur_zoo_venv_{mode}_{digest.hexdigest()[:12]}"
    python = venv / "bin" / "python"
    spec = [".[zoo]"] if mode == "regular" else ["-e", ".[zoo]"]
    if not (venv / "ready").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)  # first: a bare torch requirement pulls CUDA
        subprocess.run([*pip, *spec], cwd=ROOT, check=True)
        (venv / "ready").touch()
    elif mode == "regular":
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", "."], cwd=ROOT)
    return python


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "SB3_ELMUR_NO_ZOO_HOOK"}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def zoo(python, *args, cwd, env=None, check=True):
    env = clean_env(**(env or {}))
    result = subprocess.run([str(python), "-m", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["regular", "editable"])
def test_zoo_commands_in_fresh_venv(mode, tmp_path):
    python = fresh_venv(mode)
    common = ["--algo", ALGO, "--env", "PassiveTMaze-v0", "--num-threads", "1"]

    out = zoo(python, "rl_zoo3.train", *common, "-n", "512", "--eval-freq", "-1", "--seed", "0", *TINY, cwd=tmp_path)
    assert "ppo_elmur.yml" in out.stdout and (mode == "regular") == ("site-packages" in out.stdout)
    assert (tmp_path / "logs" / ALGO / "PassiveTMaze-v0_1" / "PassiveTMaze-v0.zip").is_file()
    out = zoo(python, "rl_zoo3.enjoy", *common, "-f", "logs/", "-n", "50", "--no-render", cwd=tmp_path)
    assert "Episode Reward" in out.stdout
    # -i: continue training the saved agent (a new run folder, starting from the loaded weights)
    trained = tmp_path / "logs" / ALGO / "PassiveTMaze-v0_1" / "PassiveTMaze-v0.zip"
    out = zoo(
        python, "rl_zoo3.train", *common, "-n", "256", "--eval-freq", "-1", "-i", str(trained), *TINY, cwd=tmp_path
    )
    assert "Loading pretrained agent" in out.stdout
    assert (tmp_path / "logs" / ALGO / "PassiveTMaze-v0_2" / "PassiveTMaze-v0.zip").is_file()

    # Hook off: the zoo's own command does not know ppo_elmur, the sb3_elmur wrappers do
    off = {"SB3_ELMUR_NO_ZOO_HOOK": "1"}
    assert zoo(python, "rl_zoo3.enjoy", *common, "-f", "logs/", cwd=tmp_path, env=off, check=False).returncode != 0
    out = zoo(python, "sb3_elmur.enjoy", *common, "-f", "logs/", "-n", "30", "--no-render", cwd=tmp_path, env=off)
    assert "Episode Reward" in out.stdout
    out = zoo(python, "sb3_elmur.train", *common, "-n", "128", "--eval-freq", "-1", *TINY, cwd=tmp_path, env=off)
    assert (tmp_path / "logs" / ALGO / "PassiveTMaze-v0_2" / "PassiveTMaze-v0.zip").is_file()
    zoo(python, "rl_zoo3.record_video", *common[:4], "-f", "logs/", "-n", "20", "-o", "videos", cwd=tmp_path)
    assert list((tmp_path / "videos").glob("*.mp4"))

    # -optimize: two workers complete one study on one journal file, then --trial-id reloads a trial
    storage = str(tmp_path / "study.log")
    optimize = [*common, *zoo_optimize_arguments(256), "--storage", storage]
    env = clean_env()
    workers = [
        subprocess.Popen(
            [str(python), "-m", "rl_zoo3.train", *optimize, "--seed", str(seed)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in (1, 2)
    ]
    outputs = [worker.communicate(timeout=900)[0] for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), "\n".join(o[-3000:] for o in outputs)
    count = (
        "import optuna; s = optuna.load_study(study_name='s', storage=optuna.storages.JournalStorage("
        f"optuna.storages.journal.JournalFileBackend({storage!r}))); "
        "print(sorted((t.number, t.state.name) for t in s.trials))"
    )
    out = subprocess.run([str(python), "-c", count], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[(0, 'COMPLETE'), (1, 'COMPLETE')]"
    assert all("Number of finished trials:  2" in o for o in outputs)
    out = zoo(python, "rl_zoo3.train", *common, "-n", "128", "--eval-freq", "-1", "--storage", storage,
              "--study-name", "s", "--trial-id", "1", "-params", "n_envs:1", cwd=tmp_path)  # fmt: skip
    assert "Loading from Optuna study" in out.stdout


@pytest.mark.slow
def test_startup_hook_cost():
    python = fresh_venv("regular")
    out = subprocess.run(
        [str(python), str(ROOT / "benchmarks" / "startup_time.py"), "--runs", "10"], capture_output=True, text=True
    )
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
