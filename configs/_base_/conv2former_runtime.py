# What every mmconv2former config needs, whatever the library: the plugin import (registers the backbone, the
# layer-decay constructor and these hooks) and the training-safety hooks:
# - FiniteLossHook stops on a NaN/Inf loss with the iteration, before a checkpoint of bad weights is written;
# - RandomStateHook saves the RNG states in checkpoints, so a resumed deterministic run repeats an uninterrupted one;
# and one for speed:
# - SingleThreadBackwardHook runs the backward passes on the training thread instead of handing each to the autograd
#   engine's CUDA thread (whole Mask R-CNN-T/UperNet-T iterations on one GPU and under DDP: 0-12% faster, never
#   slower, a little less memory; docs/performance.md). CPU runs are unaffected.
custom_imports = dict(imports=['mmconv2former'], allow_failed_imports=False)
custom_hooks = [
    dict(type='mmconv2former.FiniteLossHook'),
    dict(type='mmconv2former.RandomStateHook'),
    dict(type='mmconv2former.SingleThreadBackwardHook'),
]
