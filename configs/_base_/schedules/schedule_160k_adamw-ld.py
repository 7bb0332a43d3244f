# ConvNeXt's ADE20K recipe (also the Conv2Former paper's): AdamW lr 1e-4, wd 0.05,
# stage-wise lr decay 0.9, 1500 linear warm-up iterations then poly (power 1) to 0.
_base_ = 'mmseg::_base_/schedules/schedule_160k.py'
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    # Without `constructor` here the decay settings would be silently ignored.
    constructor='mmconv2former.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise'))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=160000),
]
# The lr above is for 16 images per step (8 GPUs x 2); tools/train.py --auto-scale-lr rescales it for others.
auto_scale_lr = dict(enable=False, base_batch_size=16)
