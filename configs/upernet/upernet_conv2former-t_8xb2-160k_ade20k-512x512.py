_base_ = [
    '../_base_/models/upernet_conv2former.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', '../_base_/schedules/schedule_160k_adamw-ld.py'
]
# ImageNet-1k Conv2Former-T, downloaded by hand (see docs/segmentation.md).
checkpoint_file = 'checkpoints/conv2former-t_in1k.pth.tar'
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.4,
        # The non-EMA weights, as ConvNeXt's segmentation recipe used.
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file, checkpoint_key='state_dict')),
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150),
    # Sliding-window single-scale testing, as in ConvNeXt's reported numbers.
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

# By default, models are trained on 8 GPUs with 2 images per GPU
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
