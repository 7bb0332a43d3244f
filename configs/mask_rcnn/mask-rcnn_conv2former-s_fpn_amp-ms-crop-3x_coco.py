_base_ = './mask-rcnn_conv2former-s_fpn_ms-crop-3x_coco.py'
# Mixed precision (fp16 autocast, dynamic loss scale); everything else as the fp32 config.
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
