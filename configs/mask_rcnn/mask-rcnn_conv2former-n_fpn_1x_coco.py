_base_ = './mask-rcnn_conv2former-t_fpn_1x_coco.py'
# ImageNet-1k Conv2Former-N, downloaded by hand (see docs/detection.md: which file, where to put it).
checkpoint_file = 'checkpoints/conv2former-n_in1k.pth.tar'
model = dict(
    backbone=dict(arch='nano', drop_path_rate=0.1, init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[64, 128, 256, 512]))
