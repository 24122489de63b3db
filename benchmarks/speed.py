"""Speed and memory of PPOELMUR against sb3-contrib's RecurrentPPO, measured alternately in one invocation.

    python -m benchmarks.speed                     # all envs, 3 repeats
    python -m benchmarks.speed --envs CartPole-v1 --repeats 5 --steps 4096

For each env, the algorithms get the same number of envs, n_steps, batch_size and n_epochs (RecurrentPPO's defaults:
128 / 128 / 10) and their own default policy (ElmurPolicy; MlpLstmPolicy; SB3 PPO's memoryless MlpPolicy); ELMUR
also with ``compile_update=True`` and ``compile_acting=True`` (its compilation, in a warm-up of 8 rollouts and
updates, is left out of the throughput and reported apart as seconds of wall-clock time). Each measurement runs in a
fresh subprocess (clean peak memory), the algorithms alternating; the table shows medians and the ratios ELMUR/LSTM
and ELMUR/PPO (> 1 means ELMUR is faster for throughputs, slower for times and memory). Throughputs and update times
are per second of the process's CPU time (one torch thread, the envs stepped in-process), so other processes on the
machine do not skew them; with ``--device cuda`` (the policies on a GPU, the environments on the CPU) they are per
second of wall-clock time instead, since CPU time does not count the GPU's work, and peak memory is the GPU's peak
allocation: run those on an otherwise idle machine. The compile column is the longest warm-up of the compiled runs:
the first compiles, later ones find torch's on-disk cache.
Then: acting latency of ``predict`` for 8 envs at episode step ~10 vs ~10^5 and 10^6, and buffer + state bytes
for a 2048 x 8 rollout at corridors 10^2, 10^4 and 10^6 (episodes of up to that many steps).
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

ENVS = {
    "CartPole-v1": {},
    "PassiveTMaze-v0": {"corridor_length": 100},
    "popgym-RepeatPreviousEasy-v0": {},
}
COMMON = dict(n_steps=128, batch_size=128, n_epochs=10)


def make_model(algo: str, env_id: str, env_kwargs: dict, n_envs: int, device: str = "cpu"):
    import gymnasium as gym
    from sb3_contrib import RecurrentPPO
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_elmur import PPOELMUR

    if env_id.startswith("popgym"):
        import popgym  # noqa: F401  (registers the popgym ids)
    env = make_vec_env(env_id, n_envs=n_envs, env_kwargs=env_kwargs, seed=0)
    assert isinstance(env.observation_space, gym.spaces.Space)
    if algo in ("elmur", "elmur_compiled"):
        compiled = algo == "elmur_compiled"
        return PPOELMUR(
            "ElmurPolicy", env, seed=0, device=device, compile_update=compiled, compile_acting=compiled, **COMMON
        )
    if algo == "ppo":
        return PPO("MlpPolicy", env, seed=0, device=device, **COMMON)
    return RecurrentPPO("MlpLstmPolicy", env, seed=0, device=device, **COMMON)


def child_throughput(algo: str, env_id: str, steps: int, n_envs: int, device: str) -> dict:
    """One measurement: rollout time, update time and peak memory over ``steps`` environment steps."""
    import torch
    from stable_baselines3.common.callbacks import CallbackList

    model = make_model(algo, env_id, ENVS[env_id], n_envs, device)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    # warm-up: one rollout and one update; compiled, 8 of them, so that the usual minibatch shapes (which vary with
    # the number of training sequences in a rollout) are compiled before the measurement
    model.learn((8 if algo == "elmur_compiled" else 1) * model.n_steps * n_envs)
    warmup_s = time.perf_counter() - start
    callback = CallbackList([])
    model._setup_learn(steps, callback, reset_num_timesteps=False)
    callback.init_callback(model)
    # On the CPU, this process's CPU time (robust to other processes sharing the cores); on a GPU, wall-clock time.
    clock = time.process_time if device == "cpu" else time.perf_counter
    rollout_time = update_time = 0.0
    collected = 0
    while collected < steps:
        start = clock()
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        rollout_time += clock() - start
        start = clock()
        model.train()
        if device != "cpu":
            torch.cuda.synchronize()
        update_time += clock() - start
        collected += model.n_steps * n_envs
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device != "cpu":  # the GPU's peak instead of the process's
        baseline, peak = 0, torch.cuda.max_memory_allocated() // 1024
    return dict(
        train_fps=collected / (rollout_time + update_time),
        rollout_fps=collected / rollout_time,
        update_s=update_time / (collected / (model.n_steps * n_envs)),
        peak_mib=(peak - baseline) / 1024,
        warmup_s=warmup_s,
    )


def child_latency(n_envs: int) -> dict:
    """Median ``predict`` time for n_envs at episode steps ~10, ~10^5 and ~10^6 (states reached in segment mode)."""
    import numpy as np
    import torch

    model = make_model("elmur", "PassiveTMaze-v0", {"corridor_length": 10**6}, n_envs)
    policy, trunk = model.policy, model.policy.trunks[0]
    L = policy.config.segment_len
    result = {}
    for target in (10, 10**5, 10**6):
        state = policy.initial_state(n_envs)
        start = (target // L) * L
        start_state = trunk.segment_start(state)
        with torch.no_grad():  # reach step `start` with real writes, 256 segments per pass
            for first in range(0, start, 256 * L):
                S = min(256, (start - first) // L)
                step0 = first + torch.arange(S)[None].expand(n_envs, S) * L
                features = torch.rand(n_envs, S, L, 3)
                valid = torch.ones(n_envs, S, L, dtype=torch.bool)
                _, _, start_state = trunk(features, start_state, step0, step0 == 0, valid)
        state = state._replace(
            memory=start_state.memory, anchors=start_state.anchors, step=torch.full((n_envs,), start)
        )
        numpy_state = tuple(a.numpy() for a in state)
        obs = np.zeros((n_envs, 3), dtype=np.float32)
        times = []
        for _ in range(3 * L):  # three segments: includes the writes
            begin = time.perf_counter()
            _, numpy_state = model.predict(obs, state=numpy_state)
            times.append(time.perf_counter() - begin)
        result[str(target)] = statistics.median(times) * 1e3
    return result


def child_buffer(algo: str, corridor: int) -> dict:
    """Bytes of the rollout buffer and of the recurrent state for 2048 x 8 T-Maze steps at ``corridor``."""
    import numpy as np
    import torch
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_elmur import PPOELMUR

    env = make_vec_env("PassiveTMaze-v0", n_envs=8, env_kwargs=dict(corridor_length=corridor), seed=0)
    if algo == "elmur":
        model = PPOELMUR("ElmurPolicy", env, n_steps=2048, batch_size=128, seed=0)
    else:  # "lstm": RecurrentPPO's default (256 units); "lstm64": as wide as ELMUR's default d_model
        from sb3_contrib import RecurrentPPO

        policy_kwargs = dict(lstm_hidden_size=64) if algo == "lstm64" else None
        model = RecurrentPPO("MlpLstmPolicy", env, n_steps=2048, batch_size=128, seed=0, policy_kwargs=policy_kwargs)
    callback = CallbackList([])
    model._setup_learn(2048 * 8, callback)
    callback.init_callback(model)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    buffer_bytes = sum(
        v.nbytes if isinstance(v, np.ndarray | torch.Tensor) else 0 for v in vars(model.rollout_buffer).values()
    )
    if algo == "elmur":
        buffer_bytes += sum(t.nbytes for start in model.rollout_buffer._segment_starts for t in start)
        state_bytes = sum(a.nbytes for a in model._last_state)
    else:
        state_bytes = sum(t.nbytes for pair in model._last_lstm_states for t in pair)
    return dict(buffer_mib=buffer_bytes / 2**20, state_kib_per_env=state_bytes / 1024 / 8)


def run_child(*args: str) -> dict:
    output = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(ENVS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8192, help="measured env steps per run (after warm-up)")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--device", default="cpu", help="torch device of the policies (cpu, cuda)")
    parser.add_argument("--no-extras", action="store_true", help="throughput table only (no latency, buffer sizes)")
    parser.add_argument("--no-compiled", action="store_true", help="leave out the compiled PPOELMUR runs")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        kind, *rest = args.child
        if kind == "throughput":
            print(json.dumps(child_throughput(rest[0], rest[1], args.steps, args.n_envs, args.device)))
        elif kind == "latency":
            print(json.dumps(child_latency(args.n_envs)))
        else:
            print(json.dumps(child_buffer(rest[0], int(rest[1]))))
        return

    common = ["--steps", str(args.steps), "--n-envs", str(args.n_envs), "--threads", str(args.threads)]
    common += ["--device", args.device]
    print(
        f"device {args.device}; threads per process: {args.threads}; n_envs {args.n_envs}; {COMMON}; "
        f"medians of {args.repeats} runs\n"
    )
    print(
        "| env | train fps ELMUR | train fps LSTM | ratio | rollout fps ELMUR | rollout fps LSTM | rollout ratio "
        "| update s ELMUR | update s LSTM | update ratio | peak MiB ELMUR | peak MiB LSTM | train fps PPO "
        "| ratio to PPO | train fps ELMUR compiled | ratio compiled | rollout fps ELMUR compiled "
        "| rollout ratio compiled | compile s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for env_id in args.envs:
        algorithms = ["elmur", "lstm", "ppo"] + ([] if args.no_compiled else ["elmur_compiled"])
        runs: dict[str, list[dict]] = {algo: [] for algo in algorithms}
        try:
            for _ in range(args.repeats):
                for algo in runs:
                    runs[algo].append(run_child(*common, "--child", "throughput", algo, env_id))
        except subprocess.CalledProcessError as error:
            print(f"| {env_id} | failed: {error.stderr.strip().splitlines()[-1]} |")
            continue
        med = {a: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for a, rs in runs.items()}
        e, s, p = med["elmur"], med["lstm"], med["ppo"]
        compiled = "| - | - | - | - | - |"
        if "elmur_compiled" in med:
            c = med["elmur_compiled"]
            compiled = (
                f"| {c['train_fps']:.0f} | {c['train_fps'] / s['train_fps']:.2f} "
                f"| {c['rollout_fps']:.0f} | {c['rollout_fps'] / s['rollout_fps']:.2f} "
                f"| {max(r['warmup_s'] for r in runs['elmur_compiled']):.0f} |"
            )
        print(
            f"| {env_id} | {e['train_fps']:.0f} | {s['train_fps']:.0f} | {e['train_fps'] / s['train_fps']:.2f} "
            f"| {e['rollout_fps']:.0f} | {s['rollout_fps']:.0f} | {e['rollout_fps'] / s['rollout_fps']:.2f} "
            f"| {e['update_s']:.2f} | {s['update_s']:.2f} | {e['update_s'] / s['update_s']:.2f} "
            f"| {e['peak_mib']:.0f} | {s['peak_mib']:.0f} | {p['train_fps']:.0f} "
            f"| {e['train_fps'] / p['train_fps']:.3f} " + compiled
        )
    if args.no_extras:
        return

    latency = run_child(*common, "--child", "latency")
    print(f"\npredict latency, {args.n_envs} envs (ms): " + ", ".join(f"t~{k}: {v:.2f}" for k, v in latency.items()))
    for far in ("100000", "1000000"):
        print(f"ratio t~{far} / t~10: {latency[far] / latency['10']:.2f}")

    print("\nrollout of 2048 x 8 T-Maze steps (episodes up to corridor + 1 steps):")
    for corridor in (10**2, 10**4, 10**6):
        for algo in ("elmur", "lstm", "lstm64"):
            b = run_child(*common, "--child", "buffer", algo, str(corridor))
            print(
                f"  corridor {corridor:>7}: {algo}: buffer {b['buffer_mib']:.1f} MiB, "
                f"recurrent state {b['state_kib_per_env']:.1f} KiB per env"
            )


if __name__ == "__main__":
    main()
