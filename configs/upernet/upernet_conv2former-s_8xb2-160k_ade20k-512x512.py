_base_ = './upernet_conv2former-t_8xb2-160k_ade20k-512x512.py'
checkpoint_file = 'checkpoints/conv2former-s_in1k.pth.tar'
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint=checkpoint_file)))
