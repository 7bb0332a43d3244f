"""Layer-wise learning-rate decay for Conv2Former (every variant).

mmdet's/mmseg's `LearningRateDecayOptimizerConstructor` accepts only backbones named "ConvNeXt" and maps stage 3
blocks to `3 + block_id // 3`, which overflows its 12 layers (lr scales above 1) for stage depths of 32-48. This
constructor asks the backbone for each parameter's layer (`Conv2Former.get_layer_depth`), which is bounded and
monotonic for every variant.
"""
from collections import defaultdict
from typing import List

import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor

from ...registry import OPTIM_WRAPPER_CONSTRUCTORS

ALLOWED_KEYS = {'decay_rate', 'decay_type'}


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """paramwise_cfg=dict(decay_rate=0.9, decay_type='layer_wise' | 'stage_wise').

    A parameter of layer `i` of `n` gets lr * decay_rate ** (n - 1 - i); the neck and heads are layer n - 1
    (scale 1). Norm weights, biases and layer scales (every parameter with ndim <= 1) get no weight decay.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = set(paramwise_cfg) - ALLOWED_KEYS
        if unknown:
            raise ValueError(f'LayerDecayOptimWrapperConstructor: unknown paramwise_cfg keys {sorted(unknown)}; '
                             f'allowed: {sorted(ALLOWED_KEYS)}.')
        decay_rate = paramwise_cfg.get('decay_rate')
        if not isinstance(decay_rate, (int, float)) or not 0 < decay_rate <= 1:
            raise ValueError(f'LayerDecayOptimWrapperConstructor: paramwise_cfg.decay_rate must be a number in '
                             f'(0, 1], got {decay_rate!r}.')
        decay_type = paramwise_cfg.setdefault('decay_type', 'layer_wise')
        if decay_type not in ('layer_wise', 'stage_wise'):
            raise ValueError(f"LayerDecayOptimWrapperConstructor: paramwise_cfg.decay_type must be 'layer_wise' "
                             f"or 'stage_wise', got {decay_type!r}.")
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    @staticmethod
    def _find_backbone(module: nn.Module):
        for prefix, candidate in (('backbone.', getattr(module, 'backbone', None)), ('', module)):
            if candidate is not None and hasattr(candidate, 'get_layer_depth'):
                return prefix, candidate
        raise TypeError(f'LayerDecayOptimWrapperConstructor needs a model whose backbone has get_layer_depth() '
                        f'(mmconv2former.Conv2Former); got {type(module).__name__}.')

    def add_params(self, params: List[dict], module: nn.Module, **kwargs) -> None:
        decay_rate = self.paramwise_cfg['decay_rate']
        decay_type = self.paramwise_cfg['decay_type']
        prefix, backbone = self._find_backbone(module)
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            if prefix and not name.startswith(prefix):
                layer_id, num_layers = backbone.get_layer_depth('', decay_type)  # outside the backbone: top
            else:
                layer_id, num_layers = backbone.get_layer_depth(name[len(prefix):], decay_type)
            no_decay = param.ndim <= 1
            key = f'layer_{layer_id}_{"no_decay" if no_decay else "decay"}'
            if key not in groups:
                scale = decay_rate ** (num_layers - layer_id - 1)
                groups[key] = dict(params=[], param_names=[], lr_scale=scale, lr=scale * self.base_lr,
                                   weight_decay=0. if no_decay else self.base_wd, group_name=key)
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)
        params.extend(groups.values())
        self._log_summary(groups, decay_type, decay_rate)

    @staticmethod
    def _log_summary(groups: dict, decay_type: str, decay_rate: float):
        per_layer = defaultdict(lambda: [0, 0.])
        for key, group in groups.items():
            layer = int(key.split('_')[1])
            per_layer[layer][0] += sum(p.numel() for p in group['params'])
            per_layer[layer][1] = group['lr_scale']
        rows = ', '.join(f'{layer}: x{scale:.3g} ({count / 1e6:.2f}M)'
                         for layer, (count, scale) in sorted(per_layer.items()))
        MMLogger.get_current_instance().info(
            f'Layer-wise lr decay ({decay_type}, rate {decay_rate}): layer: lr scale (params) -> {rows}')
