"""Segmentation: the synthetic ADE20K generator, every UperNet config (recipe, one train and one test step) and the
quickstart end to end through tools/train.py, tools/test.py and mmseg's MMSegInferencer.

Models are built from the configs as they are, except the pretrained checkpoint (downloaded by hand) and the crop
size (64x64 inputs keep the steps fast on CPU).
"""
import copy
import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData

import mmconv2former  # noqa: F401  (registers the backbone and the layer-decay constructor)
from mmconv2former.datasets import synthetic_ade as ade
from mmconv2former.datasets.synthetic_ade import CLASSES, generate_synthetic_ade
from mmconv2former.models.backbones.conv2former import ARCH_SETTINGS

ROOT = Path(__file__).resolve().parents[1]
SEG_CONFIGS = sorted((ROOT / 'configs' / 'upernet').glob('*.py'))
FP32_CONFIGS = [p for p in SEG_CONFIGS if '-amp-' not in p.name]
QUICKSTART = ROOT / 'configs' / 'quickstart' / 'upernet_conv2former-n_1xb4-300_synthetic-ade-64x64.py'
LEARNING_RUN = ROOT / 'configs' / 'quickstart' / 'upernet_conv2former-n_1xb16-4k_synthetic-ade-128x128.py'
ARCHES = {'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large'}
# ConvNeXt's UperNet drop-path rates (the Conv2Former paper follows ConvNeXt's ADE20K recipe).
DROP_PATH = {'tiny': 0.4, 'small': 0.3, 'base': 0.4, 'large': 0.4}
SMALL = dict(num_train=3, num_val=2, progress=False)


def _ids(paths):
    return [p.stem for p in paths]


@functools.cache
def _parse(path) -> Config:
    return Config.fromfile(str(path))


def _load(path) -> Config:
    return copy.deepcopy(_parse(path))


def _files(root, kind, split):
    return sorted((root / kind / split).iterdir())


# ---------------------------------------------------------------- synthetic ADE20K


def test_generator_writes_the_ade20k_layout(tmp_path):
    assert generate_synthetic_ade(tmp_path, seed=0, **SMALL) is True
    for split, n in (('training', 3), ('validation', 2)):
        images, labels = _files(tmp_path, 'images', split), _files(tmp_path, 'annotations', split)
        assert [p.suffix for p in images] == ['.jpg'] * n and [p.suffix for p in labels] == ['.png'] * n
        assert [p.stem for p in images] == [p.stem for p in labels]
        for image_path, label_path in zip(images, labels):
            image = cv2.imread(str(image_path))
            label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
            assert label.dtype == np.uint8 and label.ndim == 2 and label.shape == image.shape[:2]
            assert 200 <= min(label.shape) and max(label.shape) <= 360  # ~256 px images
            assert set(np.unique(label)) <= set(range(len(CLASSES) + 1))  # 0 = unlabelled, classes 1..K
    manifest = json.loads((tmp_path / 'synthetic_ade.json').read_text())
    assert manifest['complete'] and manifest['classes'] == list(CLASSES)


def test_same_seed_same_files_and_first_images_do_not_depend_on_count(tmp_path):
    generate_synthetic_ade(tmp_path / 'a', seed=0, **SMALL)
    generate_synthetic_ade(tmp_path / 'b', seed=0, **dict(SMALL, num_train=5))
    generate_synthetic_ade(tmp_path / 'c', seed=1, **SMALL)
    for kind in ('images', 'annotations'):
        a, b, c = (_files(tmp_path / k, kind, 'training') for k in 'abc')
        assert len(b) == 5
        assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b[:3]]
        assert [p.read_bytes() for p in a] != [p.read_bytes() for p in c]


def test_rerun_reuses_other_settings_regenerate_foreign_folders_are_refused(tmp_path):
    generate_synthetic_ade(tmp_path, seed=0, **SMALL)
    assert generate_synthetic_ade(tmp_path, seed=0, **SMALL) is False
    assert generate_synthetic_ade(tmp_path, seed=0, **dict(SMALL, num_train=2)) is True
    assert len(_files(tmp_path, 'images', 'training')) == 2  # no stale images left from the first run

    foreign = tmp_path / 'foreign'
    (foreign / 'images' / 'training').mkdir(parents=True)
    (foreign / 'images' / 'training' / 'ADE_train_00000001.jpg').write_bytes(b'not ours')
    with pytest.raises(FileExistsError, match='not written by this generator'):
        generate_synthetic_ade(foreign, seed=0, **SMALL)
    assert (foreign / 'images' / 'training' / 'ADE_train_00000001.jpg').exists()
    with pytest.raises(ValueError, match='num_val must be a positive integer'):
        generate_synthetic_ade(tmp_path / 'x', num_train=2, num_val=0)


