"""Bad input that is not the backbone's arguments: missing dataset paths (a clear error at start, from the tools,
without a stack trace), COCO annotations with empty or degenerate boxes (handled as mmdet 3.3's CocoDataset does)
and NaN/Inf losses under AMP. docs/reliability.md lists what each test shows."""
import copy
import functools
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import init_default_scope
from pycocotools import mask as mask_util

import mmconv2former  # noqa: F401  (registers the backbone)
from mmconv2former.apis.runner import DatasetNotFoundError, check_dataset_paths, run_tool
from mmconv2former.datasets.synthetic_coco import generate_synthetic_coco
from mmconv2former.engine import FiniteLossHook, NonFiniteLossError
from mmconv2former.utils.checkpoint_io import CorruptCheckpointError

ROOT = Path(__file__).resolve().parents[1]
DET_QUICKSTART = ROOT / 'configs/quickstart/mask-rcnn_conv2former-n_fpn_1xb4-300i_synthetic-coco-128x128.py'
SEG_QUICKSTART = ROOT / 'configs/quickstart/upernet_conv2former-n_1xb4-300_synthetic-ade-64x64.py'


@functools.cache
def _parsed(path):
    return Config.fromfile(path)


def _config(path):
    """A fresh copy of the config (parsing one with mmdet::/mmseg:: bases takes a second)."""
    return copy.deepcopy(_parsed(path))


