# The segmentation quickstart trained long enough to learn the task (the learning evidence in docs/segmentation.md,
# one GPU, ~5 min on an H100): 128x128 crops, which hold whole objects, so that the shape and texture that tell the
# classes apart are visible. Make 3000 training images first (validation: the tool's default 50; the CPU demo
# makes the first 20 of them):
#   python tools/dataset_converters/make_synthetic_ade.py --out data/synthetic_ade --num-train 3000 --workers 8
_base_ = './upernet_conv2former-n_1xb4-300_synthetic-ade-64x64.py'

crop_size = (128, 128)
max_iters = 4000
model = dict(data_preprocessor=dict(size=crop_size))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale={{_base_.scale}}, ratio_range=(0.67, 1.33), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=16, num_workers=6, persistent_workers=True, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=2)
test_dataloader = val_dataloader
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=100, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=1000)
auto_scale_lr = dict(base_batch_size=16)
default_hooks = dict(logger=dict(interval=100), checkpoint=dict(interval=max_iters))
