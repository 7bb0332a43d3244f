import argparse
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from mmengine.logging import MMLogger
from reference_conv2former import RefConv2Former, randomize_

import mmconv2former  # noqa: F401
from mmconv2former.models.backbones.conv2former import ARCH_SETTINGS
from mmconv2former.models.checkpoint import CheckpointMismatchError, infer_arch
from mmconv2former.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]


def make_release(path, arch='nano', kernel_size=None, seed=0):
    """A file shaped like the authors' releases: timm saver dict with args Namespace, EMA weights and the head."""
    settings = dict(ARCH_SETTINGS[arch])
    if kernel_size:
        settings['kernel_size'] = kernel_size
    ref = randomize_(RefConv2Former(**settings), seed=seed)
    state_dict = {k: v.clone() for k, v in ref.state_dict().items()}  # not aliases of ref's parameters
    ema = {k: v + 1 if v.dtype.is_floating_point else v for k, v in state_dict.items()}
    torch.save(dict(epoch=299, arch=f'conv2former_{arch[0]}', state_dict=state_dict, state_dict_ema=ema,
                    optimizer={'state': {}, 'param_groups': []}, version=2, metric=81.5,
                    args=argparse.Namespace(model=f'conv2former_{arch[0]}', lr=1e-3, drop_path=0.1)), path)
    return ref, state_dict, ema


def convert(*args, check=False):
    """Run tools/model_converters/conv2former_release_to_backbone.py with `args`."""
    return subprocess.run([sys.executable, str(ROOT / 'tools/model_converters/conv2former_release_to_backbone.py'),
                           *map(str, args)], capture_output=True, text=True, check=check)


def build_backbone(checkpoint, arch='nano', **init):
    return MODELS.build(dict(type='mmconv2former.Conv2Former', arch=arch,
                             init_cfg=dict(type='Pretrained', checkpoint=str(checkpoint), **init)))


@pytest.fixture(scope='module')
def release(tmp_path_factory):
    path = tmp_path_factory.mktemp('release') / 'conv2former_n.pth.tar'
    return (path, *make_release(path))


def test_plain_torch_load_refuses_a_release(release):
    path = release[0]
    with pytest.raises(pickle.UnpicklingError, match='argparse.Namespace'):
        torch.load(path, weights_only=True)


def test_release_loads_through_init_cfg(release, capsys):
    path, _, state_dict, _ = release
    model = build_backbone(path)
    model.init_weights()
    loaded = model.state_dict()
    for key, value in state_dict.items():
        if not key.startswith(('head', 'pred')):
            assert torch.equal(loaded[key], value), key


def test_checkpoint_key_selects_ema(release):
    path, _, state_dict, ema = release
    model = build_backbone(path, checkpoint_key='state_dict_ema')
    model.init_weights()
    key = 'stages.2.3.attn.v.weight'
    assert torch.equal(model.state_dict()[key], ema[key]) and not torch.equal(ema[key], state_dict[key])


def test_loading_logs_one_clear_summary(release, tmp_path):
    logger = MMLogger.get_instance('test_ckpt_log', log_file=str(tmp_path / 'log.txt'))
    model = build_backbone(release[0])
    model.init_weights()
    text = (tmp_path / 'log.txt').read_text()
    assert 'dropped the classifier' in text and "[state_dict; the file also has state_dict_ema" in text
    assert 'output norms norm0, norm1, norm2, norm3' in text
    del logger


def test_bad_checkpoint_key(release):
    with pytest.raises(ValueError, match='checkpoint_key'):
        build_backbone(release[0], checkpoint_key='model').init_weights()


def test_kernel_mismatch_names_key_and_shapes(tmp_path):
    path = tmp_path / 'k11.pth.tar'
    make_release(path, 'nano', kernel_size=11)
    with pytest.raises(CheckpointMismatchError, match=r'kernel 11.*attn\.att\.2\.weight.*\(64, 1, 11, 11\).*'
                                                      r'\(64, 1, 7, 7\)'):
        build_backbone(path).init_weights()
    model = build_backbone(path, arch=dict(ARCH_SETTINGS['nano'], kernel_size=11))
    model.init_weights()


