"""Event-recall horizon on the passive T-Maze: train at corridor N, evaluate zero-shot at corridors up to 10^6.

    python -m benchmarks.tmaze_horizon                          # corridor 30, lengths 10 .. 10^5, 100 episodes each
    python -m benchmarks.tmaze_horizon --sampled                # train on corridors drawn from 1..30 per episode
    python -m benchmarks.tmaze_horizon --with-1e6               # add the 10^6 point (10^6 steps x 100 envs)
    python -m benchmarks.tmaze_horizon --with-1e6 ppo_elmur     # the 10^6 point for PPOELMUR only
    python -m benchmarks.tmaze_horizon --steps 2048 --lengths 10 100 --eval-episodes 10 --name horizon_smoke

Training jobs go through ``benchmarks/harness.py`` (cached JSON and model zip under
``benchmarks/results/<name>/``). Each (trained model, corridor length) evaluation is its own cached job under
``benchmarks/results/<name>/eval/``: ``--eval-episodes`` episodes (default 100) stepped as one batch in a VecEnv of
``--eval-envs`` envs (default 100), deterministic actions, ``predict`` with ``state``/``episode_start``.

Outputs: a Markdown table of success per length, ``horizon.png`` (success against corridor length, log x, with
each ELMUR configuration's theoretical horizon ``H(eps) = M * L * ln(eps) / ln(1 - lambda)`` marked) and, for
every ELMUR model, a retention probe (``probe.png``): the actor's layer memory (the first ``n_layers`` of
``state[0]``, shape (n_envs, n_layers_total, M, d); a critic trunk's layers follow them) is recorded at each
segment boundary of ``--probe-episodes`` episodes at corridor ``--probe-corridor``; against segments elapsed since
the cue it plots the cue's imprint on the flattened memory and the accuracy of a linear probe fitted at the first
boundary and kept fixed (:func:`retention`).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import harness

LENGTHS = [10, 100, 1_000, 10_000, 100_000]
LONGEST = 1_000_000
DEFAULT_ALGORITHMS = ["ppo_elmur", "recurrent_ppo", "recurrent_ppo_tuned", "ppo"]


def _is_elmur(job: dict[str, Any]) -> bool:
    return harness.ALGORITHMS[job["algorithm"]][0] == "ppo_elmur"


# --- zero-shot evaluation -----------------------------------------------------------------------------------------


def batched_success(
    model,
    corridor_length: int,
    episodes: int = 100,
    n_envs: int = 100,
    seed: int = 0,
    deterministic: bool = True,
    progress_every: int = 0,
) -> dict[str, Any]:
    """Success rate of ``episodes`` T-Maze episodes at ``corridor_length``, ``n_envs`` of them stepped as a batch.

    Environment i counts its first ``(episodes + i) // n_envs`` episodes (as SB3's ``evaluate_policy``), so
    exactly ``episodes`` are counted. The policy's ``predict`` gets the state it returned and ``episode_start``.
    """
    n_envs = min(n_envs, episodes)
    env = harness.make_env("PassiveTMaze-v0", n_envs, {"corridor_length": corridor_length}, [], seed)
    targets = np.array([(episodes + i) // n_envs for i in range(n_envs)])
    counts = np.zeros(n_envs, dtype=int)
    successes: list[bool] = []
    obs = env.reset()
    state, episode_start = None, np.ones(n_envs, dtype=bool)
    steps, start = 0, time.perf_counter()
    while (counts < targets).any():
        action, state = model.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)
        obs, _, episode_start, infos = env.step(action)
        steps += 1
        for i in np.flatnonzero(episode_start):
            if counts[i] < targets[i]:
                successes.append(bool(infos[i].get("is_success", False)))
                counts[i] += 1
        if progress_every and steps % progress_every == 0:
            print(f"    corridor {corridor_length}: step {steps}, {time.perf_counter() - start:.0f} s", flush=True)
    env.close()
    return dict(success=float(np.mean(successes)), episodes=len(successes), batch_steps=steps)


def cached_eval(
    train_result: dict, name: str, corridor_length: int, episodes: int, n_envs: int, results: Path = harness.RESULTS
) -> dict:
    """Zero-shot success of a trained job at one corridor length (cached under ``results/name/eval/``)."""
    job = train_result["job"]
    spec = dict(
        train_key=harness.job_key(job),
        corridor_length=int(corridor_length),
        episodes=int(episodes),
        n_envs=int(n_envs),
        deterministic=True,
        seed=job["seed"] + 2000,
    )
    path = results / name / "eval" / f"{harness.job_stem(job)}__c{corridor_length}__{harness.job_key(spec)}.json"

    def evaluate() -> dict:
        import torch

        torch.set_num_threads(1)
        print(f"  evaluating {harness.job_stem(job)} at corridor {corridor_length} ({episodes} episodes)", flush=True)
        model = harness.load_model(job, name, results)
        start = time.perf_counter()
        every = max(1, (corridor_length + 1) // 10) if corridor_length >= 10_000 else 0
        outcome = batched_success(
            model, corridor_length, episodes, n_envs, spec["seed"], deterministic=True, progress_every=every
        )
        result = dict(spec=spec, job=job, **outcome, wall_s=time.perf_counter() - start)
        print(f"  corridor {corridor_length}: success {result['success']:.2f} ({result['wall_s']:.0f} s)", flush=True)
        return result

    return harness.cached(path, evaluate)


# --- retention probe ----------------------------------------------------------------------------------------------


def record_memory(model, corridor_length: int, episodes: int, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Cues (0 up, 1 down) of ``episodes`` T-Maze episodes and, per segment boundary k = 1, 2, ..., the flattened
    layer memory of the actor's trunk of every episode after its k-th segment (one batch of ``episodes`` envs,
    deterministic actions)."""
    env = harness.make_env("PassiveTMaze-v0", episodes, {"corridor_length": corridor_length}, [], seed)
    obs = env.reset()
    cues = (obs[:, 1] > 0.5).astype(int)  # the first observation shows the cue: [1, 0, .] up, [0, 1, .] down
    config = harness.elmur_config(model)
    segment_len, actor_layers = config["segment_len"], config["n_layers"]
    state, episode_start = None, np.ones(episodes, dtype=bool)
    finished = np.zeros(episodes, dtype=bool)
    memories: list[np.ndarray] = []
    for _ in range(corridor_length):  # the junction is reached after corridor_length steps
        action, state = model.predict(obs, state=state, episode_start=episode_start, deterministic=True)
        step = state[5]  # episode step of the next token: a multiple of segment_len right after a write
        if finished.any() or len(set(step.tolist())) != 1:
            raise RuntimeError("T-Maze episodes of one batch should run in lockstep")
        if step[0] % segment_len == 0:
            memories.append(state[0][:, :actor_layers].reshape(episodes, -1).copy())
        obs, _, episode_start, _ = env.step(action)
        finished |= episode_start
    env.close()
    return cues, memories


