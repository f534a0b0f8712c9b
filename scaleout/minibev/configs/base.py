# minibev "base": a bigger mini BEVFormer for a GPU (bf16 AMP, channels_last, fused AdamW,
# micro-batches of 32 per forward). Same task and recipe shape as small.py, 3 encoder layers,
# finer BEV grid and larger images. Not calibrated; a CPU run works but takes hours.
_base_ = ["./_base_runtime.py"]

bev_range = 24.0
image_size = (48, 96)
train_samples = 3200  # divides by 8, 16, 32, 80 and 160: whole iterations at every global batch
epochs = 24

reference = dict(
    gpus=8,
    samples_per_gpu=1,
    lr=1e-3,
    warmup_iters=500,
    warmup_ratio=1.0 / 3,
    min_lr_ratio=1e-3,
    epochs=epochs,
    train_samples=train_samples,
)
virtual_gpus = 8  # the data-parallel GPU count emulated; global batch = virtual_gpus x batch_size

model = dict(
    type="MiniBEV",
    embed_dims=64,
    bev_size=32,
    bev_range=bev_range,
    image_size=image_size,
    backbone_stride=2,
    num_layers=3,
    num_z=4,
    num_points=4,
    topk=100,
    heatmap_prior=0.1,
    pre_norm=True,
    micro_batch=32,  # samples per forward/backward; a process accumulates its share in these
)
_scene = dict(bev_range=bev_range, min_objects=2, max_objects=12, noise=0.03)
_dataset = dict(image_size=image_size, scene=_scene)
train_dataloader = dict(
    num_workers=2, persistent_workers=True, dataset=dict(_dataset, num_samples=train_samples)
)
val_dataloader = dict(num_workers=2, dataset=dict(_dataset, num_samples=640))
val_evaluator = dict(class_range=bev_range)
train_cfg = dict(max_epochs=epochs)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type="LinearLR", start_factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(
        type="CosineAnnealingLR",
        by_epoch=True,
        begin=0,
        end=epochs,
        T_max=epochs,
        eta_min_ratio=1e-3,
        convert_to_iter_based=True,
    ),
]
randomness = dict(seed=0)
default_hooks = dict(logger=dict(interval=50))
custom_hooks = [
    dict(type="MiniBEVLayoutHook"),
    dict(type="MiniBEVThroughputHook"),
    dict(type="MiniBEVGradStatsHook", interval=50),
]
speed = dict(amp="bf16", compile=False, channels_last=True, fused_adamw=True, pin_memory=True)
