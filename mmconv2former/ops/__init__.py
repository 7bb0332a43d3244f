"""Fast path of the Conv2Former block: fused Triton kernels with hand-written backward, used on CUDA tensors.

`fast_path_available(x)` says whether it runs for `x`; `block_forward_channels_last(block, x)` computes
`block.forward` on a channels-last (N, H, W, C) tensor with it (falling back to the module elsewhere).
Importing this package needs no GPU; on CPU the backbone keeps the reference path.
"""
from .fast_block import (
    block_forward_channels_last,
    compute_dtype,
    convmod_forward_channels_last,
    fast_path_available,
    layer_norm_channels_last,
)

__all__ = ['fast_path_available', 'block_forward_channels_last', 'convmod_forward_channels_last', 'compute_dtype',
           'layer_norm_channels_last']
