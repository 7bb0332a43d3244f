# 12 epochs (lr x0.1 after epochs 8 and 11) with AdamW and layer-wise lr decay, ConvNeXt's detection recipe:
# lr 1e-4 at 16 images per step, weight decay 0.05 (none on norms, biases and layer scales), 1000 warm-up iters.
# Layer-wise decay 0.95 over the backbone's 14 layers: the stem learns at 0.95**13 = 0.51 of the heads' lr.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    # Without `constructor` the decay settings would be silently ignored.
    constructor='mmconv2former.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise'))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
