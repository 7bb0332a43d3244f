_base_ = './upernet_conv2former-t_8xb2-160k_ade20k-512x512.py'
checkpoint_file = 'checkpoints/conv2former-b_in1k.pth.tar'
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint=checkpoint_file)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