@pytest.mark.parametrize('stale', [dict(complete=False), dict(version=ade.VERSION - 1)],
                         ids=['interrupted', 'older-generator'])
def test_an_interrupted_or_outdated_folder_is_regenerated(tmp_path, stale):
    generate_synthetic_ade(tmp_path, seed=0, **SMALL)
    manifest = tmp_path / 'synthetic_ade.json'
    manifest.write_text(json.dumps(dict(json.loads(manifest.read_text()), **stale)))
    assert generate_synthetic_ade(tmp_path, seed=0, **SMALL) is True


def _region_stats(image, label, cls):
    """Mean colour and texture energy (mean |Laplacian| after a 1-pixel blur, which removes the sensor noise) inside
    the eroded region of `cls`, or None if the scene has too little of it."""
    mask = cv2.erode((label == cls).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if mask.sum() < 200:
        return None
    gray = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32), (0, 0), 1.0)
    return image[mask].mean(0), np.abs(cv2.Laplacian(gray, cv2.CV_32F))[mask].mean()


def test_circles_and_rectangles_differ_only_in_shape_stripes_and_checkerboards_only_in_texture():
    stats = {cls: [] for cls in range(1, len(CLASSES) + 1)}
    for i in range(40):
        image, label = ade.render_sample(ade.image_rng(0, 'training', i))
        for cls in stats:
            region = _region_stats(image, label, cls)
            if region is not None:
                stats[cls].append(region)
    assert all(len(s) >= 8 for s in stats.values()), {CLASSES[c - 1]: len(s) for c, s in stats.items()}
    colour = {cls: np.stack([c for c, _ in s]) for cls, s in stats.items()}
    texture = {cls: np.median([t for _, t in s]) for cls, s in stats.items()}
    # Same colour distribution (mean colours closer than the spread within a class) and the same smooth fill:
    # only the outline tells a circle from a rectangle.
    assert colour[ade.CIRCLE].std(0).max() > 40
    assert (np.abs(colour[ade.CIRCLE].mean(0) - colour[ade.RECTANGLE].mean(0)) < colour[ade.CIRCLE].std(0)).all()
    assert 0.5 < texture[ade.CIRCLE] / texture[ade.RECTANGLE] < 2
    # Same paint, random outlines: the pattern tells stripes from checkerboards, and both from plain objects.
    assert (np.abs(colour[ade.STRIPES].mean(0) - colour[ade.CHECKERBOARD].mean(0)) < colour[ade.STRIPES].std(0)).all()
    for cls in (ade.STRIPES, ade.CHECKERBOARD):
        assert texture[cls] > 3 * max(texture[ade.CIRCLE], texture[ade.RECTANGLE])
    assert texture[ade.GROUND] > 3 * texture[ade.SKY]


def test_cli_writes_the_dataset(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / 'tools/dataset_converters/make_synthetic_ade.py'), '--out', str(tmp_path),
         '--num-train', '2', '--num-val', '1', '--seed', '0'], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'written' in result.stdout and 'sky, ground' in result.stdout
    assert len(_files(tmp_path, 'annotations', 'training')) == 2


def test_quickstart_classes_match_the_generator():
    cfg = _load(QUICKSTART)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        assert tuple(dataset.metainfo.classes) == CLASSES
        assert dataset.metainfo.palette == ade.PALETTE
        assert dataset.reduce_zero_label is True
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == len(CLASSES)
    assert cfg.model.backbone.arch == 'nano' and cfg.model.backbone.get('init_cfg') is None  # from scratch
    assert cfg.val_evaluator.type == 'IoUMetric' and cfg.val_evaluator.iou_metrics == ['mIoU']


