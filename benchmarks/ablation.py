"""Ablations for learning through the memory: train each variant on the same tasks and seeds, print one table.

    python -m benchmarks.ablation                                   # all variants, tasks and seeds below
    python -m benchmarks.ablation --variants default memory_size_4 --tasks tmaze30 --seeds 0 1
    python -m benchmarks.ablation --jobs 2                          # two trainings at a time (1 thread each)
    python -m benchmarks.ablation --table-only                      # the table of what is cached
    python -m benchmarks.ablation --tasks horizon300 --table-only --lengths 30 100 300   # saved models, zero-shot
    python -m benchmarks.ablation --tasks horizon300 --table-only --probe-corridor 150   # the cue in their memory

Each (variant, task, seed) is one job; its result is cached as JSON under benchmarks/results/ablation/ so an
interrupted run resumes. Columns: final success rate (100 deterministic episodes on fresh envs; mean return where
the task has no success), the success rate of the last 100 training episodes (stochastic actions), training steps
until that rolling success first reached 0.95, and wall time. A task may be evaluated on another env than it trains on
(``horizon300``: trained on corridors of 1..30, evaluated at 300). Each job's trained model is saved beside its
JSON (``.zip``, not committed), so ``--lengths`` can ask a T-Maze model for other corridor lengths later and
``--probe-corridor`` can follow the cue in its memory.
"""

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import harness

RESULTS = harness.RESULTS / "ablation"


