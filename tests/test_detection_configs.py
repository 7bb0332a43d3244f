"""Every detection config: the recipe it promises, its data pipeline on real files, one train and one test step.

Models are built from the configs as they are (only the pretrained checkpoint, which users download by hand, is
left out) and stepped on `mmdet.testing.demo_mm_inputs` data; pipelines run on a tiny synthetic COCO dataset.
"""
import copy
import functools
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import mmconv2former  # noqa: F401  (registers the backbone)
from mmconv2former.datasets.synthetic_coco import DEFAULT_CLASSES, generate_synthetic_coco
from mmconv2former.models.backbones.conv2former import ARCH_SETTINGS

ROOT = Path(__file__).resolve().parents[1]
DET_CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py')
                     if '_base_' not in p.parts and p.name.startswith(('mask-rcnn_', 'cascade-mask-rcnn_')))
ARCHES = {'n': 'nano', 't': 'tiny', 's': 'small', 'b': 'base'}
# The paper's (ConvNeXt's recipe) drop-path rates; Mask R-CNN uses the same per variant, nano 0.1.
DROP_PATH = {'nano': 0.1, 'tiny': 0.2, 'small': 0.6, 'base': 0.9}


def _ids(paths):
    return [p.stem for p in paths]


@functools.cache
def _parse(path) -> Config:
    return Config.fromfile(str(path))  # seconds each: mmengine reads all of mmdet's metafiles per mmdet:: base


def _load(path) -> Config:
    return copy.deepcopy(_parse(path))


def _variant(path) -> str:
    return ARCHES[re.search(r'conv2former-([ntsb])_', path.name).group(1)]


def test_the_promised_configs_exist():
    names = {p.name for p in DET_CONFIGS}
    for v in 'ntsb':
        for schedule in ('1x', 'ms-crop-3x', 'amp-ms-crop-3x'):
            assert f'mask-rcnn_conv2former-{v}_fpn_{schedule}_coco.py' in names
    for v in 'tsb':
        for schedule in ('ms-crop-3x', 'amp-ms-crop-3x'):
            assert f'cascade-mask-rcnn_conv2former-{v}_fpn_4conv1fc-giou_{schedule}_coco.py' in names
    assert 'mask-rcnn_conv2former-n_fpn_1xb4-300i_synthetic-coco-128x128.py' in names


@pytest.mark.parametrize('path', DET_CONFIGS, ids=_ids(DET_CONFIGS))
def test_config_recipe(path):
    cfg = _load(path)
    arch = _variant(path)
    backbone = cfg.model.backbone
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports == dict(imports=['mmconv2former'], allow_failed_imports=False)
    assert backbone.type == 'mmconv2former.Conv2Former' and backbone.arch == arch
    assert backbone.out_indices == (0, 1, 2, 3)
    assert backbone.cuda_graph is True  # keep-ratio batch shapes repeat: replayed from CUDA graphs (on CUDA)
    assert [h.type for h in cfg.custom_hooks] == [  # configs/_base_/conv2former_runtime.py's
        'mmconv2former.FiniteLossHook', 'mmconv2former.RandomStateHook', 'mmconv2former.SingleThreadBackwardHook']
    assert cfg.model.neck.in_channels == list(ARCH_SETTINGS[arch]['dims'])
    assert cfg.optim_wrapper.constructor == 'mmconv2former.LayerDecayOptimWrapperConstructor'
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.type == ('AmpOptimWrapper' if '_amp-' in path.name else 'OptimWrapper')
    if 'synthetic' in path.name:  # the quickstart trains from scratch: no download needed
        assert backbone.init_cfg is None
        assert cfg.model.roi_head.bbox_head.num_classes == cfg.model.roi_head.mask_head.num_classes == 3
        return
    letter = path.name.split('conv2former-')[1][0]
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=f'checkpoints/conv2former-{letter}_in1k.pth.tar')
    assert backbone.drop_path_rate == DROP_PATH[arch]
    assert cfg.train_cfg.max_epochs == (12 if '_1x_' in path.name else 36)
    assert cfg.auto_scale_lr.base_batch_size == 16
    if path.name.startswith('cascade'):
        assert len(cfg.model.roi_head.bbox_head) == 3
        assert all(h.type == 'ConvFCBBoxHead' and h.loss_bbox.type == 'GIoULoss' for h in cfg.model.roi_head.bbox_head)
        assert cfg.optim_wrapper.optimizer.lr == 2e-4 and cfg.optim_wrapper.paramwise_cfg.decay_rate == 0.8
    else:
        assert cfg.optim_wrapper.optimizer.lr == 1e-4 and cfg.optim_wrapper.paramwise_cfg.decay_rate == 0.95


AMP_CONFIGS = [p for p in DET_CONFIGS if '_amp-' in p.name]


@pytest.mark.parametrize('path', AMP_CONFIGS, ids=_ids(AMP_CONFIGS))
def test_amp_config_differs_from_fp32_only_in_the_optim_wrapper(path):
    amp = _load(path).to_dict()
    fp32 = _load(path.with_name(path.name.replace('_amp-', '_'))).to_dict()
    assert amp['optim_wrapper'].pop('type') == 'AmpOptimWrapper' and amp['optim_wrapper'].pop('loss_scale') == 'dynamic'
    assert fp32['optim_wrapper'].pop('type') == 'OptimWrapper'
    for cfg in (amp, fp32):
        cfg.pop('filename', None)
    assert amp == fp32


