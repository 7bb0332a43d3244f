# Cascade Mask R-CNN + FPN on a Conv2Former backbone, with ConvNeXt's detection recipe for the box heads
# (4 shared convs + 1 fc, SyncBN, GIoU loss on decoded boxes) in each of the three stages.
# Leaf configs set `arch`, `drop_path_rate`, the checkpoint and, for base, the FPN input widths.
_base_ = ['mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py', '../conv2former_runtime.py']

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmconv2former.Conv2Former',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        norm_cfg=norm_cfg,  # SyncBN stem: see mask-rcnn_conv2former_fpn.py; leaf configs name the weights
        cuda_graph=True),  # CUDA graphs per batch shape: see mask-rcnn_conv2former_fpn.py
    neck=dict(in_channels=[72, 144, 288, 576]),
    roi_head=dict(bbox_head=[
        dict(
            type='ConvFCBBoxHead',
            num_shared_convs=4,
            num_shared_fcs=1,
            in_channels=256,
            conv_out_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=target_stds),
            reg_class_agnostic=False,
            reg_decoded_bbox=True,
            norm_cfg=norm_cfg,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
        # One head per cascade stage; each stage regresses finer offsets (the stds of mmdet's cascade base).
        for target_stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])
    ]))
