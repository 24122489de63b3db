"""The user-code loop over a VecEnv: carry ``state`` and ``episode_start`` between ``predict`` calls.

python examples/predict_loop.py [path/to/model.zip]
"""

import sys

import numpy as np
from stable_baselines3.common.env_util import make_vec_env

from sb3_elmur import PPOELMUR

env = make_vec_env("PassiveTMaze-v0", n_envs=4, env_kwargs=dict(corridor_length=10), seed=0)
if len(sys.argv) > 1:
    model = PPOELMUR.load(sys.argv[1], env=env)
else:  # an untrained model shows the same loop
    model = PPOELMUR("ElmurPolicy", env)

obs = env.reset()
state = None  # None: fresh episodes
episode_start = np.ones(env.num_envs, dtype=bool)
returns, finished = np.zeros(env.num_envs), []
while len(finished) < 20:
    action, state = model.predict(obs, state=state, episode_start=episode_start, deterministic=True)
    obs, reward, done, infos = env.step(action)
    returns += reward
    episode_start = done  # the envs that just finished start a new episode: predict resets their state
    for i in np.flatnonzero(done):
        finished.append((returns[i], infos[i]["is_success"]))
        returns[i] = 0.0
mean_return, success = np.mean(finished, axis=0)
print(f"{len(finished)} episodes: mean return {mean_return:.3f}, success rate {success:.2f}")
