# Quickstart: UperNet Conv2Former-N trained from scratch on the synthetic
# ADE20K-layout dataset, on one CPU in a few minutes. Make the data first:
#   python tools/dataset_converters/make_synthetic_ade.py --out data/synthetic_ade
# then: python tools/train.py <this config>  (tools/misc/demo.sh segmentation does both).
_base_ = [
    '../_base_/models/upernet_conv2former.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_160k.py'
]
crop_size = (64, 64)
max_iters = 300
# Must match mmconv2former.datasets.synthetic_ade.CLASSES / PALETTE (a test checks).
metainfo = dict(
    classes=('sky', 'ground', 'circle', 'rectangle', 'stripes', 'checkerboard'),
    palette=[[6, 230, 230], [120, 120, 70], [255, 51, 7], [204, 5, 255],
             [255, 184, 6], [11, 102, 255]])

# Narrow heads (UperNet's default 512 channels would dominate the CPU time).
model = dict(
    data_preprocessor=dict(size=crop_size),
    # Blocks start switched on: the default layer scale 1e-6 (made for 300 ImageNet
    # epochs) keeps them near-silent for all of a 300-iteration run.
    backbone=dict(arch='nano', layer_scale_init_value=1.0),
    decode_head=dict(in_channels=[64, 128, 256, 512], channels=64, num_classes=6),
    auxiliary_head=dict(in_channels=256, channels=32, num_classes=6))

# ADE20K's pipeline scaled down for CPU: images (~256 px) resized to a short side
# of 128-256, 64x64 crops; tested at 192.
scale = (1024, 192)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=scale, ratio_range=(0.67, 1.33), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
# Same folder layout as ADE20K; BaseSegDataset because the classes differ.
dataset = dict(
    type='BaseSegDataset',
    data_root='data/synthetic_ade',
    metainfo=metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True)
train_dataloader = dict(
    batch_size=4, num_workers=1, dataset=dict(**dataset, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=1, dataset=dict(**dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader

# From scratch, so a larger lr than the fine-tuning recipe and no layer decay.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    # fused: one kernel for all parameters, ~3x faster steps on CPU (torch >= 2.4).
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05, fused=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=20, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
auto_scale_lr = dict(enable=False, base_batch_size=4)  # --auto-scale-lr: the lr above is for 4 images per step
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1),
    # Draws ground truth | prediction for every 10th validation image into
    # <work_dir>/<timestamp>/vis_data/vis_image/.
    visualization=dict(draw=True, interval=10))
randomness = dict(seed=0)
