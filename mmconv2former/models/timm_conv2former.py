"""The released Conv2Former classifier, registered with timm (`timm.create_model('conv2former_tiny')`).

Same modules and parameter names as the backbone (`Conv2FormerBody`), plus the released `head`/`pred`, so one
implementation serves classification, `features_only=True` feature extraction and mm* downstream tasks.
"""
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from .backbones.conv2former import ARCH_SETTINGS, NUM_STAGES, Conv2FormerBody, LayerNorm2d
from .checkpoint import release_to_backbone, select_state_dict


class Conv2FormerClassifier(Conv2FormerBody):
    """Body + `head` (1x1 conv to 1280, GELU, LayerNorm) + global average pool + `pred` (linear)."""

    def __init__(self, arch='tiny', in_chans: int = 3, num_classes: int = 1000, drop_path_rate: float = 0.,
                 head_dim: int = 1280, global_pool: str = 'avg', **kwargs):
        super().__init__(arch, in_chans, drop_path_rate, **kwargs)
        if global_pool != 'avg':
            raise ValueError(f"Conv2Former supports only global_pool='avg', got {global_pool!r}.")
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = head_dim
        self.head = nn.Sequential(nn.Conv2d(self.dims[-1], head_dim, 1), nn.GELU(), LayerNorm2d(head_dim))
        self.pred = nn.Linear(head_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.init_weights_from_scratch()

    def get_classifier(self) -> nn.Module:
        return self.pred

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        self.pred = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head(x).mean((2, 3))
        return x if pre_logits else self.pred(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Union[int, List[int]]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = 'NCHW',
                              intermediates_only: bool = False):
        """timm's feature API (used by `features_only=True`): outputs of the requested stages."""
        if output_fmt != 'NCHW':
            raise ValueError(f"Conv2Former only outputs 'NCHW' features, got output_fmt={output_fmt!r}.")
        take, max_index = feature_take_indices(NUM_STAGES, indices)
        intermediates = []
        last = max_index if stop_early or intermediates_only else NUM_STAGES - 1
        for i in range(last + 1):
            x = self.stages[i](self.downsample_layers[i](x))
            if i in take:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> Tuple[int, ...]:
        take, max_index = feature_take_indices(NUM_STAGES, indices)
        self.stages = self.stages[:max_index + 1]
        self.downsample_layers = self.downsample_layers[:max_index + 1]
        if prune_head:
            self.head = nn.Identity()
            self.reset_classifier(0)
        return take


def checkpoint_filter_fn(state_dict: dict, model: Conv2FormerClassifier) -> dict:
    """Accept a released `.pth.tar` dict (its `state_dict`) or a plain state dict; keep the head if it fits."""
    weights, _ = select_state_dict(state_dict)
    body, classifier = release_to_backbone(weights)
    if model.num_classes > 0:
        body.update(classifier)
    return body


def _cfg(**kwargs) -> dict:
    # No url: the releases are only downloadable by hand; pass pretrained_cfg_overlay=dict(file=PATH).
    return dict(url='', num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.9,
                interpolation='bicubic', mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                first_conv='downsample_layers.0.0', classifier='pred', license='mit', **kwargs)


default_cfgs = generate_default_cfgs({f'conv2former_{name}': _cfg() for name in ARCH_SETTINGS})


def _create(variant: str, arch: str, pretrained: bool = False, **kwargs) -> Conv2FormerClassifier:
    kwargs.setdefault('arch', dict(ARCH_SETTINGS[arch]))
    return build_model_with_cfg(
        Conv2FormerClassifier, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls='getter'),
        **kwargs)


@register_model
def conv2former_nano(pretrained=False, **kwargs):
    return _create('conv2former_nano', 'nano', pretrained, **kwargs)


@register_model
def conv2former_tiny(pretrained=False, **kwargs):
    return _create('conv2former_tiny', 'tiny', pretrained, **kwargs)


@register_model
def conv2former_small(pretrained=False, **kwargs):
    return _create('conv2former_small', 'small', pretrained, **kwargs)


@register_model
def conv2former_base(pretrained=False, **kwargs):
    return _create('conv2former_base', 'base', pretrained, **kwargs)


@register_model
def conv2former_large(pretrained=False, **kwargs):
    return _create('conv2former_large', 'large', pretrained, **kwargs)