def logistic_probe(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iterations: int = 500):
    """An L2-regularised logistic regression (numpy, full-batch gradient descent) on standardised features.

    :return: a function from features (N, F) to predicted labels (N,)
    """
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = (x - mean) / std
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(xs @ w + b)))
        grad = p - y
        w -= 0.5 * (xs.T @ grad / len(y) + l2 * w)
        b -= 0.5 * grad.mean()
    return lambda features: (((features - mean) / std) @ w + b) > 0


def retention(cues: np.ndarray, memories: list[np.ndarray]) -> list[dict]:
    """Per segment boundary k (segments elapsed since the cue): how much of the cue the memory still holds.

    In the T-Maze the memory is a deterministic function of the cue (the corridor is always the same), so a probe
    fitted afresh at each boundary separates the two cues perfectly as long as they differ at all. Two measures
    that do not saturate that way:

    - ``fixed_probe_accuracy``: a linear (logistic) probe fitted on half of the episodes at the first boundary,
      applied unchanged to the other half at boundary k: whether the cue is still written the way it was first
      written (as a fixed reader would need)
    - ``separation``: ``|mean(m | up) - mean(m | down)| / mean(|m|)``, the cue's imprint relative to the memory's
      size; LRU blending without rewriting the cue shrinks it by ``(1 - lambda)`` per rewrite of a slot
    """
    half = len(cues) // 2
    probe = logistic_probe(memories[0][:half], cues[:half])
    points = []
    for k, m in enumerate(memories):
        imprint = np.linalg.norm(m[cues == 1].mean(0) - m[cues == 0].mean(0))
        points.append(
            dict(
                segments=k + 1,
                fixed_probe_accuracy=float(np.mean(probe(m[half:]) == cues[half:])),
                separation=float(imprint / np.linalg.norm(m, axis=1).mean()),
            )
        )
    return points


