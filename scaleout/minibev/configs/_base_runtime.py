# Runtime pieces shared by the minibev presets (tiny.py, small.py, base.py): loops, hooks,
# logging, visualizer. The presets hold everything that sets the task and the recipe.
custom_imports = dict(imports=["scaleout.minibev.components"], allow_failed_imports=False)
val_cfg = dict(type="ValLoop")
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=10),
    param_scheduler=dict(type="ParamSchedulerHook"),
    # A checkpoint every epoch; `--resume` continues from the latest one.
    checkpoint=dict(type="CheckpointHook", interval=1, by_epoch=True, max_keep_ckpts=2),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
custom_hooks = [
    dict(type="MiniBEVLayoutHook"),
    dict(type="MiniBEVThroughputHook"),
    dict(type="MiniBEVGradStatsHook", interval=10),
]
visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
log_processor = dict(by_epoch=True, window_size=10)
log_level = "INFO"
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend="gloo"))
# Real DDP; its train step accumulates a process's virtual GPUs under no_sync.
model_wrapper_cfg = dict(type="MiniBEVDDP")
# Speed switches, translated by scaleout.minibev.train (AMP and fused AdamW only on a GPU).
speed = dict(amp=None, compile=False, channels_last=False, fused_adamw=False, pin_memory=False)
launcher = "none"
load_from = None
resume = False