# the library defaults are the "default" variant; every other variant changes one thing, except the m4_* ones:
# memory_size 4 and a constant learning rate 3e-4 (the defaults before these measurements) with one change
M4_CONSTANT_LR = {"learning_rate": 3e-4, "policy_kwargs": {"memory_size": 4}}
VARIANTS: dict[str, dict] = {
    "default": {},
    "memory_size_2": {"policy_kwargs": {"memory_size": 2}},
    "memory_size_4": {"policy_kwargs": {"memory_size": 4}},
    "constant_lr": {"learning_rate": 3e-4},
    "lr_6e-4": {"learning_rate": "lin_6e-4"},
    "reconstruction": {"policy_kwargs": {"reconstruction_coef": 1.0}},
    "no_features_skip": {"policy_kwargs": {"features_skip": False}},
    "no_memory_gradient": {"policy_kwargs": {"memory_gradient": False}},
    "no_entropy": {"ent_coef": 0.0},
    "more_entropy": {"ent_coef": 0.03},
    "critic_share_005": {"critic_share": 0.05},
    "critic_share_02": {"critic_share": 0.2},
    "previous_action": {"policy_kwargs": {"previous_action": True}},
    "previous_action_embedding": {"policy_kwargs": {"previous_action": True, "previous_action_embedding": True}},
    "d_model_128": {"policy_kwargs": {"d_model": 128}},
    "d_model_128_lr_1e-4": {"learning_rate": "lin_1e-4", "policy_kwargs": {"d_model": 128}},
    "d_model_128_epochs_4": {"n_epochs": 4, "policy_kwargs": {"d_model": 128}},
    "d_model_128_adam_eps_1e-5": {"policy_kwargs": {"d_model": 128, "optimizer_kwargs": {"eps": 1e-5}}},
    "adam_betas_09": {"policy_kwargs": {"optimizer_kwargs": {"betas": (0.9, 0.9)}}},
    "d_model_128_adam_betas_09": {"policy_kwargs": {"d_model": 128, "optimizer_kwargs": {"betas": (0.9, 0.9)}}},
    "d_model_128_adam_beta2_099": {"policy_kwargs": {"d_model": 128, "optimizer_kwargs": {"betas": (0.9, 0.99)}}},
    "d_model_128_more_entropy": {"ent_coef": 0.03, "policy_kwargs": {"d_model": 128}},
    "d_model_128_target_kl_002": {"target_kl": 0.02, "policy_kwargs": {"d_model": 128}},
    "d_model_128_norm_first": {"policy_kwargs": {"d_model": 128, "norm_first": True}},
    "d_model_128_amsgrad": {"policy_kwargs": {"d_model": 128, "optimizer_kwargs": {"amsgrad": True}}},
    "d_model_128_uniform_kl_0003": {"policy_kwargs": {"d_model": 128, "uniform_kl_coef": 0.003}},
    "d_model_128_uniform_kl_001": {"policy_kwargs": {"d_model": 128, "uniform_kl_coef": 0.01}},
    "d_model_128_uniform_kl_003": {"policy_kwargs": {"d_model": 128, "uniform_kl_coef": 0.03}},
    "uniform_kl_0003": {"policy_kwargs": {"uniform_kl_coef": 0.003}},
    "uniform_kl_001": {"policy_kwargs": {"uniform_kl_coef": 0.01}},
    "critic_share_02_uniform_kl_0003": {"critic_share": 0.2, "policy_kwargs": {"uniform_kl_coef": 0.003}},
    "critic_share_02_uniform_kl_001": {"critic_share": 0.2, "policy_kwargs": {"uniform_kl_coef": 0.01}},
    "critic_share_02_uniform_kl_0003_previous_action": {
        "critic_share": 0.2,
        "policy_kwargs": {"uniform_kl_coef": 0.003, "previous_action": True},
    },
    "segment_position": {"policy_kwargs": {"segment_position": True}},
    # overrides a task's own segment_len: for the tasks that train with the default (cartpole, cartpole_novel)
    "segment_len_32": {"policy_kwargs": {"segment_len": 32}},
    "attention_segments_2": {"policy_kwargs": {"attention_segments": 2}},
    "recency_bias": {"policy_kwargs": {"recency_bias": True}},
    "attention_segments_2_recency_bias": {"policy_kwargs": {"attention_segments": 2, "recency_bias": True}},
    # the gradient through the memory reaches back 8 segments instead of 4
    "sequence_segments_8": {"sequence_segments": 8},
    "m4_constant_lr": M4_CONSTANT_LR,
    "m4_constant_lr_reconstruction": {
        **M4_CONSTANT_LR,
        "policy_kwargs": {"memory_size": 4, "reconstruction_coef": 1.0},
    },
    "m4_constant_lr_more_entropy": {**M4_CONSTANT_LR, "ent_coef": 0.03},
}
# cue crosses 3 segment boundaries
TMAZE30 = {
    "env_id": "PassiveTMaze-v0",
    "env_kwargs": {"corridor_length": 30},
    "steps": 300_000,
    "policy_kwargs": {"segment_len": 10},
}
TASKS: dict[str, dict] = {
    "tmaze30": TMAZE30,
    # the same, its time limit a termination (no value bootstrapped beyond the junction's step)
    "tmaze30_terminal": {**TMAZE30, "env_kwargs": {"corridor_length": 30, "last_step_terminates": True}},
    # self-attention alone carries the cue
    "tmaze10": {
        "env_id": "PassiveTMaze-v0",
        "env_kwargs": {"corridor_length": 10},
        "steps": 150_000,
        "policy_kwargs": {"segment_len": 16},
    },
    "cartpole": {"env_id": "CartPole-v1", "env_kwargs": {}, "steps": 100_000, "policy_kwargs": {}},
    # the slow check's: velocities inferred from positions, observations in a VecNormalize (reward 450 or more)
    "cartpole_novel": {
        "env_id": "CartPoleNoVel-v1",
        "env_kwargs": {},
        "steps": 50_000,
        "policy_kwargs": {},
        "vec_normalize": True,
    },
    # the zero-shot horizon (the slow check's): trained on corridors drawn from 1..30, asked at corridor 300
    "horizon300": {
        "env_id": "SampledTMaze-v0",
        "env_kwargs": {"max_length": 30},
        "steps": 300_000,
        "policy_kwargs": {"segment_len": 10},
        "eval_env_id": "PassiveTMaze-v0",
        "eval_env_kwargs": {"corridor_length": 300},
    },
}