def _tool(name):
    spec = importlib.util.spec_from_file_location(f'tool_{name}', ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- missing dataset paths

def _run_in_empty_folder(tmp_path, *args):
    """A tool run where the config's relative data_root (data/synthetic_*) does not exist."""
    return subprocess.run([sys.executable, *map(str, args), '--work-dir', str(tmp_path / 'work')], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_train_tool_stops_at_start_on_a_missing_data_root(tmp_path):
    result = _run_in_empty_folder(tmp_path, ROOT / 'tools/train.py', DET_QUICKSTART)
    assert result.returncode == 1
    assert "DatasetNotFoundError: train_dataloader.dataset.data_root: 'data/synthetic_coco/' does not exist." \
        in result.stderr
    assert "val_evaluator.ann_file: 'data/synthetic_coco/annotations/instances_val.json'" in result.stderr
    assert 'python tools/dataset_converters/make_synthetic_coco.py --out data/synthetic_coco' in result.stderr
    assert 'Traceback' not in result.stderr + result.stdout
    assert not (tmp_path / 'work').exists(), 'the check must come before the runner (which makes the work dir)'


def test_test_tool_stops_at_start_on_a_missing_data_root(tmp_path):
    # The checkpoint need not exist: the data is checked first.
    result = _run_in_empty_folder(tmp_path, ROOT / 'tools/test.py', SEG_QUICKSTART, tmp_path / 'missing.pth')
    assert result.returncode == 1
    assert "DatasetNotFoundError: test_dataloader.dataset.data_root: 'data/synthetic_ade' does not exist." \
        in result.stderr
    assert 'python tools/dataset_converters/make_synthetic_ade.py --out data/synthetic_ade' in result.stderr
    assert 'train_dataloader' not in result.stderr, 'testing reads the test set only'
    assert 'Traceback' not in result.stderr + result.stdout
    assert not (tmp_path / 'work').exists()


BACKBONE_ERRORS = [
    (['model.backbone.arch=huge'], "ArgumentError: Conv2Former: unknown arch 'huge'; allowed: "),
    (['model.backbone.out_indices=[4]'], 'ArgumentError: Conv2Former: out_indices entries must be ints in [-4, 3]'),
    # a nano config's heads read 64..512 channels: caught when the runner is built, not at the first iteration
    (['model.backbone.arch=tiny'], 'ArgumentError: Conv2Former-tiny outputs maps of [72, 144, 288, 576] channels '
     '(out_indices (0, 1, 2, 3)), but model.decode_head.in_channels is [64, 128, 256, 512] (needs [72, 144, 288, '
     '576]); model.auxiliary_head.in_channels is 256 (needs 288). Change them together with model.backbone.arch or '
     'out_indices, e.g. --cfg-options "model.decode_head.in_channels=[72,144,288,576]" '
     '"model.auxiliary_head.in_channels=288".'),
    (["model.backbone.init_cfg.type=Pretrained", "model.backbone.init_cfg.checkpoint=checkpoints/none.pth"],
     "PretrainedWeightsNotFoundError: Conv2Former pretrained weights not found at 'checkpoints/none.pth'. "
     'The backbone is Conv2Former-nano'),
]


def _with_synthetic_ade(folder):
    from mmconv2former.datasets.synthetic_ade import generate_synthetic_ade
    generate_synthetic_ade(folder / 'data' / 'synthetic_ade', num_train=1, num_val=1, progress=False)
    return folder


def test_train_tool_prints_backbone_config_errors_without_a_traceback(tmp_path):
    """The real process, for the error that comes last (missing weights, when training starts); the errors of the
    model build take the same way out (run_tool), in-process below (each run of the tool takes ~10 s to start)."""
    options, message = BACKBONE_ERRORS[-1]
    result = _run_in_empty_folder(_with_synthetic_ade(tmp_path), ROOT / 'tools/train.py', SEG_QUICKSTART,
                                  '--no-progress', '--cfg-options', 'train_cfg.max_iters=1', *options)
    assert result.returncode == 1, result.stderr[-2000:]
    assert message in result.stderr
    assert 'Traceback' not in result.stderr + result.stdout


@pytest.mark.parametrize('options,message', BACKBONE_ERRORS[:-1], ids=['arch', 'out_indices', 'arch_widths'])
def test_train_tool_exits_with_the_backbone_config_error_only(tmp_path, monkeypatch, capfd, options, message):
    """What tools/train.py does as a process (run_tool around its main), in this process: sys.exit with the message,
    which Python prints to stderr with exit status 1, and no traceback printed on the way."""
    monkeypatch.chdir(_with_synthetic_ade(tmp_path))
    # A name of its own: mmengine reuses the logger of a run with the same name (config and second), whose handler
    # would still write to the previous test's captured (closed) output.
    argv = [str(SEG_QUICKSTART), '--no-progress', '--work-dir', str(tmp_path / 'work'),
            '--cfg-options', 'train_cfg.max_iters=1', f'experiment_name={tmp_path.name}', *options]
    with pytest.raises(SystemExit) as exit_info:
        run_tool(lambda: _tool('train').main(argv))
    assert isinstance(exit_info.value.code, str) and message in exit_info.value.code
    assert 'Traceback' not in ''.join(capfd.readouterr())


@pytest.mark.parametrize('name', ['missing.pth', 'work'])
def test_test_tool_stops_at_start_on_a_missing_checkpoint(tmp_path, monkeypatch, capfd, name):
    """A checkpoint path that is not a file (missing, or a work dir) ends tools/test.py before the runner is built,
    with the path and what to pass instead; no traceback."""
    monkeypatch.chdir(_with_synthetic_ade(tmp_path))
    (tmp_path / 'work').mkdir()
    argv = [str(SEG_QUICKSTART), str(tmp_path / name), '--work-dir', str(tmp_path / 'out')]
    with pytest.raises(SystemExit) as exit_info:
        run_tool(lambda: _tool('test').main(argv))
    message = exit_info.value.code
    assert isinstance(message, str) and message.startswith('CheckpointNotFoundError: checkpoint ')
    assert str(tmp_path / name) in message
    assert ('pass the .pth file in it' if name == 'work' else 'that tools/train.py wrote') in message
    assert 'Traceback' not in ''.join(capfd.readouterr())
    assert not (tmp_path / 'out').exists(), 'the check must come before the runner (which makes the work dir)'


@pytest.mark.parametrize('argv,message', [
    (['configs/upernet/upernet_conv2former-t_8xb2-160k_ade20k-512x51.py'],
     "ConfigNotFoundError: config 'configs/upernet/upernet_conv2former-t_8xb2-160k_ade20k-512x51.py' does not exist; "
     'the configs are under configs/'),
    ([str(SEG_QUICKSTART), '--resume', 'work/iter_8.pth'],
     "CheckpointNotFoundError: --resume 'work/iter_8.pth' does not exist as a file: pass a .pth file that "
     'tools/train.py wrote'),
    ([str(SEG_QUICKSTART), '--cfg-options', 'load_from=work'],
     "CheckpointNotFoundError: load_from 'work' does not exist as a file: it is a folder; pass the .pth file in it"),
], ids=['config', 'resume', 'load_from'])
def test_train_tool_stops_at_start_on_a_missing_config_or_checkpoint(tmp_path, monkeypatch, capfd, argv, message):
    monkeypatch.chdir(_with_synthetic_ade(tmp_path))
    (tmp_path / 'work').mkdir()
    with pytest.raises(SystemExit) as exit_info:
        run_tool(lambda: _tool('train').main([*argv, '--work-dir', str(tmp_path / 'out')]))
    assert isinstance(exit_info.value.code, str) and exit_info.value.code.startswith(message)
    assert 'Traceback' not in ''.join(capfd.readouterr())
    assert not (tmp_path / 'out').exists(), 'the check must come before the runner (which makes the work dir)'


@pytest.mark.parametrize('tool,config,argv', [('train', SEG_QUICKSTART, []), ('test', DET_QUICKSTART, ['x.pth'])])
def test_both_tools_check_both_libraries_configs(tmp_path, monkeypatch, tool, config, argv):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError, match=f'{tool}_dataloader.dataset.data_root'):
        _tool(tool).main([str(config), *argv, '--work-dir', str(tmp_path / 'work')])
    assert not (tmp_path / 'work').exists()


def _coco_layout(root, splits=('train', 'val')):
    for split in splits:
        (root / split).mkdir(parents=True)
        (root / 'annotations').mkdir(exist_ok=True)
        (root / f'annotations/instances_{split}.json').write_text('{}')


def _det_config(root):
    cfg = _config(DET_QUICKSTART)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = f'{root}/'
    cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = f'{root}/annotations/instances_val.json'
    return cfg


def test_complete_dataset_passes(tmp_path):
    _coco_layout(tmp_path)
    check_dataset_paths(_det_config(tmp_path), 'train')
    check_dataset_paths(_det_config(tmp_path), 'test')


def test_ann_file_and_data_prefix_are_joined_with_data_root_and_named(tmp_path):
    _coco_layout(tmp_path, splits=('val',))  # no train images, no train annotations
    with pytest.raises(DatasetNotFoundError) as error:
        check_dataset_paths(_det_config(tmp_path), 'train')
    lines = str(error.value).splitlines()
    assert lines[:2] == [
        f"train_dataloader.dataset.ann_file: '{tmp_path}/annotations/instances_train.json' does not exist "
        f"(data_root='{tmp_path}/').",
        f"train_dataloader.dataset.data_prefix.img: '{tmp_path}/train/' does not exist (data_root='{tmp_path}/').",
    ]
    assert len(lines) == 3 and lines[2].startswith('Make the dataset first'), 'the val set is complete'


def test_segmentation_data_prefix_and_only_used_dataloaders(tmp_path):
    cfg = _config(SEG_QUICKSTART)
    cfg.train_dataloader.dataset.data_root = str(tmp_path)
    (tmp_path / 'images/training').mkdir(parents=True)  # images, but no label maps
    cfg.test_dataloader = dict(dataset=dict(data_root=str(tmp_path / 'elsewhere')))
    cfg.val_cfg = None  # no validation: the val set is not read
    cfg.val_dataloader.dataset.data_root = str(tmp_path / 'elsewhere')
    with pytest.raises(DatasetNotFoundError) as error:
        check_dataset_paths(cfg, 'train')
    assert str(error.value).splitlines()[0] == (
        f"train_dataloader.dataset.data_prefix.seg_map_path: '{tmp_path}/annotations/training' does not exist "
        f"(data_root='{tmp_path}').")
    assert 'elsewhere' not in str(error.value)
    with pytest.raises(DatasetNotFoundError, match=r"^test_dataloader\.dataset\.data_root: '.*elsewhere'"):
        check_dataset_paths(cfg, 'test')


def test_wrapped_datasets_are_checked(tmp_path):
    _coco_layout(tmp_path)
    inner = dict(type='CocoDataset', data_root=f'{tmp_path}/', ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'))
    missing = dict(inner, ann_file=str(tmp_path / 'annotations/extra.json'))  # absolute: not joined
    cfg = Config(dict(default_scope='mmdet', train_dataloader=dict(dataset=dict(
        type='RepeatDataset', times=2, dataset=dict(type='ConcatDataset', datasets=[inner, missing])))))
    with pytest.raises(DatasetNotFoundError, match=(
            r"^train_dataloader\.dataset\.dataset\.datasets\[1\]\.ann_file: '.*/annotations/extra\.json' "
            r'does not exist\.\n')):
        check_dataset_paths(cfg, 'train')


def test_remote_storage_is_not_checked():
    cfg = Config(dict(default_scope='mmdet', train_dataloader=dict(dataset=dict(
        type='ConcatDataset', datasets=[
            dict(data_root='s3://bucket/coco/', ann_file='annotations/train.json'),
            dict(data_root='data/coco/', ann_file='a.json', backend_args=dict(backend='petrel'))]))))
    check_dataset_paths(cfg, 'train')


def test_tools_print_our_clear_errors_without_a_traceback():
    def corrupt():
        raise CorruptCheckpointError("checkpoint 'iter_4.pth' is truncated or corrupted")

    with pytest.raises(SystemExit) as stop:
        run_tool(corrupt)
    assert stop.value.code == "CorruptCheckpointError: checkpoint 'iter_4.pth' is truncated or corrupted"

    def bug():
        raise KeyError('x')

    with pytest.raises(KeyError):  # anything else keeps its traceback
        run_tool(bug)


# ---------------------------------------------------------------- empty and degenerate boxes

SIZE = 64  # image side; the quickstart's filter_cfg drops images whose shorter side is below min_size=32


def _polygon(x, y, w, h):
    return [[x, y, x + max(w, 1), y, x + max(w, 1), y + max(h, 1), x, y + max(h, 1)]]


def _ann(image_id, bbox, area, iscrowd=0, segmentation=None):
    return dict(image_id=image_id, category_id=1, bbox=bbox, area=area, iscrowd=iscrowd,
                segmentation=segmentation or _polygon(*bbox))


def _crowd_rle(x, y, w, h):
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[y:y + h, x:x + w] = 1
    rle = mask_util.encode(np.asfortranarray(mask))
    return dict(size=[SIZE, SIZE], counts=rle['counts'].decode('ascii'))


# image id -> (file name, side, annotations)
IMAGES = {
    1: ('empty.jpg', SIZE, []),
    2: ('degenerate.jpg', SIZE, [
        _ann(2, [10, 10, 0, 20], 20),      # zero width (the area field is not what decides)
        _ann(2, [10, 10, 20, 0], 20),      # zero height
        _ann(2, [10, 10, 0.5, 20], 10),    # narrower than a pixel
        _ann(2, [10, 10, 20, 20], 0),      # area 0
        _ann(2, [30, 10, -10, 20], 200),   # negative width
        _ann(2, [70, 70, 10, 10], 100),    # outside the image
    ]),
    3: ('crowd.jpg', SIZE, [_ann(3, [8, 8, 30, 30], 900, iscrowd=1, segmentation=_crowd_rle(8, 8, 30, 30))]),
    4: ('mixed.jpg', SIZE, [_ann(4, [4, 6, 20, 30], 600), _ann(4, [0, 0, 0, 0], 0)]),
    5: ('tiny.jpg', 16, [_ann(5, [2, 2, 8, 8], 64)]),
}


@pytest.fixture(scope='module')
def tiny_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('bad_coco')
    (root / 'train').mkdir()
    (root / 'annotations').mkdir()
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for image_id, (file_name, side, anns) in IMAGES.items():
        cv2.imwrite(str(root / 'train' / file_name), rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        images.append(dict(id=image_id, file_name=file_name, width=side, height=side))
        annotations += [dict(ann, id=len(annotations) + i + 1) for i, ann in enumerate(anns)]
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(('circle', 'triangle', 'square'))]
    (root / 'annotations/bad.json').write_text(json.dumps(dict(images=images, annotations=annotations,
                                                               categories=categories)))
    return root


def _quickstart_dataset(root, test_mode, pipeline=()):
    """The detection quickstart's training dataset (CocoDataset, its filter_cfg) on the tiny annotation file."""
    from mmdet.registry import DATASETS
    init_default_scope('mmdet')
    cfg = _config(DET_QUICKSTART).train_dataloader.dataset
    cfg.update(data_root=str(root), ann_file='annotations/bad.json', test_mode=test_mode, pipeline=list(pipeline))
    return DATASETS.build(cfg)


def _instances(dataset):
    return {dataset.get_data_info(i)['img_id']: dataset.get_data_info(i)['instances'] for i in range(len(dataset))}


def test_quickstart_uses_mmdet_coco_filter_settings():
    cfg = _config(DET_QUICKSTART)
    assert cfg.train_dataloader.dataset.type == 'CocoDataset'
    assert cfg.train_dataloader.dataset.filter_cfg == dict(filter_empty_gt=True, min_size=32)
    assert cfg.val_dataloader.dataset.test_mode and cfg.test_dataloader.dataset.test_mode


def test_degenerate_boxes_are_dropped_and_crowds_ignored(tiny_coco):
    instances = _instances(_quickstart_dataset(tiny_coco, test_mode=True))  # test mode: no image is filtered
    assert sorted(instances) == [1, 2, 3, 4, 5]
    assert instances[1] == [] and instances[2] == [], 'every degenerate box is skipped'
    (crowd,) = instances[3]
    assert crowd['ignore_flag'] == 1 and crowd['bbox'] == [8, 8, 38, 38]
    (valid,) = instances[4]
    assert valid['ignore_flag'] == 0 and valid['bbox'] == [4, 6, 24, 36] and valid['bbox_label'] == 0


def test_training_drops_images_without_annotations_and_below_min_size(tiny_coco):
    kept = _instances(_quickstart_dataset(tiny_coco, test_mode=False))
    # filter_empty_gt looks at the annotation file, not at the boxes that survive parsing: the image whose boxes
    # are all degenerate stays, with no boxes at all, as does the crowd-only one.
    assert sorted(kept) == [2, 3, 4]


def test_training_step_on_images_without_valid_boxes_is_finite(tiny_coco):
    from mmdet.registry import MODELS
    pipeline = _config(DET_QUICKSTART).train_pipeline
    pipeline[2].scale = (32, 32)  # the smallest the backbone takes: a cheap step
    pipeline[3].prob = 0.0
    dataset = _quickstart_dataset(tiny_coco, test_mode=False, pipeline=pipeline)
    samples = [dataset[i] for i in range(len(dataset)) if dataset.get_data_info(i)['img_id'] in (2, 3)]
    assert [len(s['data_samples'].gt_instances) for s in samples] == [0, 0]
    assert len(samples[1]['data_samples'].ignored_instances) == 1  # the crowd box

    torch.manual_seed(0)
    model = MODELS.build(_config(DET_QUICKSTART).model)  # backbone init_cfg=None: no weights to load
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a step this small gains nothing from threads, and loses much when a core is busy
    try:
        log_vars = model.train_step(pseudo_collate(samples), optim_wrapper)
    finally:
        torch.set_num_threads(threads)
    assert {'loss_rpn_cls', 'loss_cls', 'loss_mask'} <= set(log_vars)
    assert all(math.isfinite(float(v)) for v in log_vars.values()), log_vars
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_synthetic_coco_writes_no_degenerate_boxes(tmp_path):
    # The smallest images and objects the generator makes, where a degenerate box would be likeliest.
    generate_synthetic_coco(tmp_path, num_train=60, num_val=1, size=(32, 32), progress=False)
    coco = json.loads((tmp_path / 'annotations/instances_train.json').read_text())
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        assert w >= 1 and h >= 1 and ann['area'] > 0 and ann['iscrowd'] == 0, ann
        assert 0 <= x and x + w <= 32 and 0 <= y and y + h <= 32, ann
    assert {ann['image_id'] for ann in coco['annotations']} == {image['id'] for image in coco['images']}


def test_mask_annotations_as_mmdet_loads_them():
    from mmdet.datasets.transforms import LoadAnnotations
    load = LoadAnnotations(with_bbox=True, with_mask=True)
    box = dict(bbox=[0, 0, 10, 10], bbox_label=0, ignore_flag=0)
    # A polygon with fewer than 3 points: the instance becomes ignored (like a crowd), not an error.
    results = load.transform(dict(height=SIZE, width=SIZE, ori_shape=(SIZE, SIZE),
                                  instances=[dict(box, mask=[[1, 2, 3, 4]])]))
    assert results['gt_ignore_flags'].tolist() == [True]
    # No `segmentation` at all in a mask pipeline (Mask R-CNN): mmdet 3.3 fails with a bare KeyError, which the tools
    # turn into a message that says what is missing and what to do.
    def no_masks():
        load.transform(dict(height=SIZE, width=SIZE, ori_shape=(SIZE, SIZE), instances=[dict(box)]))

    with pytest.raises(KeyError, match='mask'):
        no_masks()
    with pytest.raises(SystemExit) as stop:
        run_tool(no_masks)
    assert stop.value.code.startswith("MissingMasksError: an annotation of the dataset has no instance mask")


def test_missing_masks_from_a_dataloader_worker_are_explained():
    """The same KeyError re-raised from a DataLoader worker (torch carries the worker's traceback in the message)."""
    from mmdet.datasets.transforms import LoadAnnotations
    from torch.utils.data import DataLoader, Dataset

    class BoxesOnly(Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            box = dict(bbox=[0, 0, 10, 10], bbox_label=0, ignore_flag=0)
            return LoadAnnotations(with_bbox=True, with_mask=True).transform(
                dict(height=SIZE, width=SIZE, ori_shape=(SIZE, SIZE), instances=[box]))

    with pytest.raises(SystemExit) as stop:
        run_tool(lambda: next(iter(DataLoader(BoxesOnly(), num_workers=1))))
    assert stop.value.code.startswith('MissingMasksError')

    def other():
        raise KeyError('mask')  # not from mmdet's mask loading: keeps its traceback

    with pytest.raises(KeyError):
        run_tool(other)


# ---------------------------------------------------------------- NaN/Inf losses under AMP

def test_finite_loss_hook_lets_amp_skip_steps_then_stops():
    hook = FiniteLossHook(max_amp_skips=2)
    warnings = []
    # The hook only asks whether the wrapper is an AmpOptimWrapper, whose constructor needs a GPU.
    runner = SimpleNamespace(optim_wrapper=AmpOptimWrapper.__new__(AmpOptimWrapper), iter=0, epoch=0,
                             logger=SimpleNamespace(warning=warnings.append))
    for runner.iter, loss in enumerate([float('inf'), float('nan'), 1.0, float('nan'), float('nan')]):
        hook.after_train_iter(runner, runner.iter, outputs=dict(loss=torch.tensor(loss)))
    assert warnings[:2] == ['Loss is inf at iteration 1: AMP skips this step (1/2 in a row allowed).',
                            'Loss is nan at iteration 2: AMP skips this step (2/2 in a row allowed).']
    assert len(warnings) == 4, 'a finite loss resets the count'
    runner.iter = 5
    with pytest.raises(NonFiniteLossError, match=r'Training loss is nan at iteration 6 \(epoch 1\)'):
        hook.after_train_iter(runner, 5, outputs=dict(loss=torch.tensor(float('nan'))))
