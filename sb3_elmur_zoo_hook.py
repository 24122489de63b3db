"""Start-up hook that teaches the RL Zoo (rl_zoo3) about ``ppo_elmur``, lazily.

Run at interpreter start by ``sb3_elmur_zoo.pth`` (``import`` line) or, on Pythons that implement PEP 829, by
``sb3_elmur_zoo.start`` (entry point ``sb3_elmur_zoo_hook:install``, which disables the ``.pth`` import line).
It must stay cheap: it imports nothing beyond ``os`` and ``sys`` (both already loaded at start-up) and only puts a
finder on ``sys.meta_path``. When one of the zoo's modules that hold the registries is imported, the finder lets the
normal import run and then calls :func:`sb3_elmur.zoo.patch_module` on the fresh module (that is when torch,
sb3_elmur and the zoo glue are imported, never before).

Set ``SB3_ELMUR_NO_ZOO_HOOK=1`` to switch it off; ``python -m sb3_elmur.train`` (``enjoy``, ``record_video``) still
work then. Calling :func:`install` twice is harmless.
"""

import os
import sys

OPT_OUT = "SB3_ELMUR_NO_ZOO_HOOK"
# The zoo's modules that hold what we register (ALGOS, HYPERPARAMS_SAMPLER/CONVERTER, ExperimentManager's config path)
TARGETS = frozenset({"rl_zoo3.utils", "rl_zoo3.hyperparams_opt", "rl_zoo3.exp_manager"})


def disabled() -> bool:
    """True when the opt-out variable is set to anything but '', '0', 'false' or 'no'."""
    return os.environ.get(OPT_OUT, "").strip().lower() not in ("", "0", "false", "no")


class _PatchingLoader:
    """Runs the real loader, then registers ppo_elmur in the module; everything else is delegated."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        try:
            from sb3_elmur.zoo import patch_module
        except Exception as error:  # a broken sb3_elmur install must not break the zoo for other algorithms
            import warnings

            warnings.warn(f"sb3_elmur: could not register ppo_elmur with the RL Zoo: {error!r}", stacklevel=2)
            return
        patch_module(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class ZooFinder:
    """``sys.meta_path`` finder: finds the zoo's registry modules with the other finders and wraps their loader."""

    _sb3_elmur_zoo_finder = True

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in TARGETS:
            return None
        for finder in sys.meta_path:
            if getattr(finder, "_sb3_elmur_zoo_finder", False) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PatchingLoader(spec.loader)
        return spec


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once); patch zoo modules that are already imported."""
    if disabled():
        return
    if not any(getattr(finder, "_sb3_elmur_zoo_finder", False) for finder in sys.meta_path):
        sys.meta_path.insert(0, ZooFinder())
    if any(name in sys.modules for name in TARGETS):  # installed late, e.g. by hand
        from sb3_elmur.zoo import register

        register()
