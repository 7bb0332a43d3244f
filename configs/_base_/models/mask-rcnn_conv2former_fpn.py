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
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        # Replay the backbone from CUDA graphs, one per batch shape: keep-ratio batches are padded to a multiple
        # of 32, so their shapes repeat (a Mask R-CNN-T iteration 1.2x faster once its shape has been seen, about
        # 0.3 s more for a new one; one memory pool for all shapes; docs/detection.md). The fused fast path
        # only; set False to run eagerly.
        cuda_graph=True),  # no init_cfg: leaf configs name the weights
    neck=dict(in_channels=[72, 144, 288, 576]))