def test_learning_run_config_builds_and_crops_at_its_size(tmp_path):
    """The GPU learning-run config (the quickstart with 128x128 crops, bigger batches and a longer schedule) builds its
    model, optimizer and schedule, and its training pipeline makes 128x128 crops; it is built, not trained."""
    from mmengine.registry import PARAM_SCHEDULERS
    from mmseg.registry import DATASETS, MODELS
    init_default_scope('mmseg')
    cfg = _load(LEARNING_RUN)
    assert cfg.model.data_preprocessor.size == (128, 128)
    assert tuple(cfg.train_dataloader.dataset.metainfo.classes) == CLASSES
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    schedulers = [PARAM_SCHEDULERS.build(dict(scheduler, optimizer=optim_wrapper))
                  for scheduler in copy.deepcopy(cfg.param_scheduler)]
    assert schedulers[-1].end == cfg.train_cfg.max_iters == 4000

    generate_synthetic_ade(tmp_path, num_train=1, num_val=1, seed=0, progress=False)
    dataset = DATASETS.build(dict(cfg.train_dataloader.dataset, data_root=str(tmp_path)))
    for seed in range(3):  # random resizes and crops (mmcv draws them with numpy)
        np.random.seed(seed)
        sample = dataset[0]
        assert tuple(sample['inputs'].shape[1:]) == (128, 128)
        assert sample['data_samples'].gt_sem_seg.data.shape[1:] == (128, 128)


# ---------------------------------------------------------------- the UperNet configs


@pytest.mark.parametrize('path', [QUICKSTART, LEARNING_RUN], ids=lambda p: p.stem)
def test_quickstart_lr_is_stated_for_its_batch(path):
    """--auto-scale-lr needs auto_scale_lr.base_batch_size: the quickstarts' lr is for their one GPU's batch."""
    cfg = _load(path)
    assert cfg.auto_scale_lr.base_batch_size == cfg.train_dataloader.batch_size
    assert not cfg.auto_scale_lr.get('enable', False)


def test_the_promised_configs_exist():
    names = {p.name for p in SEG_CONFIGS}
    for v in 'tsb':
        for schedule in ('160k', 'amp-160k'):
            assert f'upernet_conv2former-{v}_8xb2-{schedule}_ade20k-512x512.py' in names
    for schedule in ('160k', 'amp-160k'):
        assert f'upernet_conv2former-l_8xb2-{schedule}_ade20k-640x640.py' in names
    assert len(names) == 8


@pytest.mark.parametrize('path', SEG_CONFIGS, ids=_ids(SEG_CONFIGS))
def test_config_recipe(path):
    cfg = _load(path)
    variant, size = re.search(r'conv2former-([tsbl])_.*-(\d+)x\d+\.py', path.name).groups()
    arch, crop = ARCHES[variant], (int(size), int(size))
    model = cfg.model
    assert model.pretrained is None  # mmseg's UperNet base would load a ResNet-50 here
    backbone = model.backbone
    assert backbone.type == 'mmconv2former.Conv2Former' and backbone.arch == arch
    assert backbone.drop_path_rate == DROP_PATH[arch]
    assert backbone.norm_cfg.type == 'SyncBN'
    assert backbone.cuda_graph is True  # crops and test windows have one shape: replayed from CUDA graphs
    assert [h.type for h in cfg.custom_hooks] == [  # configs/_base_/conv2former_runtime.py's
        'mmconv2former.FiniteLossHook', 'mmconv2former.RandomStateHook', 'mmconv2former.SingleThreadBackwardHook']
    assert backbone.init_cfg.type == 'Pretrained' and backbone.init_cfg.checkpoint_key == 'state_dict'
    assert backbone.init_cfg.checkpoint == cfg.checkpoint_file
    assert cfg.checkpoint_file.startswith(f'checkpoints/conv2former-{variant}_in')
    assert ('in22k' in cfg.checkpoint_file) == (arch == 'large')
    dims = list(ARCH_SETTINGS[arch]['dims'])
    assert model.decode_head.type == 'UPerHead' and model.decode_head.in_channels == dims
    assert model.auxiliary_head.type == 'FCNHead' and model.auxiliary_head.in_channels == dims[2]
    assert model.decode_head.num_classes == model.auxiliary_head.num_classes == 150

    # ADE20K at the crop in the name (640: mmseg's ade20k_640x640 settings), sliding-window testing by default.
    assert model.data_preprocessor.size == crop
    crop_step = next(t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomCrop')
    assert tuple(crop_step.crop_size) == crop
    assert cfg.train_dataloader.dataset.type == 'ADE20KDataset' and cfg.train_dataloader.batch_size == 2
    assert model.test_cfg.mode == 'slide' and tuple(model.test_cfg.crop_size) == crop
    assert 'tta_model' in cfg and 'tta_pipeline' in cfg

    optim = cfg.optim_wrapper
    assert optim.type == ('AmpOptimWrapper' if '-amp-' in path.name else 'OptimWrapper')
    assert optim.optimizer.type == 'AdamW' and optim.optimizer.lr == 1e-4 and optim.optimizer.weight_decay == 0.05
    assert optim.constructor == 'mmconv2former.LayerDecayOptimWrapperConstructor'
    assert optim.paramwise_cfg == dict(decay_rate=0.9, decay_type='stage_wise')
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.end, poly.type, poly.begin, poly.power) == ('LinearLR', 1500, 'PolyLR', 1500, 1.0)
    assert poly.end == cfg.train_cfg.max_iters == 160000
    gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)-', path.name).groups())
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=gpus * per_gpu)  # for --auto-scale-lr


