"""POPGym Easy tasks: PPOELMUR against RecurrentPPO and memoryless PPO at an equal budget.

    pip install popgym==1.0.7 mazelib                                   # or: pip install -e ".[envs]"
    python -m benchmarks.popgym_suite                                  # every Easy task, 500k steps, seed 0
    python -m benchmarks.popgym_suite --steps 1000000 --seeds 0 1 2
    python -m benchmarks.popgym_suite --prev-action-reward             # observation + previous action and reward
    python -m benchmarks.popgym_suite --previous-action                # POPGym's protocol: + previous action
    python -m benchmarks.popgym_suite --tasks RepeatPreviousEasy --steps 2048 --name popgym_smoke
    python -m benchmarks.popgym_suite --table-only                      # what is cached, nothing trained

Tasks: POPGym 1.0.7's 16 Easy tasks (the Labyrinth tasks need ``mazelib``, in the ``envs`` extra). Every
algorithm sees the same observation: ``float_box`` (``harness.FloatBoxObservation``:
gymnasium's flatten, i.e. one-hot Discrete / MultiDiscrete parts, Tuple parts concatenated, as float32). It is
needed for Autoencode (Tuple observation) and for CountRecall and Concentration (MultiDiscrete observation, with
which sb3-contrib 2.9.2's RecurrentPPO fails to construct: torch rejects the numpy-integer LSTM input size); it
is applied to every task so that all use one encoding. ``--prev-action-reward`` appends the previous action
(flattened, one-hot if discrete) and reward (``harness.PreviousActionReward``). ``--previous-action`` gives every
algorithm the observation of the POPGym paper's experiments instead: the previous action and a first-step flag, by
POPGym's own wrappers (``harness.popgym_previous_action``), before ``float_box``; its tables end with each
algorithm's rows with the observation alone beside those under the protocol (:func:`protocol_table`).

Score: POPGym scales each task's rewards so that an episode's return lies in [-1, 1] (e.g. +-1/(cards) per answer
in RepeatPrevious, 1/max_episode_length per step in the CartPoles); the table reports that return, mean over
``--eval-episodes`` (default 100) deterministic evaluation episodes after training (and seeds), as POPGym's
normalised return in [-1, 1], per task and as the mean over tasks, plus the number of tasks where PPOELMUR is
ahead of every other algorithm.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from benchmarks import harness

DEFAULT_ALGORITHMS = ["ppo_elmur", "recurrent_ppo", "ppo"]


def easy_tasks() -> list[str]:
    """Names (``XxxEasy``) of the POPGym Easy tasks, in POPGym's order."""
    from popgym.envs import ALL_EASY

    return [v["id"].removeprefix("popgym-").removesuffix("-v0") for v in ALL_EASY.values()]


def popgym_job(
    algorithm: str,
    task: str,
    steps: int,
    seed: int,
    hyperparameters: dict | None = None,
    wrappers: list[str] | None = None,
    eval_episodes: int = 100,
) -> dict:
    """The harness job of ``algorithm`` on the POPGym ``task`` (e.g. ``RepeatPreviousEasy``), in the suite's
    observation (``float_box``, unless ``wrappers`` says otherwise)."""
    return harness.make_job(
        algorithm,
        f"popgym-{task}-v0",
        steps,
        seed,
        hyperparameters=hyperparameters,
        wrappers=wrappers or ["float_box"],
        eval_episodes=eval_episodes,
    )


OBSERVATION_ALONE = (["float_box"], "popgym_easy")  # the suite's observation (wrappers) and results name by default


def observation(args: argparse.Namespace) -> tuple[list[str], str]:
    """The observation wrappers (the same for every algorithm) and the results name by default, from the flags
    ``--previous-action`` (POPGym's protocol) and ``--prev-action-reward``: the env's observation alone otherwise."""
    if args.previous_action:
        return ["popgym_previous_action", "float_box"], "popgym_easy_previous_action"
    if getattr(args, "prev_action_reward", False):
        return ["float_box", "prev_action_reward"], "popgym_easy_prev_action_reward"
    return OBSERVATION_ALONE