# One config per variant (test_config_recipe checks that every config names its variant's file).
VARIANT_CONFIGS = [p for p in DET_CONFIGS if p.name.endswith('_fpn_1x_coco.py')]


@pytest.mark.parametrize('path', VARIANT_CONFIGS, ids=_ids(VARIANT_CONFIGS))
def test_missing_pretrained_weights_fail_at_start_naming_the_file(path, tmp_path, monkeypatch):
    from mmconv2former.registry import MODELS
    monkeypatch.chdir(tmp_path)  # no checkpoints/ here
    backbone = MODELS.build(_load(path).model.backbone)
    letter = path.name.split('conv2former-')[1][0]
    with pytest.raises(FileNotFoundError, match=rf'conv2former-{letter}_in1k\.pth\.tar.*download'):
        backbone.init_weights()


@pytest.fixture(scope='module')
def synthetic_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic_coco')
    generate_synthetic_coco(root, num_train=3, num_val=2, size=(96, 128), progress=False)
    return root


def _point_at(dataset_cfg, root, split):
    dataset_cfg.update(data_root=str(root), ann_file=f'annotations/instances_{split}.json',
                       data_prefix=dict(img=f'{split}/'), metainfo=dict(classes=DEFAULT_CLASSES))
    return dataset_cfg


# One config per distinct pipeline: 1x (single scale), ms-crop 3x (DETR's augmentation), the quickstart.
PIPELINE_CONFIGS = [ROOT / 'configs' / p for p in (
    'mask_rcnn/mask-rcnn_conv2former-t_fpn_1x_coco.py', 'mask_rcnn/mask-rcnn_conv2former-t_fpn_ms-crop-3x_coco.py',
    'quickstart/mask-rcnn_conv2former-n_fpn_1xb4-300i_synthetic-coco-128x128.py')]


@pytest.mark.parametrize('path', PIPELINE_CONFIGS, ids=_ids(PIPELINE_CONFIGS))
def test_data_pipelines_load_coco_files(path, synthetic_coco):
    from mmdet.registry import DATASETS
    cfg = _load(path)
    init_default_scope('mmdet')
    for split, loader in (('train', cfg.train_dataloader), ('val', cfg.test_dataloader)):
        dataset = DATASETS.build(_point_at(copy.deepcopy(loader.dataset), synthetic_coco, split))
        assert len(dataset) == (3 if split == 'train' else 2)
        for seed in range(4):  # the random crops and scales of ms-crop take different branches
            torch.manual_seed(seed)
            sample = dataset[0]
            data_sample = sample['data_samples']
            gt = data_sample.gt_instances
            assert sample['inputs'].shape[0] == 3 and len(gt.masks) == len(gt.bboxes) == len(gt.labels)
            # (DETR's random crop may cut every object away: allow_negative_crop=True keeps such samples.)
            assert len(gt) > 0 or split == 'train'
            # Training masks follow the augmented image; test-time ones stay at the original size for the metric.
            expected = sample['inputs'].shape[1:] if split == 'train' else data_sample.ori_shape
            assert gt.masks.masks.shape[1:] == tuple(expected)


def _demo_batch(num_classes):
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(batch_size=2, image_shapes=[(3, 64, 96), (3, 75, 67)], num_items=[3, 2],
                          num_classes=num_classes, with_mask=True)


def _step_key(cfg):
    """What a train and a test step depend on: the model and the optimizer settings (not AMP, not the data)."""
    optim = {k: v for k, v in cfg.optim_wrapper.to_dict().items() if k not in ('type', 'loss_scale')}
    return repr((cfg.model.to_dict(), optim))


# The 1x, 3x and AMP configs of a detector and variant share one model and optimizer (they differ in data and
# schedule): one of them is stepped, and every config is checked to have the model and optimizer of a stepped one.
# The GPU learning-run configs (`_1xb16-`: the quickstart with bigger batches, a longer schedule and its own lr) have
# the quickstart's model, checked below, and are built, not stepped.
LEARNING_RUN_CONFIGS = [p for p in DET_CONFIGS if '_1xb16-' in p.name]
STEP_CONFIGS = [p for p in DET_CONFIGS if p.name.endswith(('_fpn_1x_coco.py', 'giou_ms-crop-3x_coco.py'))
                or ('synthetic' in p.name and p not in LEARNING_RUN_CONFIGS)]


def test_every_config_has_a_stepped_model_and_optimizer():
    stepped = {_step_key(_parse(p)) for p in STEP_CONFIGS}
    assert all(_step_key(_parse(p)) in stepped for p in DET_CONFIGS if p not in LEARNING_RUN_CONFIGS)
    stepped_models = {repr(_parse(p).model.to_dict()) for p in STEP_CONFIGS}
    assert all(repr(_parse(p).model.to_dict()) in stepped_models for p in LEARNING_RUN_CONFIGS)
    assert len(STEP_CONFIGS) == 8  # Mask R-CNN N/T/S/B, Cascade T/S/B, the quickstart
    assert len(LEARNING_RUN_CONFIGS) == 1