def cached_probe(
    train_result: dict, name: str, corridor_length: int, episodes: int, results: Path = harness.RESULTS
) -> dict:
    """:func:`retention` of an ELMUR model per segments elapsed since the cue (cached under ``results/name/probe/``)."""
    job = train_result["job"]
    spec = dict(
        train_key=harness.job_key(job), corridor_length=corridor_length, episodes=episodes, seed=3000, measure=2
    )
    path = results / name / "probe" / f"{harness.job_stem(job)}__c{corridor_length}__{harness.job_key(spec)}.json"

    def probe() -> dict:
        import torch

        torch.set_num_threads(1)
        print(f"  probing {harness.job_stem(job)}: corridor {corridor_length}, {episodes} episodes", flush=True)
        model = harness.load_model(job, name, results)
        cues, memories = record_memory(model, corridor_length, episodes, spec["seed"])
        return dict(spec=spec, job=job, elmur=harness.elmur_config(model), points=retention(cues, memories))

    return harness.cached(path, probe)


# --- table and plots ----------------------------------------------------------------------------------------------


def horizon_table(train_results: list[dict], evals: list[dict], lengths: list[int]) -> str:
    head = "| algorithm | M | train env | seed | train success | " + " | ".join(f"N={n:g}" for n in lengths) + " |"
    lines = [head, "|" + "---|" * (5 + len(lengths))]
    for r in train_results:
        job = r["job"]
        by_length = {e["spec"]["corridor_length"]: e["success"] for e in evals if e["spec"]["train_key"] == r["key"]}
        cells = " | ".join(harness._fmt(by_length.get(n)) for n in lengths)
        train_env = f"{job['env_id']} {json.dumps(job['env_kwargs'])}"
        slots = r.get("elmur", {}).get("memory_size", "-")  # ELMUR's memory slots per layer
        lines.append(
            f"| {job['algorithm']} | {slots} | {train_env} | {job['seed']} | {harness._fmt(r['success'])} | {cells} |"
        )
    return "\n".join(lines)


def elmur_horizons(train_results: list[dict], eps: float) -> dict[str, float]:
    """Label -> H(eps) in steps, one per distinct ELMUR configuration."""
    horizons = {}
    for r in train_results:
        if "elmur" in r:
            c = r["elmur"]
            label = f"M={c['memory_size']}, L={c['segment_len']}, lambda={c['lru_alpha']}"
            horizons[label] = harness.horizon(c["memory_size"], c["segment_len"], c["lru_alpha"], eps)
    return horizons


def plot_horizon(train_results: list[dict], evals: list[dict], eps: float, path: Path) -> Path:
    plt = harness.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    styles = [("o", 9, "-"), ("s", 7, "--"), ("^", 5, "-."), ("x", 5, ":")]  # overlapping curves stay visible
    for i, algorithm in enumerate(dict.fromkeys(r["job"]["algorithm"] for r in train_results)):
        keys = {r["key"] for r in train_results if r["job"]["algorithm"] == algorithm}
        lengths = sorted({e["spec"]["corridor_length"] for e in evals if e["spec"]["train_key"] in keys})
        means = [
            np.mean(
                [e["success"] for e in evals if e["spec"]["train_key"] in keys and e["spec"]["corridor_length"] == n]
            )
            for n in lengths
        ]
        marker, size, line = styles[i % len(styles)]
        ax.plot(lengths, means, marker=marker, markersize=size, linestyle=line, alpha=0.8, label=algorithm)
    for i, (label, h) in enumerate(elmur_horizons(train_results, eps).items()):
        if math.isfinite(h):
            ax.axvline(h, color=f"C{i}", linestyle="--", alpha=0.6, label=f"H({eps}) = {h:.0f} ({label})")
    train_lengths = {
        r["job"]["env_kwargs"].get("corridor_length", r["job"]["env_kwargs"].get("max_length")) for r in train_results
    }
    for n in train_lengths - {None}:
        ax.axvline(n, color="grey", linestyle=":", alpha=0.6)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.axhline(0.5, color="grey", linewidth=0.5)
    ax.set_xlabel("corridor length (zero-shot; dotted: training length)")
    ax.set_ylabel("success rate")
    ax.legend(fontsize=7)
    return harness.save_figure(fig, path)


def plot_probe(probes: list[dict], eps: float, path: Path) -> Path:
    plt = harness.pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 6), sharex=True)
    for i, p in enumerate(probes):
        job, c = p["job"], p["elmur"]
        segments = [q["segments"] for q in p["points"]]
        label = f"{job['algorithm']} s{job['seed']} (M={c['memory_size']})"
        top.plot(segments, [q["fixed_probe_accuracy"] for q in p["points"]], color=f"C{i}", label=label)
        bottom.semilogy(segments, [max(q["separation"], 1e-8) for q in p["points"]], color=f"C{i}", label=label)
        h = harness.horizon(c["memory_size"], c["segment_len"], c["lru_alpha"], eps) / c["segment_len"]
        if math.isfinite(h):
            for ax in (top, bottom):
                ax.axvline(h, color=f"C{i}", linestyle="--", alpha=0.6)
    top.axhline(0.5, color="grey", linewidth=0.5)
    top.set_ylim(0.3, 1.02)
    top.set_ylabel("fixed linear probe accuracy")
    top.set_title(f"cue read back from the layer memory (dashed: H({eps}) / L)", fontsize=9)
    bottom.set_ylabel("cue separation / memory norm")
    bottom.set_xlabel("segments elapsed since the cue")
    top.legend(fontsize=7)
    return harness.save_figure(fig, path)