def test_other_variant_is_refused(tmp_path):
    path = tmp_path / 'tiny.pth.tar'
    make_release(path, 'tiny')
    with pytest.raises(CheckpointMismatchError, match='Conv2Former-tiny but the model is Conv2Former-nano'):
        build_backbone(path).init_weights()


def test_missing_body_key_is_an_error(tmp_path, release):
    state_dict = dict(release[2])
    del state_dict['stages.1.0.mlp.pos.weight']
    path = tmp_path / 'missing.pth'
    torch.save(state_dict, path)
    with pytest.raises(CheckpointMismatchError, match=r'missing from the checkpoint.*stages\.1\.0\.mlp\.pos\.weight'):
        build_backbone(path).init_weights()


def test_detector_checkpoint_as_backbone_weights(tmp_path, release):
    body = {k: v for k, v in release[2].items() if not k.startswith(('head', 'pred'))}
    path = tmp_path / 'mask_rcnn.pth'
    torch.save(dict(state_dict={**{f'backbone.{k}': v for k, v in body.items()},
                                'rpn_head.rpn_conv.weight': torch.zeros(1)}, meta=dict(epoch=12)), path)
    with pytest.raises(CheckpointMismatchError, match="detector/segmentor checkpoint.*prefix='backbone.'"):
        build_backbone(path).init_weights()
    model = build_backbone(path, prefix='backbone.')
    model.init_weights()
    assert torch.equal(model.state_dict()['stages.3.1.layer_scale_2'], body['stages.3.1.layer_scale_2'])


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'conv2former-t_in1k\.pth\.tar.*Pretrained weights'):
        build_backbone(tmp_path / 'nope.pth.tar', arch='tiny').init_weights()


def test_infer_arch(release):
    assert infer_arch(release[2]) == ARCH_SETTINGS['nano']


def test_offline_converter_round_trip(release, tmp_path):
    out = tmp_path / 'backbone.pth'
    result = convert(release[0], out, '--checkpoint-key', 'state_dict_ema', check=True)
    assert 'Conv2Former-nano' in result.stdout
    converted = torch.load(out, weights_only=True)  # plain tensors only: loads with torch's strictest rules
    assert not any(k.startswith(('head', 'pred')) for k in converted)
    assert torch.equal(converted['stages.0.0.attn.v.weight'], release[3]['stages.0.0.attn.v.weight'])
    model = build_backbone(out)
    model.init_weights()
    assert torch.equal(model.state_dict()['stages.0.0.attn.v.weight'], release[3]['stages.0.0.attn.v.weight'])


def test_timm_classifier_loads_release_and_matches_reference(release):
    path, ref, _, ema = release
    model = timm.create_model('conv2former_nano', pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    ref.load_state_dict(ema)  # timm's file loader takes a release's EMA weights when it has them
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = ref.eval()(x)
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


def test_converter_keeps_the_classifier_for_timm(release, tmp_path):
    """The README's way to the non-EMA weights in timm: convert with --keep-classifier, load the plain file."""
    path, ref, state_dict, _ = release
    out = tmp_path / 'classifier.pth'
    result = convert(path, out, '--checkpoint-key', 'state_dict', '--keep-classifier', check=True)
    assert 'kept its 6 classifier tensors' in result.stdout
    model = timm.create_model('conv2former_nano', pretrained=True, pretrained_cfg_overlay=dict(file=str(out))).eval()
    ref.load_state_dict(state_dict)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = ref.eval()(x)
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


def test_timm_features_only():
    model = timm.create_model('conv2former_tiny', features_only=True, out_indices=(1, 3))
    assert model.feature_info.reduction() == [8, 32]
    assert model.feature_info.channels() == [144, 576]
    outs = model(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 144, 8, 8), (1, 576, 2, 2)]


def test_converter_names_its_own_prefix_option_for_a_detector_checkpoint(release, tmp_path):
    _, _, state_dict, _ = release
    detector = tmp_path / 'mask_rcnn.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in state_dict.items()}}, detector)
    result = convert(detector, tmp_path / 'a.pth')
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert result.stderr.strip().endswith("take its backbone with --prefix backbone.")
    convert(detector, tmp_path / 'b.pth', '--prefix', 'backbone.', check=True)
    key = 'stages.0.0.attn.v.weight'
    assert torch.equal(torch.load(tmp_path / 'b.pth')[key], state_dict[key])