@pytest.mark.parametrize('path', [p for p in SEG_CONFIGS if '-amp-' in p.name],
                         ids=_ids([p for p in SEG_CONFIGS if '-amp-' in p.name]))
def test_amp_config_differs_from_fp32_only_in_the_wrapper(path):
    amp, fp32 = _load(path), _load(path.with_name(path.name.replace('-amp-', '-')))
    assert amp.optim_wrapper.pop('type') == 'AmpOptimWrapper' and amp.optim_wrapper.pop('loss_scale') == 'dynamic'
    assert fp32.optim_wrapper.pop('type') == 'OptimWrapper'
    for cfg in (amp, fp32):
        cfg.pop('filename', None)
    assert amp.to_dict() == fp32.to_dict()


def _seg_inputs(num_classes, batch=2, size=64):
    """A batch like mmseg's tests make: uint8 images and random label maps."""
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(batch):
        sample = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                             pad_shape=(size, size), scale_factor=(1.0, 1.0), flip=False))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, size, size)))
        samples.append(sample)
    inputs = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8) for _ in range(batch)]
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('path', FP32_CONFIGS, ids=_ids(FP32_CONFIGS))
def test_config_trains_and_tests_one_step(path):
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = _load(path)
    cfg.model.backbone.init_cfg = None
    cfg.model.data_preprocessor.size = (64, 64)
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))  # what mmengine's Runner does without distribution
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)  # the layer-decay constructor
    # (mmengine's OptimWrapper appends a `base_param_settings` group of its own, without lr_scale)
    lr_scales = sorted({group['lr_scale'] for group in optim_wrapper.param_groups if 'lr_scale' in group})
    assert lr_scales[-1] == 1 and lr_scales[0] < 0.9 ** 3  # stage-wise decay reaches the stem

    stem = model.backbone.downsample_layers[0][0].weight
    before = stem.detach().clone()
    model.train()
    losses = model.train_step(_seg_inputs(150), optim_wrapper)
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses) and torch.isfinite(losses['loss'])
    assert not torch.equal(stem.detach(), before)

    model.eval()
    with torch.no_grad():
        outputs = model.test_step(_seg_inputs(150))
    assert len(outputs) == 2
    for output in outputs:
        assert output.pred_sem_seg.data.shape == (1, 64, 64)
        assert 0 <= int(output.pred_sem_seg.data.min()) and int(output.pred_sem_seg.data.max()) < 150


def test_missing_pretrained_weights_are_reported_with_their_path():
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = _load(ROOT / 'configs/upernet/upernet_conv2former-t_8xb2-160k_ade20k-512x512.py')
    if (ROOT / cfg.checkpoint_file).exists():
        pytest.skip(f'{cfg.checkpoint_file} is present')
    backbone = MODELS.build(cfg.model.backbone)
    with pytest.raises(FileNotFoundError, match=re.escape(cfg.checkpoint_file)):
        backbone.init_weights()


