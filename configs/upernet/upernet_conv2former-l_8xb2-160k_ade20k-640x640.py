_base_ = [
    '../_base_/models/upernet_conv2former.py', 'mmseg::_base_/datasets/ade20k_640x640.py',
    'mmseg::_base_/default_runtime.py', '../_base_/schedules/schedule_160k_adamw-ld.py'
]
# ImageNet-22k pre-trained, 1k fine-tuned (384 px) Conv2Former-L (see docs/segmentation.md).
checkpoint_file = 'checkpoints/conv2former-l_in22k-ft-in1k-384.pth.tar'
crop_size = (640, 640)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='large',
        drop_path_rate=0.4,
        # The non-EMA weights, as ConvNeXt's segmentation recipe used.
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file, checkpoint_key='state_dict')),
    decode_head=dict(in_channels=[128, 256, 512, 1024], num_classes=150),
    auxiliary_head=dict(in_channels=512, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(426, 426)))

# By default, models are trained on 8 GPUs with 2 images per GPU
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
