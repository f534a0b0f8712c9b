# minibev "tiny": the test preset. One run at 160 virtual GPUs takes a few seconds on 2 CPU
# cores. Not calibrated: it checks plumbing, not the large-batch effect (see small.py).
_base_ = ["./_base_runtime.py"]

bev_range = 24.0
image_size = (16, 32)
train_samples = 160  # divides by 8, 16, 32, 80 and 160: whole iterations at every global batch
epochs = 3

# The reference recipe (8 GPUs x 1 sample): what scaleout scales from. The defaults below equal it.
reference = dict(
    gpus=8,
    samples_per_gpu=1,
    lr=2e-3,
    warmup_iters=10,
    warmup_ratio=1.0 / 3,
    min_lr_ratio=1e-3,
    epochs=epochs,
    train_samples=train_samples,
)
virtual_gpus = 8  # the data-parallel GPU count emulated; global batch = virtual_gpus x batch_size

model = dict(
    type="MiniBEV",
    embed_dims=16,
    bev_size=12,
    bev_range=bev_range,
    image_size=image_size,
    backbone_stride=2,
    num_layers=1,
    num_z=3,
    num_points=2,
    topk=20,
    heatmap_prior=0.1,
    pre_norm=True,
    micro_batch=None,
)
_scene = dict(bev_range=bev_range, min_objects=4, max_objects=10, noise=0.03)
_dataset = dict(image_size=image_size, scene=_scene)
train_dataloader = dict(dataset=dict(_dataset, num_samples=train_samples))
val_dataloader = dict(dataset=dict(_dataset, num_samples=64))
val_evaluator = dict(class_range=bev_range)
train_cfg = dict(max_epochs=epochs)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type="LinearLR", start_factor=1.0 / 3, by_epoch=False, begin=0, end=10),
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
default_hooks = dict(logger=dict(interval=5))
custom_hooks = [
    dict(type="MiniBEVLayoutHook"),
    dict(type="MiniBEVThroughputHook"),
    dict(type="MiniBEVGradStatsHook", interval=5),
]