# --- CLI ----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default=None, help="benchmark name (default tmaze_horizon_<N>[_sampled])")
    parser.add_argument("--corridor", type=int, default=30, help="training corridor length N")
    parser.add_argument("--sampled", action="store_true", help="train on corridors drawn uniformly from 1..N")
    parser.add_argument("--algorithms", nargs="+", default=DEFAULT_ALGORITHMS, choices=list(harness.ALGORITHMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=300_000, help="training budget per job")
    parser.add_argument(
        "--hyperparams", type=json.loads, default={}, help="JSON dict {algorithm: {argument: value}} on the presets"
    )
    parser.add_argument("--lengths", nargs="+", type=int, default=LENGTHS, help="zero-shot corridor lengths")
    parser.add_argument(
        "--with-1e6",
        nargs="*",
        choices=list(harness.ALGORITHMS),
        default=None,
        metavar="ALGORITHM",
        help="also evaluate at corridor 10^6 (long): every algorithm, or only those named",
    )
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--eval-envs", type=int, default=100, help="envs stepped as one batch")
    parser.add_argument("--eps", type=float, default=0.05, help="retained fraction that defines H(eps)")
    parser.add_argument("--probe-corridor", type=int, default=512, help="0: no probe")
    parser.add_argument("--probe-episodes", type=int, default=400)
    parser.add_argument("--progress-every", type=int, default=50_000)
    parser.add_argument("--jobs", type=int, default=1, help="trainings at a time (one process each)")
    harness.add_compile_argument(parser)
    parser.add_argument("--results", type=Path, default=harness.RESULTS)
    harness.add_revision_argument(parser)
    args = parser.parse_args(argv)
    harness.apply_revision(args)

    name = args.name or f"tmaze_horizon_{args.corridor}{'_sampled' if args.sampled else ''}"
    env_id, env_kwargs = (
        ("SampledTMaze-v0", {"max_length": args.corridor})
        if args.sampled
        else ("PassiveTMaze-v0", {"corridor_length": args.corridor})
    )
    long_algorithms = set() if args.with_1e6 is None else set(args.with_1e6 or args.algorithms)
    lengths = sorted(set(args.lengths) | ({LONGEST} if long_algorithms else set()))
    jobs = [
        harness.make_job(
            algorithm, env_id, args.steps, seed, env_kwargs, args.hyperparams.get(algorithm, {}), eval_episodes=100
        )
        for algorithm in args.algorithms
        for seed in args.seeds
    ]
    train_results = harness.run_jobs(jobs, name, args.results, args.progress_every, args.jobs, args.compile)
    evals = [
        cached_eval(r, name, n, args.eval_episodes, args.eval_envs, args.results)
        for r in train_results
        for n in lengths
        if n in args.lengths or r["job"]["algorithm"] in long_algorithms  # 10^6 only for those asked
    ]
    probes = []
    if args.probe_corridor:
        probes = [
            cached_probe(r, name, args.probe_corridor, args.probe_episodes, args.results)
            for r in train_results
            if _is_elmur(r["job"])
        ]

    print(f"\nTraining: {env_id} {env_kwargs}, {args.steps} steps, 8 envs.")
    print(f"Zero-shot success ({args.eval_episodes} episodes per length, deterministic actions):\n")
    print(horizon_table(train_results, evals, lengths))
    for label, h in elmur_horizons(train_results, args.eps).items():
        print(f"\nELMUR {label}: H({args.eps}) = {h:.0f} steps")
    for p in probes:
        points = ", ".join(
            f"{q['segments']}: {q['fixed_probe_accuracy']:.2f} / {q['separation']:.2g}" for q in p["points"]
        )
        print(f"\nprobe {harness.job_stem(p['job'])} (segments elapsed: fixed probe accuracy / separation): {points}")
    try:
        harness.pyplot()
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)")
        return
    directory = args.results / name
    print(f"plot: {plot_horizon(train_results, evals, args.eps, directory / 'horizon.png')}")
    if probes:
        print(f"plot: {plot_probe(probes, args.eps, directory / 'probe.png')}")
    for path in harness.write_plots(train_results, directory):
        print(f"plot: {path}")


if __name__ == "__main__":
    main()
