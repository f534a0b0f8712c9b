# Runtime pieces shared by the minibev presets (tiny.py, small.py, base.py): loops, hooks,
# logging, visualizer. The presets hold everything that sets the task and the recipe.
custom_imports = dict(imports=["scaleout.minibev.components"], allow_failed_imports=False)

# The skeleton every preset fills in (mmengine merges a preset's dicts into these, key by key;
# lists such as param_scheduler are replaced whole, so each preset states its own).
train_dataloader = dict(
    batch_size=1,  # samples per (virtual) GPU
    num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="minibev_collate"),
    dataset=dict(type="MiniBEVDataset", seed=2024, split="train"),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="minibev_collate"),
    dataset=dict(type="MiniBEVDataset", seed=2024, split="val"),
)
val_evaluator = dict(type="MiniBEVNuScenesMetric")
train_cfg = dict(type="EpochBasedTrainLoop", val_interval=1)
optim_wrapper = dict(
    type="OptimWrapper",
    # mmengine's paramwise options, merged into one param group per distinct setting (speed).
    constructor="MiniBEVOptimWrapperConstructor",
    optimizer=dict(type="AdamW", weight_decay=0.01),
    # BEVFormer uses 0.1 on a pretrained backbone; ours starts from scratch, hence 0.5.
    paramwise_cfg=dict(custom_keys={"img_backbone": dict(lr_mult=0.5)}),
    clip_grad=dict(max_norm=35, norm_type=2),
)
auto_scale_lr = dict(enable=False, base_batch_size=8)  # scaleout sets lr itself
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