def test_a_resnet_based_mmseg_config_takes_conv2former_once_model_pretrained_is_none(tmp_path):
    """README: the backbone dict in an mmseg config whose base sets model.pretrained (ResNet weights, which
    EncoderDecoder hands to the backbone) fails with an error that says to set it to None; then it builds."""
    from mmseg.registry import MODELS

    from mmconv2former.models.backbones.conv2former import ArgumentError
    config = tmp_path / 'upernet_conv2former-n_on_r50_base.py'
    config.write_text(
        "_base_ = ['mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py']\n"
        "custom_imports = dict(imports=['mmconv2former'], allow_failed_imports=False)\n"
        "model = dict(backbone=dict(_delete_=True, type='mmconv2former.Conv2Former', arch='nano'),\n"
        "             decode_head=dict(in_channels=[64, 128, 256, 512]), auxiliary_head=dict(in_channels=256))\n")
    cfg = Config.fromfile(str(config))
    init_default_scope('mmseg')
    model_cfg = cfg.model
    with pytest.raises(ArgumentError, match=r"pretrained must be None, got 'open-mmlab://resnet50_v1c'.*"
                                            r'Set model.pretrained=None'):
        MODELS.build(copy.deepcopy(model_cfg))  # EncoderDecoder writes pretrained into the backbone cfg it gets
    model_cfg.pretrained = None
    model = MODELS.build(model_cfg)
    assert type(model.backbone).__name__ == 'Conv2Former' and model.backbone.arch_name == 'nano'


# ---------------------------------------------------------------- the quickstart, end to end


def _run_tool(tool, *args, cwd):
    result = subprocess.run([sys.executable, str(ROOT / 'tools' / tool), *map(str, args), '--no-progress'],
                            cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _last_metrics(work_dir, log='vis_data/scalars.json'):
    """The last evaluation that mmengine logged in <work_dir>/<timestamp>/<log> (tools/test.py: <timestamp>.json)."""
    (scalars,) = Path(work_dir).glob(f'*/{log}')
    return [record for record in map(json.loads, scalars.read_text().splitlines()) if 'mIoU' in record][-1]


@pytest.fixture(scope='module')
def quickstart_run(tmp_path_factory):
    """Train the quickstart for 3 iterations in a scratch folder (data at the config's relative data_root)."""
    root = tmp_path_factory.mktemp('quickstart')
    generate_synthetic_ade(root / 'data' / 'synthetic_ade', num_train=8, num_val=3, progress=False)
    work_dir = root / 'work'
    _run_tool('train.py', QUICKSTART, '--work-dir', work_dir, '--cfg-options', 'train_cfg.max_iters=3',
              'train_cfg.val_interval=3', 'default_hooks.checkpoint.interval=3',
              'default_hooks.visualization.interval=1', cwd=root)
    return root, work_dir


def test_quickstart_trains_through_tools_train_and_reports_miou(quickstart_run):
    root, work_dir = quickstart_run
    assert (work_dir / 'iter_3.pth').exists()
    metrics = _last_metrics(work_dir)
    assert metrics['step'] == 3 and 0 <= metrics['mIoU'] <= 100
    # The validation hook drew ground truth | prediction, side by side at the image's size.
    (picture,) = work_dir.glob('*/vis_data/vis_image/val_synthetic_validation_00000.jpg_3.png')
    image = cv2.imread(str(root / 'data/synthetic_ade/images/validation/synthetic_validation_00000.jpg'))
    height, width, _ = image.shape
    assert cv2.imread(str(picture)).shape == (height, 2 * width, 3)


def test_mmseg_inferencer_runs_the_quickstart_checkpoint(quickstart_run):
    from mmseg.apis import MMSegInferencer
    root, work_dir = quickstart_run
    inferencer = MMSegInferencer(model=str(QUICKSTART), weights=str(work_dir / 'iter_3.pth'), device='cpu')
    assert tuple(inferencer.model.dataset_meta['classes']) == CLASSES  # from the checkpoint's meta
    image_path = root / 'data/synthetic_ade/images/validation/synthetic_validation_00001.jpg'
    result = inferencer(str(image_path), out_dir=str(root / 'inferencer'))
    prediction = result['predictions']
    assert prediction.shape == cv2.imread(str(image_path)).shape[:2]
    assert set(np.unique(prediction)) <= set(range(len(CLASSES)))
    assert list((root / 'inferencer' / 'vis').glob('*.jpg'))


@pytest.mark.slow
def test_quickstart_checkpoint_through_tools_test_with_tta_and_pictures(quickstart_run):
    root, work_dir = quickstart_run
    _run_tool('test.py', QUICKSTART, work_dir / 'iter_3.pth', '--work-dir', root / 'test', '--tta',
              '--show-dir', root / 'test_pictures', cwd=root)
    assert 0 <= _last_metrics(root / 'test', log='2*.json')['mIoU'] <= 100
    assert list((root / 'test_pictures').rglob('*.png'))
