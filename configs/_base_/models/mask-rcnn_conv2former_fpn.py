# Mask R-CNN + FPN on a Conv2Former backbone: mmdet's Mask R-CNN base with the backbone swapped.
# Leaf configs set `arch`, `drop_path_rate`, the checkpoint and, for nano/base, the FPN input widths
# (the ones below fit tiny and small: 72, 144, 288, 576 channels).
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py', '../conv2former_runtime.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmconv2former.Conv2Former',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        # The stem's BatchNorms see 2 images per GPU: synchronise them across GPUs.
        # mmengine turns SyncBN into BN when training is not distributed.
        norm_cfg=dict(type='SyncBN', requires_grad=True)),  # no init_cfg: leaf configs name the weights
    neck=dict(in_channels=[72, 144, 288, 576]))
