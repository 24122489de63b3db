"""PPO with ELMUR (External Layer Memory with Update/Rewrite) policies for Stable-Baselines3."""

from sb3_elmur.envs import SampledTMaze, SuccessOnPositiveReward, TMaze, register_envs
from sb3_elmur.evaluation import evaluate_success, record_memory
from sb3_elmur.policies import CnnElmurPolicy, ElmurPolicy, MultiInputElmurPolicy
from sb3_elmur.ppo_elmur import PPOELMUR

__version__ = "0.1.0"
__all__ = [
    "PPOELMUR",
    "CnnElmurPolicy",
    "ElmurPolicy",
    "MultiInputElmurPolicy",
    "SampledTMaze",
    "SuccessOnPositiveReward",
    "TMaze",
    "__version__",
    "evaluate_success",
    "record_memory",
]

register_envs()
