"""Hooks that run inside a trainer's own process, enabled from its config (docs/evidence.md).

Nothing here imports the rest of scaleout, and a hook module imports only what the trainer's
process has (torch, and mmcv or mmengine): a trainer image with scaleout on its path (or the
files copied next to its code) loads them with `custom_imports`. This file imports nothing;
it holds the config lines the probe prints where a trainer's logs carry no statistics.
"""

MMCV_MODULE = "scaleout.hooks.mmcv_grad_stats"
MMENGINE_MODULE = "scaleout.hooks.mmengine_grad_stats"
HOOK_TYPE = "ScaleoutGradStatsHook"

MMCV_CONFIG = f"""\
custom_imports = dict(imports=['{MMCV_MODULE}'], allow_failed_imports=False)
custom_hooks = [dict(type='{HOOK_TYPE}', interval=10)]"""

MMENGINE_CONFIG = f"""\
custom_imports = dict(imports=['{MMENGINE_MODULE}'], allow_failed_imports=False)
custom_hooks = [dict(type='{HOOK_TYPE}', interval=10)]"""
