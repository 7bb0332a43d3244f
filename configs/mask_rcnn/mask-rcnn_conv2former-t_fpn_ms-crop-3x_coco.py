_base_ = [
    '../_base_/models/mask-rcnn_conv2former_fpn.py',
    '../_base_/datasets/coco-instance_ms-crop.py',
    '../_base_/schedules/schedule_3x_adamw-ld.py',
    'mmdet::_base_/default_runtime.py',
]
# ImageNet-1k Conv2Former-T, downloaded by hand (see docs/detection.md: which file, where to put it).
checkpoint_file = 'checkpoints/conv2former-t_in1k.pth.tar'
model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))
