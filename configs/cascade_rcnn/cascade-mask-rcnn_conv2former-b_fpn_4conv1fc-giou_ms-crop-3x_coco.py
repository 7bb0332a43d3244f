_base_ = './cascade-mask-rcnn_conv2former-t_fpn_4conv1fc-giou_ms-crop-3x_coco.py'
# ImageNet-1k Conv2Former-B, downloaded by hand (see docs/detection.md: which file, where to put it).
checkpoint_file = 'checkpoints/conv2former-b_in1k.pth.tar'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.9, init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[96, 192, 384, 768]))