def add_cached_model_arguments(parser: argparse.ArgumentParser, task: str) -> None:
    """The arguments of a probe of cached suite models on one task: ``--name``, ``--task``, ``--algorithms``,
    ``--seeds``, ``--steps``, ``--hyperparams`` (one PPOELMUR variant per JSON dict) and ``--ppo-elmur-revision``."""
    parser.add_argument(
        "--name", default=None, help="harness results name the models were cached in (default: as the suite's)"
    )
    parser.add_argument(
        "--previous-action", action="store_true", help="the models trained under POPGym's protocol (--previous-action)"
    )
    parser.add_argument("--task", default=task)
    parser.add_argument("--algorithms", nargs="+", default=["ppo_elmur"], choices=list(harness.ALGORITHMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=500_000, help="training budget of the cached jobs")
    parser.add_argument(
        "--hyperparams", nargs="+", type=json.loads, default=[{}], help="PPOELMUR variants: one JSON dict each"
    )
    harness.add_revision_argument(parser)


def cached_model_jobs(args: argparse.Namespace) -> tuple[str, list[tuple[str, dict]]]:
    """The results name the models are cached in, and (label, job) of each model the arguments of
    :func:`add_cached_model_arguments` name: every algorithm, PPOELMUR variant and seed (whether cached or not)."""
    wrappers, default_name = observation(args)
    jobs = []
    for algorithm in args.algorithms:
        for hyperparameters in args.hyperparams if algorithm.startswith("ppo_elmur") else [{}]:
            variant = json.dumps(hyperparameters.get("policy_kwargs", hyperparameters)) if hyperparameters else ""
            for seed in args.seeds:
                label = " ".join(part for part in (algorithm, variant, f"s{seed}") if part)
                jobs.append((label, popgym_job(algorithm, args.task, args.steps, seed, hyperparameters, wrappers)))
    return args.name or default_name, jobs


SCORES = {
    "eval": "deterministic evaluation after training (100 episodes on fresh envs)",
    "train": "sampled actions at the end of training (the mean return of the last 100 training episodes; POPGym's"
    " own tables use the best such mean seen during training)",
}


def score(result: dict, kind: str) -> float:
    """A run's normalised return of kind ``"eval"`` or ``"train"`` (see :data:`SCORES`)."""
    return result["mean_return"] if kind == "eval" else result["curve"][-1]["mean_return"]


def task_returns(results: list[dict], task: str, algorithm: str, kind: str = "eval") -> list[float]:
    """The normalised returns (of kind ``kind``) of ``algorithm``'s runs (one per seed) on ``task``."""
    return [
        score(r, kind)
        for r in results
        if r["job"]["env_id"] == f"popgym-{task}-v0" and r["job"]["algorithm"] == algorithm
    ]


LEAD = 0.05  # a difference of means smaller than this is a tie


def compared_algorithms(algorithms: list[str]) -> tuple[str | None, str | None]:
    """The PPOELMUR and the RecurrentPPO algorithm among ``algorithms`` (the first of each; None where absent)."""
    elmur = next((a for a in algorithms if a.startswith("ppo_elmur")), None)
    lstm = next((a for a in algorithms if a.startswith("recurrent_ppo")), None)
    return elmur, lstm


def suite_table(
    results: list[dict],
    tasks: list[str],
    algorithms: list[str],
    wrappers: list[str],
    n_seeds: int = 1,
    kind: str = "eval",
) -> str:
    """Per task the mean normalised return (of kind ``kind``, see :data:`SCORES`) of each algorithm over its seeds
    (with the number of seeds), PPOELMUR's lead over RecurrentPPO, the mean row, and the lead counts: ahead by at
    least :data:`LEAD`, behind by more."""
    means: dict[tuple[str, str], float] = {}
    runs: dict[tuple[str, str], int] = {}
    for task in tasks:
        for algorithm in algorithms:
            returns = task_returns(results, task, algorithm, kind)
            if returns:
                means[task, algorithm] = statistics.mean(returns)
                runs[task, algorithm] = len(returns)
    elmur, lstm = compared_algorithms(algorithms)
    compare = elmur is not None and lstm is not None
    lines = [
        f"Observation wrappers (all algorithms): {' + '.join(wrappers)}. Score: mean episode return, POPGym-normalised"
        f" to [-1, 1], {SCORES[kind]}; mean over seeds (number of seeds, of {n_seeds} asked, in brackets).",
        "",
        "| task | " + " | ".join(algorithms) + (f" | {elmur} - {lstm} |" if compare else " |"),
        "|---|" + "---|" * (len(algorithms) + compare),
    ]
    for task in tasks:
        cells = ["-" if (task, a) not in means else f"{means[task, a]:.3f} ({runs[task, a]})" for a in algorithms]
        if compare:
            both = (task, elmur) in means and (task, lstm) in means
            cells.append(f"{means[task, elmur] - means[task, lstm]:+.3f}" if both else "-")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    column_means = []
    for a in algorithms:
        values = [means[t, a] for t in tasks if (t, a) in means]
        column_means.append(harness._fmt(statistics.mean(values), 3) if len(values) == len(tasks) else "-")
    lines.append("| **mean** | " + " | ".join(column_means) + (" | |" if compare else " |"))
    if compare:
        both = [t for t in tasks if (t, elmur) in means and (t, lstm) in means]
        ahead = [t for t in both if means[t, elmur] - means[t, lstm] >= LEAD]
        behind = [t for t in both if means[t, elmur] - means[t, lstm] < -LEAD]
        lines.append("")
        lines.append(
            f"{elmur} against {lstm} on the {len(both)} tasks both have run: ahead by {LEAD} or more on "
            f"{len(ahead)} ({', '.join(ahead) or 'none'}), behind by more than {LEAD} on {len(behind)} "
            f"({', '.join(behind) or 'none'})"
        )
    return "\n".join(lines)


def protocol_table(alone: list[dict], protocol: list[dict], tasks: list[str], algorithms: list[str]) -> str:
    """Per task and algorithm the mean normalised return over seeds with the observation alone and under POPGym's
    protocol side by side: deterministic evaluation, then in brackets the sampled score (:data:`SCORES`), then the
    number of seeds."""

    def cell(results: list[dict], task: str, algorithm: str) -> str:
        scores = {kind: task_returns(results, task, algorithm, kind) for kind in SCORES}
        if not scores["eval"]:
            return "-"
        return f"{statistics.mean(scores['eval']):.3f} ({statistics.mean(scores['train']):.3f}) [{len(scores['eval'])}]"

    header = [f"{a}{suffix}" for a in algorithms for suffix in ("", ", POPGym's protocol")]
    lines = [
        "The observation alone against POPGym's protocol (the previous action): deterministic (sampled) [seeds].",
        "",
        "| task | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(header),
    ]
    for task in tasks:
        cells = [cell(results, task, a) for a in algorithms for results in (alone, protocol)]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


ALWAYS_SEEDED = ("AutoencodeEasy", "RepeatPreviousEasy", "CountRecallEasy")  # the tasks with reference levels


def runs_to_do(results: list[dict], tasks: list[str], algorithms: list[str], seeds: list[int]) -> dict[str, dict]:
    """The seed rule: the first of ``seeds`` for every algorithm on every task; the others for PPOELMUR and
    RecurrentPPO where their first-seed results (deterministic) are :data:`LEAD` or more apart, and on
    :data:`ALWAYS_SEEDED`. Returns ``{algorithm: {task: [seeds not cached]}}`` (tasks with none left out)."""
    first = seeds[0]
    elmur, lstm = compared_algorithms(algorithms)
    done = {(r["job"]["env_id"], r["job"]["algorithm"], r["job"]["seed"]): score(r, "eval") for r in results}
    todo: dict[str, dict] = {a: {} for a in algorithms}
    for task in tasks:
        env_id = f"popgym-{task}-v0"
        asked = {a: [first] for a in algorithms}
        firsts = [done.get((env_id, a, first)) for a in (elmur, lstm)]
        if elmur and lstm and None not in firsts:
            if task in ALWAYS_SEEDED or abs(firsts[0] - firsts[1]) >= LEAD:
                asked[elmur] = asked[lstm] = seeds
        for a in algorithms:
            missing = [s for s in asked[a] if (env_id, a, s) not in done]
            if missing:
                todo[a][task] = missing
    return todo


def plot_suite(results: list[dict], tasks: list[str], algorithms: list[str], path: Path) -> Path:
    """Per task a bar per algorithm: the mean over seeds, with each seed's result as a dot (the spread)."""
    plt = harness.pyplot()
    width = 0.8 / len(algorithms)
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(tasks) + 2), 4))
    for i, algorithm in enumerate(algorithms):
        x = np.arange(len(tasks)) + i * width
        per_task = [task_returns(results, t, algorithm) for t in tasks]
        bars = ax.bar(x, [statistics.mean(r) if r else np.nan for r in per_task], width, label=algorithm)
        for xi, returns in zip(x, per_task, strict=True):
            ax.plot([xi] * len(returns), returns, "o", color="black", markersize=2)
            if len(returns) > 1:
                ax.vlines(xi, min(returns), max(returns), color=bars.patches[0].get_facecolor(), linewidth=1)
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2)
    ax.set_xticklabels([t.removesuffix("Easy") for t in tasks], rotation=30, ha="right", fontsize=7)
    ax.set_ylim(-1.25, 1.05)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_ylabel("normalised return (dots: seeds)")
    ax.legend(fontsize=7)
    return harness.save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--name", default=None, help="benchmark name (default popgym_easy[_prev_action_reward | _previous_action])"
    )
    parser.add_argument("--tasks", nargs="+", default=None, help="e.g. RepeatPreviousEasy (default: all Easy)")
    parser.add_argument("--algorithms", nargs="+", default=DEFAULT_ALGORITHMS, choices=list(harness.ALGORITHMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=500_000, help="training budget per job (all algorithms)")
    flags = parser.add_mutually_exclusive_group()
    flags.add_argument("--prev-action-reward", action="store_true", help="add previous action and reward")
    flags.add_argument(
        "--previous-action", action="store_true", help="POPGym's protocol: add previous action and first-step flag"
    )
    parser.add_argument(
        "--hyperparams", type=json.loads, default={}, help="JSON dict {algorithm: {argument: value}} on the presets"
    )
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--progress-every", type=int, default=50_000)
    parser.add_argument("--table-only", action="store_true", help="table and plot of the jobs already cached")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at a time (one process each)")
    harness.add_compile_argument(parser)
    parser.add_argument("--results", type=Path, default=harness.RESULTS)
    harness.add_revision_argument(parser)
    args = parser.parse_args(argv)
    harness.apply_revision(args)

    tasks = args.tasks or easy_tasks()
    wrappers, default_name = observation(args)
    name = args.name or default_name
    jobs = [
        popgym_job(algorithm, task, args.steps, seed, args.hyperparams.get(algorithm, {}), wrappers, args.eval_episodes)
        for task in tasks
        for algorithm in args.algorithms
        for seed in args.seeds
    ]
    if args.table_only:
        results = [r for r in (harness.cached_result(job, name, args.results) for job in jobs) if r is not None]
    else:
        results = harness.run_jobs(jobs, name, args.results, args.progress_every, args.jobs, args.compile)
    print(f"\nPOPGym Easy, {args.steps} steps per job, 8 envs, seeds {args.seeds}\n")
    for kind in SCORES:
        print(suite_table(results, tasks, args.algorithms, wrappers, len(args.seeds), kind), end="\n\n")
    todo = runs_to_do(results, tasks, args.algorithms, args.seeds)
    print(
        "Still to run (the seed rule, see runs_to_do):"
        if any(todo.values())
        else "Every run the seed rule asks for is cached."
    )
    for algorithm, missing in todo.items():
        if missing:
            cells = ", ".join(f"{t.removesuffix('Easy')} ({', '.join(map(str, s))})" for t, s in missing.items())
            print(f"- {algorithm}: {cells}")
    if args.previous_action and name == default_name:  # beside the same jobs with the observation alone
        alone_wrappers, alone_name = OBSERVATION_ALONE
        alone = [
            r
            for job in jobs
            if (r := harness.cached_result({**job, "wrappers": alone_wrappers}, alone_name, args.results)) is not None
        ]
        print(protocol_table(alone, results, tasks, args.algorithms), end="\n\n")
    harness.print_in_progress(name, args.results)
    print()
    try:
        harness.pyplot()
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)")
        return
    plot = plot_name(harness.PPO_ELMUR_REVISION, tasks, args.algorithms)
    print(f"plot: {plot_suite(results, tasks, args.algorithms, args.results / name / plot)}")


def plot_name(revision: int, tasks: list[str], algorithms: list[str]) -> str:
    """The plot's file name: ``popgym.png`` for the whole suite of today's revision; another revision's table draws
    ``popgym_r<revision>.png``, and a table of fewer tasks or algorithms ``..._partial.png``, never the whole one."""
    stem = "popgym" if revision == harness.CODE_REVISION else f"popgym_r{revision}"
    whole = set(tasks) == set(easy_tasks()) and set(algorithms) == set(DEFAULT_ALGORITHMS)
    return f"{stem}.png" if whole else f"{stem}_partial.png"


if __name__ == "__main__":
    main()
