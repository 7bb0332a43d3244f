# Detection quickstart (`make demo`): Mask R-CNN + FPN on Conv2Former-N, trained from scratch for 300 iterations of
# 4 images on the synthetic shapes dataset (128x128), small enough for a CPU. Make the data first:
#   python tools/dataset_converters/make_synthetic_coco.py --out data/synthetic_coco
# The model is the one of the COCO config below with narrower neck and heads and fewer proposals.
_base_ = '../mask_rcnn/mask-rcnn_conv2former-n_fpn_1x_coco.py'

data_root = 'data/synthetic_coco/'
metainfo = dict(classes=('circle', 'triangle', 'square'), palette=[(220, 20, 60), (0, 130, 255), (60, 180, 75)])
image_scale = (128, 128)

width = 64  # FPN and head channels (COCO: 256): at 256 the RoI heads would take most of a CPU's time
model = dict(
    # No downloaded weights needed: train from scratch (released ImageNet weights would only help).
    # Blocks start switched on: the default layer scale 1e-6 (made for 300 ImageNet epochs) keeps them near-silent
    # for most of a short run from scratch.
    backbone=dict(drop_path_rate=0.0, layer_scale_init_value=1.0, init_cfg=None),
    neck=dict(out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=4 * width, num_classes=3),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width, num_classes=3)),
    # At most 4 objects per image: a few hundred proposals and RoIs instead of COCO's thousands.
    train_cfg=dict(rpn_proposal=dict(nms_pre=600, max_per_img=300), rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# 300 iterations of 4 images, evaluated (bbox and segm AP) at the end; a checkpoint every 100 iterations.
max_iters = 300
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    optimizer=dict(lr=4e-4),
    # From scratch every layer learns at the full lr.
    paramwise_cfg=dict(decay_rate=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters, T_max=max_iters - 50, eta_min=4e-6),
]
default_hooks = dict(
    # log_metric_by_epoch=False: validation metrics go to scalars.json at their iteration (mmdet's logger keys them
    # by epoch, which an iteration-based loop leaves at 0)
    logger=dict(interval=25, log_metric_by_epoch=False),
    checkpoint=dict(by_epoch=False, interval=100, max_keep_ckpts=2),
    # Pictures of ground truth | prediction for every 4th validation batch, in <work_dir>/<timestamp>/vis_data/.
    visualization=dict(draw=True, interval=4))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=4)