def run_job(
    variant: str,
    task: str,
    seed: int,
    log_folder: str | None = None,
    probes: tuple = (),
    model_path: Path | None = None,
) -> dict:
    """Train and evaluate one job; ``log_folder``: also write SB3's logger rows (one per update) there as CSV;
    ``probes``: further SB3 callbacks for the training (e.g. ones that log more per update); ``model_path``: save
    the trained model there (a zip; a VecNormalize's statistics beside it, ``.pkl``)."""
    import numpy as np
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.vec_env import VecNormalize, sync_envs_normalization

    from sb3_elmur import PPOELMUR, evaluate_success

    torch.set_num_threads(1)
    spec = TASKS[task]
    # "lin_X" as in the harness; a job of an earlier revision with today's code runs with that revision's defaults
    changes = harness.schedules(
        harness.merge_settings(harness.revision_settings(harness.PPO_ELMUR_REVISION), VARIANTS[variant])
    )
    policy_kwargs = {**spec["policy_kwargs"], **changes.pop("policy_kwargs", {})}

    class StepsToThreshold(BaseCallback):
        def __init__(self):
            super().__init__()
            self.reached: int | None = None

        def _on_step(self) -> bool:
            buffer = self.model.ep_success_buffer
            if self.reached is None and len(buffer) == buffer.maxlen and np.mean(buffer) >= 0.95:
                self.reached = self.num_timesteps
            return True

    env = harness.make_env(spec["env_id"], 8, spec["env_kwargs"], (), seed)
    if spec.get("vec_normalize"):
        env = VecNormalize(env)
    model = PPOELMUR("ElmurPolicy", env, policy_kwargs=policy_kwargs, seed=seed, **changes)
    if log_folder is not None:
        model.set_logger(configure(log_folder, ["csv"]))
    callback = StepsToThreshold()
    start = time.perf_counter()
    model.learn(spec["steps"], callback=[callback, *probes])
    wall = time.perf_counter() - start
    if model_path is not None:
        harness.save_model(model, model_path)

    eval_env = harness.make_env(
        spec.get("eval_env_id", spec["env_id"]), 8, spec.get("eval_env_kwargs", spec["env_kwargs"]), (), seed + 1000
    )
    if spec.get("vec_normalize"):  # the training statistics, frozen; returns unnormalised
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
        sync_envs_normalization(env, eval_env)
    success, mean_return = evaluate_success(model, eval_env, 100)
    return dict(
        variant=variant,
        task=task,
        seed=seed,
        steps=spec["steps"],
        success=success,
        mean_return=mean_return,
        steps_to_095=callback.reached,
        final_train_success=float(np.mean(model.ep_success_buffer)) if model.ep_success_buffer else None,
        wall_s=wall,
    )


def cached_job(variant: str, task: str, seed: int) -> dict:
    def run() -> dict:
        result = run_job(variant, task, seed, model_path=result_path(variant, task, seed).with_suffix(".zip"))
        print(f"done: {variant} {task} seed {seed}: {result}", flush=True)
        return result

    return harness.cached(result_path(variant, task, seed), run)


