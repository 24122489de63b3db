"""`python -m sb3_elmur.enjoy ...`: the RL Zoo's `python -m rl_zoo3.enjoy ...` with ppo_elmur registered.

For interpreters where the start-up hook is off (SB3_ELMUR_NO_ZOO_HOOK=1, `python -S`, ...); same arguments.
"""

from sb3_elmur.zoo import run_zoo_command

if __name__ == "__main__":
    run_zoo_command("rl_zoo3.enjoy")
