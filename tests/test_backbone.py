import pytest
import torch
from mmengine.registry import MODELS as ROOT_MODELS
from reference_conv2former import RefConv2Former, randomize_
from torch.nn.modules.batchnorm import _BatchNorm

import mmconv2former  # noqa: F401  (registers the backbone)
from mmconv2former.models.backbones.conv2former import ARCH_SETTINGS, Conv2Former

BACKBONE_PARAMS_M = {'nano': 13.05, 'tiny': 24.68, 'small': 48.01, 'base': 87.76, 'large': 196.30}


def backbone_params(model):
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith('norm')) / 1e6


@pytest.mark.parametrize('arch', sorted(ARCH_SETTINGS))
def test_every_variant_shapes_strides_and_size(arch):
    model = Conv2Former(arch=arch).eval()
    assert backbone_params(model) == pytest.approx(BACKBONE_PARAMS_M[arch], abs=0.006)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    dims = ARCH_SETTINGS[arch]['dims']
    assert [tuple(o.shape) for o in outs] == [(1, dims[i], 64 // 2 ** (i + 2), 96 // 2 ** (i + 2)) for i in range(4)]
    assert model.out_channels == dims


@pytest.mark.parametrize('size,expected', [
    ((511, 511), [(128, 128), (64, 64), (32, 32), (16, 16)]),
    ((112, 137), [(28, 34), (14, 17), (7, 8), (3, 4)]),
    ((31, 33), [(8, 8), (4, 4), (2, 2), (1, 1)]),
])
def test_odd_input_sizes(size, expected):
    model = Conv2Former(arch='nano').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert [tuple(o.shape[-2:]) for o in outs] == expected


def test_registered_in_mmdet_and_mmseg_scopes():
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    for registry in (DET_MODELS, SEG_MODELS, ROOT_MODELS):
        model = registry.build(dict(type='mmconv2former.Conv2Former', arch='nano', out_indices=(1, 3)))
        assert isinstance(model, Conv2Former)


@pytest.mark.parametrize('out_indices,expected', [(3, (3,)), (-1, (3,)), ((0, -2), (0, 2)), ([-4, 1], (0, 1))])
def test_out_indices_forms_and_norms(out_indices, expected):
    model = Conv2Former(arch='nano', out_indices=out_indices)
    assert model.out_indices == expected
    assert {n.split('.')[0] for n, _ in model.named_parameters() if n.startswith('norm')} == {
        f'norm{i}' for i in expected}
    outs = model(torch.randn(2, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [model.dims[i] for i in expected]


def test_stages_after_last_output_are_not_run_and_frozen():
    model = Conv2Former(arch='nano', out_indices=(1,))
    model.train()
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.sum() for o in outs).backward()
    for name, param in model.named_parameters():
        if name.startswith(('stages.2', 'stages.3', 'downsample_layers.2', 'downsample_layers.3')):
            assert not param.requires_grad and param.grad is None
        else:
            assert param.requires_grad and param.grad is not None, name


@pytest.mark.parametrize('kwargs,field', [
    (dict(arch='huge'), 'arch'), (dict(arch=dict(depths=(1, 1, 1), dims=(8, 8, 8), kernel_size=3)), 'depths'),
    (dict(arch=dict(depths=(1,) * 4, dims=(8,) * 4, kernel_size=4)), 'kernel_size'),
    (dict(arch=dict(depths=(1,) * 4, dims=(8,) * 4)), 'kernel_size'),
    (dict(out_indices=4), 'out_indices'), (dict(out_indices=(0, -4)), 'out_indices'),
    (dict(out_indices=()), 'out_indices'),
    (dict(frozen_stages=5), 'frozen_stages'), (dict(frozen_stages=-2), 'frozen_stages'),
    (dict(fast_path='yes'), 'fast_path'), (dict(in_channels=0), 'in_channels'), (dict(drop_path_rate=1.5), 'drop_path'),
    (dict(pretrained='open-mmlab://resnet50_v1c'), 'pretrained must be None'),
])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Conv2Former(**kwargs)


def test_arch_dict_and_aliases():
    model = Conv2Former(arch=dict(depths=(1, 1, 2, 1), dims=(16, 32, 48, 64), kernel_size=7))
    assert model.kernel_size == 7 and model.stages[0][0].attn.att[2].kernel_size == (7, 7)
    assert Conv2Former(arch='T').dims == ARCH_SETTINGS['tiny']['dims']


def test_input_errors_are_clear():
    model = Conv2Former(arch='nano')
    with pytest.raises(ValueError, match=r'\(N, 3, H, W\)'):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match='smaller than 31'):
        model(torch.randn(1, 3, 30, 64))


def test_parity_with_reference_fp32():
    torch.manual_seed(0)
    settings = ARCH_SETTINGS['tiny']
    ref = randomize_(RefConv2Former(**settings)).eval()
    model = Conv2Former(arch='tiny').eval()
    body = {k: v for k, v in ref.state_dict().items() if not k.startswith(('head', 'pred'))}
    missing, unexpected = model.load_state_dict(body, strict=False)
    assert not unexpected and all(k.startswith('norm') for k in missing)
    x = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        ref_outs = ref.stage_outputs(x)
        outs = model(x)
    for i, (ref_out, out) in enumerate(zip(ref_outs, outs)):
        norm = getattr(model, f'norm{i}')
        expected = torch.nn.functional.layer_norm(ref_out.permute(0, 2, 3, 1), norm.normalized_shape, norm.weight,
                                                  norm.bias, 1e-6).permute(0, 3, 1, 2)
        assert (out - expected).abs().max() <= 1e-5 * expected.abs().max()
        # the stage map itself, without the output norm, against the reference's unnormalised output
    assert ref_outs[-1].abs().max() > 0


def _frozen_and_trainable(model, frozen_prefixes):
    for name, param in model.named_parameters():
        assert param.requires_grad == (not name.startswith(frozen_prefixes)), name


@pytest.mark.parametrize('frozen_stages,prefixes', [
    (-1, ()),
    (0, ('downsample_layers.0',)),
    (2, ('downsample_layers.0', 'downsample_layers.1', 'stages.0', 'stages.1', 'norm0', 'norm1')),
    (4, ('downsample_layers', 'stages', 'norm')),
])
def test_frozen_stages(frozen_stages, prefixes):
    model = Conv2Former(arch='nano', frozen_stages=frozen_stages)
    model.train()
    _frozen_and_trainable(model, prefixes or ('__none__',))
    for name, module in model.named_modules():
        if name.startswith(prefixes or ('__none__',)) and not list(module.children()):  # leaf layers
            assert not module.training, name
    assert model.stages[3].training == (frozen_stages < 4)


def test_norm_eval_keeps_stem_batchnorm_stats():
    model = Conv2Former(arch='nano', norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert len(bns) == 2 and not any(bn.training for bn in bns)
    before = bns[0].running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(before, bns[0].running_mean)
    assert model.stages[0].training


def test_with_cp_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = Conv2Former(arch='nano', drop_path_rate=0.)
    randomize_(plain)
    ckpt = Conv2Former(arch='nano', with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    results = []
    for model in (plain, ckpt):
        model.train()
        xi = x.clone().requires_grad_()
        outs = model(xi)
        sum((o * torch.linspace(0, 1, o.numel()).view_as(o)).sum() for o in outs).backward()
        results.append((outs, xi.grad, {n: p.grad for n, p in model.named_parameters()}))
    (outs_a, gx_a, grads_a), (outs_b, gx_b, grads_b) = results
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(gx_a, gx_b)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], msg=name)


def test_drop_path_rates_grow_linearly():
    model = Conv2Former(arch='nano', drop_path_rate=0.3)
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, 'drop_prob') else 0. for s in model.stages for b in s]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.3) and rates == sorted(rates) and len(rates) == 14


def test_fast_path_is_not_used_on_cpu():
    model = Conv2Former(arch='nano', fast_path=True)
    assert model._use_fast_path(torch.randn(1, 3, 64, 64)) is False


def test_channel_layernorm_keeps_the_memory_format():
    """LayerNorm2d returns what it was given: NCHW for the reference path, channels-last (no copy) for the fast
    path, whose stem and downsampling layers run channels-last; same values either way."""
    from mmconv2former.models.backbones.conv2former import LayerNorm2d
    norm = LayerNorm2d(16)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 16, 5, 7)
    y = norm(x)
    y_cl = norm(x.contiguous(memory_format=torch.channels_last))
    assert y.is_contiguous()
    assert y_cl.is_contiguous(memory_format=torch.channels_last) and not y_cl.is_contiguous()
    assert torch.allclose(y, y_cl, atol=1e-6)


def test_init_weights_from_scratch_logs_and_initialises():
    model = Conv2Former(arch='nano')
    model.init_weights()
    weight = model.stages[2][0].attn.v.weight
    assert weight.std().item() == pytest.approx(0.02, rel=0.2)
    assert torch.all(model.stages[2][0].attn.v.bias == 0)
    assert torch.all(model.stages[0][0].layer_scale_1 == 1e-6)