def result_path(variant: str, task: str, seed: int) -> Path:
    """The cached result of a job of the package revision ``harness.PPO_ELMUR_REVISION`` (revision 1: no suffix)."""
    revision = harness.PPO_ELMUR_REVISION
    return RESULTS / f"{variant}__{task}__{seed}{'' if revision == 1 else f'__r{revision}'}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--jobs", type=int, default=1, help="trainings at a time")
    parser.add_argument("--table-only", action="store_true", help="print what is cached, train nothing")
    parser.add_argument(
        "--lengths",
        nargs="+",
        type=int,
        default=[],
        help="T-Maze tasks: also each saved model's zero-shot success at these corridor lengths",
    )
    parser.add_argument(
        "--probe-corridor",
        type=int,
        default=0,
        help="T-Maze tasks: also the cue's imprint on each saved model's memory, write by write, at this corridor",
    )
    harness.add_revision_argument(parser)
    args = parser.parse_args()
    harness.apply_revision(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    jobs = [(v, t, s) for t in args.tasks for v in args.variants for s in args.seeds]
    if args.table_only:
        paths = [result_path(v, t, s) for v, t, s in jobs]
        results = [json.loads(p.read_text()) for p in paths if p.exists()]
    else:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(cached_job, *zip(*jobs, strict=True)))

    print(
        "\n| task | variant | seeds | success (each seed) | last 100 training episodes | mean return (each seed) "
        "| steps to 0.95 | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for task in args.tasks:
        for variant in args.variants:
            rows = [r for r in results if r["task"] == task and r["variant"] == variant]
            if not rows:
                continue
            success = ", ".join("-" if r["success"] is None else f"{r['success']:.2f}" for r in rows)
            training = ", ".join(
                "-" if r.get("final_train_success") is None else f"{r['final_train_success']:.2f}" for r in rows
            )
            reached = ", ".join("-" if r["success"] is None else str(r["steps_to_095"] or "never") for r in rows)
            mean_return = ", ".join(f"{r['mean_return']:.2f}" for r in rows)
            wall = statistics.mean(r["wall_s"] for r in rows)
            print(
                f"| {task} | {variant} | {len(rows)} | {success} | {training} | {mean_return} | {reached} "
                f"| {wall:.0f} |"
            )
    if args.lengths or args.probe_corridor:
        models = saved_tmaze_models(jobs)
        saved = {(variant, task, seed) for variant, task, seed, _ in models}
        for variant, task, seed in jobs:
            if "TMaze" in TASKS[task]["env_id"] and (variant, task, seed) not in saved:
                print(f"{variant} {task} seed {seed}: model zip not on disk (zips are not committed), not probed")
        if args.lengths:
            print(zero_shot_table(models, args.lengths))
        if args.probe_corridor:
            print(imprint_table(models, args.probe_corridor))


def zero_shot_table(models: list[tuple[str, str, int, Any]], lengths: list[int]) -> str:
    """Success of each saved T-Maze model (:func:`saved_tmaze_models`) at each PassiveTMaze corridor length: 100
    episodes (evaluation seed, and the torch seed of the sampled actions: the job's + 2000), deterministic actions
    and, in brackets, sampled ones."""
    import torch

    from benchmarks.tmaze_horizon import batched_success

    header = " | ".join(f"corridor {n}" for n in lengths)
    rows = [f"\n| task | variant | seed | {header} |", "|---|---|---|" + "---|" * len(lengths)]
    for variant, task, seed, model in models:
        cells = []
        for n in lengths:
            deterministic = batched_success(model, n, seed=seed + 2000)["success"]
            torch.manual_seed(seed + 2000)  # the sampled actions, reproducibly
            sampled = batched_success(model, n, seed=seed + 2000, deterministic=False)["success"]
            cells.append(f"{deterministic:.2f} ({sampled:.2f})")
        rows.append(f"| {task} | {variant} | {seed} | {' | '.join(cells)} |")
    return "\n".join(rows)


def saved_tmaze_models(jobs: list[tuple[str, str, int]]) -> list[tuple[str, str, int, Any]]:
    """(variant, task, seed, model) of every T-Maze job whose model zip is on disk, loaded on the CPU (one torch
    thread)."""
    import torch

    from sb3_elmur import PPOELMUR

    torch.set_num_threads(1)
    models = []
    for variant, task, seed in jobs:
        path = result_path(variant, task, seed).with_suffix(".zip")
        if "TMaze" in TASKS[task]["env_id"] and path.exists():
            models.append((variant, task, seed, PPOELMUR.load(path, device="cpu")))
    return models


def imprint_table(models: list[tuple[str, str, int, Any]], corridor_length: int) -> str:
    """The cue's imprint on each saved T-Maze model's actor memory (:func:`saved_tmaze_models`) after each write
    (``separation`` of :func:`benchmarks.tmaze_horizon.retention`: the distance between the mean memories of the two
    cues over the mean memory's size) in 400 episodes at ``corridor_length``, deterministic actions."""
    from benchmarks.tmaze_horizon import record_memory, retention

    rows = ["\n| task | variant | seed | the cue's imprint after writes 1, 2, 3, ... |", "|---|---|---|---|"]
    for variant, task, seed, model in models:
        points = retention(*record_memory(model, corridor_length, 400, seed=3000))
        imprints = ", ".join(f"{point['separation']:.2f}" for point in points)
        rows.append(f"| {task} | {variant} | {seed} | {imprints} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
