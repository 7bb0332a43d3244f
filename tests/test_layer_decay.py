import pytest
import torch.nn as nn
from mmengine.optim import build_optim_wrapper

import mmconv2former  # noqa: F401
from mmconv2former.models.backbones.conv2former import ARCH_SETTINGS, Conv2Former


class Detector(nn.Module):
    def __init__(self, arch):
        super().__init__()
        self.backbone = Conv2Former(arch=arch)
        self.neck = nn.Conv2d(8, 8, 1)


def build(model, **paramwise):
    return build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
        constructor='mmconv2former.LayerDecayOptimWrapperConstructor', paramwise_cfg=paramwise))


def depth_order(name):
    """A parameter's position along the network, from the input to the heads."""
    parts = name.split('.')
    if parts[0] != 'backbone' or parts[1].startswith('norm'):
        return (9,)
    stage = int(parts[2])
    return (stage, 0) if parts[1] == 'downsample_layers' else (stage, 1 + int(parts[3]))


@pytest.mark.parametrize('decay_type', ['layer_wise', 'stage_wise'])
@pytest.mark.parametrize('arch', sorted(ARCH_SETTINGS))
def test_decay_table_is_bounded_and_monotonic(arch, decay_type):
    model = Detector(arch)
    groups = build(model, decay_rate=0.9, decay_type=decay_type).optimizer.param_groups
    scale_of = {name: g['lr_scale'] for g in groups for name in g['param_names']}
    assert set(scale_of) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(0 < s <= 1 for s in scale_of.values())
    ordered = sorted(scale_of, key=depth_order)
    scales = [scale_of[n] for n in ordered]
    assert scales == sorted(scales), 'lr scales must not decrease with depth'
    assert scale_of['neck.weight'] == 1 and scale_of['backbone.norm3.weight'] == 1
    num_layers = 14 if decay_type == 'layer_wise' else 6
    assert scale_of['backbone.downsample_layers.0.0.weight'] == pytest.approx(0.9 ** (num_layers - 1))
    for group in groups:
        for name, param in zip(group['param_names'], group['params']):
            assert group['weight_decay'] == (0 if param.ndim <= 1 else 0.05), name
            assert group['lr'] == pytest.approx(1e-4 * group['lr_scale'])


def test_layer_ids_of_tiny():
    model = Conv2Former(arch='tiny')
    ids = [model.get_layer_depth(f'stages.2.{j}.attn.v.weight')[0] for j in range(12)]
    assert ids == [3, 3, 4, 5, 6, 6, 7, 8, 9, 9, 10, 11]
    assert model.get_layer_depth('downsample_layers.2.1.weight')[0] == 3
    assert model.get_layer_depth('downsample_layers.3.1.weight')[0] == 12
    assert model.get_layer_depth('stages.1.2.mlp.fc1.weight')[0] == 2
    assert model.get_layer_depth('norm2.weight') == (13, 14)
    # ConvNeXt's mapping (3 + j // 3) for a 27-block third stage
    base_like = Conv2Former(arch=dict(depths=(1, 1, 27, 1), dims=(8, 8, 8, 8), kernel_size=3))
    assert [base_like.get_layer_depth(f'stages.2.{j}.v')[0] for j in range(27)] == [3 + j // 3 for j in range(27)]


@pytest.mark.parametrize('paramwise,field', [
    (dict(decay_rate=1.5), 'decay_rate'), (dict(decay_rate=0), 'decay_rate'), (dict(), 'decay_rate'),
    (dict(decay_rate=0.9, decay_type='block'), 'decay_type'), (dict(decay_rate=0.9, num_layers=12), 'num_layers'),
])
def test_bad_paramwise_cfg(paramwise, field):
    with pytest.raises(ValueError, match=field):
        build(Detector('nano'), **paramwise)


def test_model_without_conv2former_is_refused():
    with pytest.raises(TypeError, match='get_layer_depth'):
        build(nn.Linear(2, 2), decay_rate=0.9)


def test_frozen_parameters_are_left_out():
    model = Detector('nano')
    model.backbone = Conv2Former(arch='nano', frozen_stages=1)
    names = {n for g in build(model, decay_rate=0.9).optimizer.param_groups for n in g['param_names']}
    assert not any(n.startswith(('backbone.stages.0', 'backbone.downsample_layers.0')) for n in names)