@pytest.mark.parametrize('path', LEARNING_RUN_CONFIGS, ids=_ids(LEARNING_RUN_CONFIGS))
def test_learning_run_config_builds_its_model_optimizer_and_schedule(path):
    from mmdet.registry import MODELS
    from mmengine.registry import PARAM_SCHEDULERS
    cfg = _load(path)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert max(group['lr'] for group in optim_wrapper.param_groups) == cfg.optim_wrapper.optimizer.lr
    schedulers = [PARAM_SCHEDULERS.build(dict(scheduler, optimizer=optim_wrapper))
                  for scheduler in copy.deepcopy(cfg.param_scheduler)]
    assert schedulers[-1].end == cfg.train_cfg.max_iters


@pytest.mark.parametrize('path', STEP_CONFIGS, ids=_ids(STEP_CONFIGS))
def test_one_train_step_and_one_test_step(path):
    from mmdet.registry import MODELS
    cfg = _load(path)
    init_default_scope('mmdet')
    cfg.model.backbone.init_cfg = None  # the released weights are a manual download (see the test above)
    # Fewer proposals and RoIs than COCO needs, so a CPU steps the big variants in seconds; the layers are the same
    # (the ground-truth boxes are proposals too: every RoI head gets positives, every mask head a loss).
    cfg.model.train_cfg.rpn_proposal.max_per_img = 16
    rcnn_cfgs = cfg.model.train_cfg.rcnn  # a list of 3 for Cascade
    for rcnn in rcnn_cfgs if isinstance(rcnn_cfgs, list) else [rcnn_cfgs]:
        assert rcnn.sampler.add_gt_as_proposals
        rcnn.sampler.num = 16
    cfg.model.test_cfg.rpn.max_per_img = 16
    model = MODELS.build(cfg.model)
    model.init_weights()
    # AmpOptimWrapper needs a GPU; its configs differ from the fp32 ones only in that (tested above).
    optim_cfg = {k: v for k, v in copy.deepcopy(cfg.optim_wrapper).items() if k != 'loss_scale'}
    optim_wrapper = build_optim_wrapper(model, dict(optim_cfg, type='OptimWrapper'))
    mask_heads = cfg.model.roi_head.mask_head
    num_classes = (mask_heads[0] if isinstance(mask_heads, list) else mask_heads).num_classes
    stem = model.backbone.downsample_layers[0][0].weight.detach().clone()

    model.train()
    losses = model.train_step(_demo_batch(num_classes), optim_wrapper)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert 'loss_rpn_cls' in losses and any(k.endswith('loss_mask') for k in losses)
    assert not torch.equal(stem, model.backbone.downsample_layers[0][0].weight), 'the backbone did not train'

    model.eval()
    with torch.no_grad():
        results = model.test_step(_demo_batch(num_classes))
    assert len(results) == 2
    for result, (h, w) in zip(results, [(64, 96), (75, 67)]):
        pred = result.pred_instances
        assert pred.bboxes.shape[1] == 4 and len(pred.scores) == len(pred.labels) == len(pred.masks)
        assert tuple(pred.masks.shape[1:]) == (h, w)  # pasted back at the original image size


def test_the_readme_recipe_puts_conv2former_into_any_mmdet_config(tmp_path):
    """docs/detection.md shows how to use the backbone from another mmdet config: that snippet, as written, builds
    and predicts."""
    from mmdet.registry import MODELS
    doc = (ROOT / 'docs/detection.md').read_text()
    snippet = re.search(r'## Using Conv2Former in any other mmdet config.*?```python\n(.*?)```', doc, re.S).group(1)
    config = tmp_path / 'retinanet_conv2former.py'
    config.write_text(snippet)
    cfg = Config.fromfile(str(config))
    assert cfg.model.backbone.type == 'mmconv2former.Conv2Former'
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        results = model.test_step(_demo_batch(80))
    assert len(results) == 2 and results[0].pred_instances.bboxes.shape[1] == 4


def test_neck_widths_are_checked_against_the_backbone():
    """tools/train.py and tools/test.py refuse a model whose FPN does not read Conv2Former's widths (an arch changed
    alone), naming the field and its value; the configs as shipped pass."""
    from mmdet.registry import MODELS

    from mmconv2former.apis.runner import check_feature_widths
    from mmconv2former.models.backbones.conv2former import ArgumentError
    init_default_scope('mmdet')
    cfg = _load(ROOT / 'configs/mask_rcnn/mask-rcnn_conv2former-n_fpn_1x_coco.py')
    cfg.model.backbone.init_cfg = None
    check_feature_widths(MODELS.build(cfg.model))
    cfg.model.backbone.out_indices = (1, 2, 3)
    with pytest.raises(ArgumentError, match=re.escape('model.neck.in_channels is [64, 128, 256, 512] (needs '
                                                      '[128, 256, 512])')):
        check_feature_widths(MODELS.build(cfg.model))
