_base_ = './upernet_conv2former-s_8xb2-160k_ade20k-512x512.py'
# Mixed precision (fp16 autocast, dynamic loss scale); everything else as the fp32 config.
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
