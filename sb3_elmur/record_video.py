"""`python -m sb3_elmur.record_video ...`: the RL Zoo's `python -m rl_zoo3.record_video ...` with ppo_elmur registered.

For interpreters where the start-up hook is off (SB3_ELMUR_NO_ZOO_HOOK=1, `python -S`, ...); same arguments.
"""

from sb3_elmur.zoo import run_zoo_command

if __name__ == "__main__":
    run_zoo_command("rl_zoo3.record_video")
