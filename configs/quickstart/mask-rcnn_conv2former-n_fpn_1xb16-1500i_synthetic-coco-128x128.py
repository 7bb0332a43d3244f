# The detection quickstart trained long enough to learn the task (the learning evidence in docs/detection.md,
# one GPU, ~5 min on an H100). Make 3000 training images first (validation stays the quickstart's 48):
#   python tools/dataset_converters/make_synthetic_coco.py --out data/synthetic_coco --num-train 3000
_base_ = './mask-rcnn_conv2former-n_fpn_1xb4-300i_synthetic-coco-128x128.py'

max_iters = 1500
train_dataloader = dict(batch_size=16, num_workers=6, persistent_workers=True)
val_dataloader = dict(num_workers=2)
test_dataloader = val_dataloader
train_cfg = dict(max_iters=max_iters, val_interval=500)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters, T_max=max_iters - 100, eta_min=1e-5),
]
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=16)
