# UperNet + auxiliary FCN head on a Conv2Former backbone: mmseg's UperNet base
# with the backbone swapped. Leaf configs set `arch`, `drop_path_rate`, the
# checkpoint and, for nano/base/large, the head widths (the ones below are
# tiny's and small's stage widths).
_base_ = ['mmseg::_base_/models/upernet_r50.py', '../conv2former_runtime.py']

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    # mmseg's base sets a ResNet-50 checkpoint here, which EncoderDecoder would
    # push into our backbone: weights come only from backbone.init_cfg.
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmconv2former.Conv2Former',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        # The stem's BatchNorms see 2 images per GPU: synchronise them like the
        # heads' norms. mmengine turns SyncBN into BN when not distributed.
        norm_cfg=norm_cfg,
        # Training crops and sliding-window test windows all have one shape:
        # replay the backbone from CUDA graphs (no kernel-launch host time:
        # UperNet-T iterations 1.35-1.45x faster on H200s, see
        # docs/segmentation.md). The fused fast path only; set False to run
        # eagerly.
        cuda_graph=True),
    decode_head=dict(in_channels=[72, 144, 288, 576]),
    auxiliary_head=dict(in_channels=288))
