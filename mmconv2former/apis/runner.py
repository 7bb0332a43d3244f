"""What tools/train.py and tools/test.py share: one pair of tools for MMDetection and MMSegmentation configs.

A config says which library it belongs to through `default_scope`, which it inherits from its `mmdet::` or
`mmseg::` bases; everything scope-specific in the tools dispatches on that, so neither library is imported for
the other's configs.
"""
import argparse
import importlib
import os
import os.path as osp
import sys
from typing import Callable, Iterator, List, Sequence, Tuple

from mmengine.config import Config, DictAction
from mmengine.fileio import join_path
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmengine.utils import is_abs

from ..engine.hooks import NonFiniteLossError
from ..models.backbones.conv2former import ArgumentError, Conv2Former
from ..models.checkpoint import CheckpointMismatchError, PretrainedWeightsNotFoundError, describe_arch
from ..utils.checkpoint_io import CorruptCheckpointError, UntrustedCheckpointError
from .progress import ProgressBarHook

SCOPES = {'mmdet': 'MMDetection', 'mmseg': 'MMSegmentation'}
# How to make each library's data: the synthetic quickstart datasets, and where the real ones go.
DATASET_HINTS = {
    'mmdet': 'for the detection quickstart `python tools/dataset_converters/make_synthetic_coco.py --out '
             'data/synthetic_coco`; COCO 2017 unzipped into data/coco/{annotations,train2017,val2017} (mmdet layout)',
    'mmseg': 'for the segmentation quickstart `python tools/dataset_converters/make_synthetic_ade.py --out '
             'data/synthetic_ade`; ADE20K as docs/segmentation.md says',
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset path of the config (data_root, ann_file, data_prefix, an evaluator's ann_file) does not exist."""


class CheckpointNotFoundError(FileNotFoundError):
    """The checkpoint given to a tool (tools/test.py's, --resume's, the config's load_from) does not exist."""


class ConfigNotFoundError(FileNotFoundError):
    """The config given to a tool does not exist."""


class UsageError(ValueError):
    """A tool's option that the config or the machine cannot honour (--amp, --auto-scale-lr, --out, --tta, --show),
    or a config the tools do not run (its default_scope)."""


def check_checkpoint_exists(checkpoint: str, field: str = 'checkpoint'):
    """Before the runner is built: a local checkpoint path that does not exist is a clear error (mmengine would
    fail only after building the model and the dataset). URLs (`scheme://`) are left to mmengine. `field` names
    where the path came from in the message."""
    if '://' not in checkpoint and not osp.isfile(checkpoint):
        hint = ('it is a folder; pass the .pth file in it (its last_checkpoint file names the newest)'
                if osp.isdir(checkpoint) else 'pass a .pth file that tools/train.py wrote, e.g. '
                'work_dirs/<config name>/iter_<N>.pth (the last_checkpoint file there names the newest)')
        raise CheckpointNotFoundError(f'{field} {checkpoint!r} does not exist as a file: {hint}.')


# Errors whose message says what is wrong and what to do: the tools print it alone, without a stack trace.
CLEAR_ERRORS = (DatasetNotFoundError, CheckpointNotFoundError, ConfigNotFoundError, UsageError, ArgumentError,
                PretrainedWeightsNotFoundError, CheckpointMismatchError, UntrustedCheckpointError,
                CorruptCheckpointError, NonFiniteLossError)


def parse_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Add the arguments both tools take (mmengine's usual set) after the tool's own, and parse."""
    parser.add_argument('--work-dir', help='where logs, checkpoints and metrics go '
                        '(default: the config\'s work_dir, else ./work_dirs/<config name>)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries, e.g. train_cfg.max_iters=100 model.backbone.drop_path_rate=0.1; '
        'lists as key="[a,b]", no spaces')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher (tools/dist_*.sh and tools/slurm_*.sh set it)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars, only the log lines')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank (older); torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def config_scope(cfg: Config) -> str:
    """'mmdet' or 'mmseg', from the config's `default_scope`; anything else is an error that says what to do."""
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        allowed = ', '.join(f"'{s}' ({name})" for s, name in SCOPES.items())
        raise UsageError(
            f'{cfg.filename or "the config"}: default_scope is {scope!r}, but these tools run configs whose '
            'default_scope is one of '
            f"{allowed}. A config gets it by inheriting from an mmdet:: or mmseg:: base (e.g. _base_ = "
            "['mmdet::_base_/default_runtime.py']) or by setting it.")
    return scope


def load_config(args: argparse.Namespace) -> Config:
    """Read the config, apply --cfg-options and --launcher, and settle the work dir (CLI > config > config name)."""
    if not osp.isfile(args.config):
        raise ConfigNotFoundError(f'config {args.config!r} does not exist; the configs are under configs/ (e.g. '
                                  'configs/mask_rcnn/mask-rcnn_conv2former-t_fpn_1x_coco.py; README lists them).')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    config_scope(cfg)
    return cfg


def _feature_width_mismatches(model) -> List[Tuple[str, object, object]]:
    """(field, its value, what it should be) for what reads Conv2Former's maps and does not match their widths: the
    neck, else mmseg's decode and auxiliary heads (through their in_index)."""
    widths = list(model.backbone.out_channels)
    neck = getattr(model, 'neck', None)
    if neck is not None:
        readers = [('model.neck', neck, False)]
    else:
        readers = [(f'model.{name}', getattr(model, name, None), True) for name in ('decode_head', 'auxiliary_head')]
    found = []
    for field, module, indexed in readers:
        in_channels = getattr(module, 'in_channels', None)
        if in_channels is None:  # not there, or a list of heads: not checked
            continue
        if indexed:
            index = module.in_index
            if isinstance(index, int) and not -len(widths) <= index < len(widths):
                found.append((f'{field}.in_index', index, f'an index of the {len(widths)} maps'))
                continue
            expected = widths[index] if isinstance(index, int) else [widths[i] for i in index]
        else:
            expected = widths
        if (list(in_channels) if isinstance(in_channels, (list, tuple)) else in_channels) != expected:
            found.append((f'{field}.in_channels', in_channels, expected))
    return found


def check_feature_widths(model) -> None:
    """ArgumentError naming the mismatched fields when a Conv2Former backbone's output widths differ from what its
    neck or heads expect (e.g. `--cfg-options model.backbone.arch=tiny` on a nano config): otherwise the run fails
    at the first iteration with a bare convolution shape error."""
    model = model.module if is_model_wrapper(model) else model
    if not isinstance(getattr(model, 'backbone', None), Conv2Former):
        return
    found = _feature_width_mismatches(model)
    if found:
        backbone = model.backbone
        arch = describe_arch(dict(depths=backbone.depths, dims=backbone.dims, kernel_size=backbone.kernel_size))
        fix = ' '.join(f'"{field}={str(expected).replace(" ", "")}"' for field, _, expected in found
                       if not isinstance(expected, str))
        raise ArgumentError(
            f'{arch} outputs maps of {list(backbone.out_channels)} channels (out_indices {backbone.out_indices}), '
            'but ' + '; '.join(f'{field} is {value} (needs {expected})' for field, value, expected in found) +
            '. Change them together with model.backbone.arch or out_indices' +
            (f', e.g. --cfg-options {fix}.' if fix else '.'))


def build_runner(cfg: Config, progress: bool = True) -> Runner:
    """The config's runner (`runner_type` from the config's library registry if set), with a progress bar; a model
    whose neck or heads do not match Conv2Former's output widths is refused (`check_feature_widths`)."""
    if 'runner_type' in cfg:
        runner = importlib.import_module(f'{config_scope(cfg)}.registry').RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    check_feature_widths(runner.model)
    if progress:
        runner.register_hook(ProgressBarHook())
    return runner


def _local(path: str) -> bool:
    """Only local paths are checked: a URL or an object-store path would need its backend (and credentials)."""
    return not (is_abs(path) and '://' in path)


def _dataset_cfgs(dataset, field: str) -> Iterator[Tuple[str, dict]]:
    """A dataset cfg and those it wraps (RepeatDataset/ClassBalancedDataset `dataset`, ConcatDataset `datasets`),
    each with its field name in the config."""
    if not isinstance(dataset, dict):  # an already built dataset: nothing to read off
        return
    yield field, dataset
    if isinstance(dataset.get('dataset'), dict):
        yield from _dataset_cfgs(dataset['dataset'], f'{field}.dataset')
    for i, inner in enumerate(dataset.get('datasets') or []):
        yield from _dataset_cfgs(inner, f'{field}.datasets[{i}]')


def _missing_dataset_paths(dataset: dict, field: str) -> List[str]:
    """One line per path of `dataset` that does not exist, joined with data_root the way mmengine's BaseDataset
    does (`_join_prefix`); a missing data_root is reported alone, as everything under it is missing too."""
    backend = (dataset.get('backend_args') or {}).get('backend', 'local')
    data_root = dataset.get('data_root')
    if backend != 'local' or (data_root and not _local(data_root)):
        return []
    if data_root and not osp.isdir(data_root):
        return [f'{field}.data_root: {data_root!r} does not exist.']
    paths = [('ann_file', dataset.get('ann_file'))]
    paths += [(f'data_prefix.{key}', value) for key, value in (dataset.get('data_prefix') or {}).items()]
    missing = []
    for key, path in paths:
        # Empty: the dataset lists data_root itself (mmseg's default ann_file='', mmdet's data_prefix img='').
        if not isinstance(path, str) or not path or not _local(path):
            continue
        full = join_path(data_root, path) if data_root and not is_abs(path) else path
        if not osp.exists(full):
            root = f' (data_root={data_root!r})' if data_root and full != path else ''
            missing.append(f'{field}.{key}: {full!r} does not exist{root}.')
    return missing


def _missing_evaluator_paths(evaluator, field: str) -> List[str]:
    """An evaluator's ground-truth file (CocoMetric's ann_file), which it reads when the loop is built."""
    metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    missing = []
    for i, metric in enumerate(metrics):
        path = metric.get('ann_file') if isinstance(metric, dict) else None
        name = field if len(metrics) == 1 else f'{field}[{i}]'
        if isinstance(path, str) and path and _local(path) and not osp.exists(path):
            missing.append(f'{name}.ann_file: {path!r} does not exist.')
    return missing


def used_dataloaders(cfg: Config, mode: str) -> Sequence[str]:
    """The dataloaders a run reads: training reads train (and val if the config validates), testing reads test."""
    if mode not in ('train', 'test'):
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    if mode == 'test':
        return ('test_dataloader',)
    # mmengine builds a validation loop only if val_cfg is set (it then also needs val_dataloader/val_evaluator).
    return ('train_dataloader', 'val_dataloader') if cfg.get('val_cfg') else ('train_dataloader',)


def check_dataset_paths(cfg: Config, mode: str) -> None:
    """Raise DatasetNotFoundError naming every missing dataset path of the run, before the model is built: a
    wrong data_root otherwise surfaces only after model building and weight loading, deep inside the dataset."""
    missing, options = [], []
    for loader in used_dataloaders(cfg, mode):
        dataset = (cfg.get(loader) or {}).get('dataset')
        for field, inner in _dataset_cfgs(dataset, f'{loader}.dataset'):
            missing += _missing_dataset_paths(inner, field)
        options.append(f'{loader}.dataset.data_root=PATH')
        evaluator = loader.replace('_dataloader', '_evaluator')
        if cfg.get(evaluator):
            found = _missing_evaluator_paths(cfg[evaluator], evaluator)
            missing += found
            options += [f'{evaluator}.ann_file=PATH'] if found else []
    if missing:
        hint = DATASET_HINTS[config_scope(cfg)]
        raise DatasetNotFoundError('\n'.join(missing) + f'\nMake the dataset first: {hint}. Or point the config '
                                   f'at yours: --cfg-options {" ".join(options)}')


def run_tool(main: Callable[[], None]) -> None:
    """Run a tool's `main`; one of CLEAR_ERRORS ends it with its message and exit status 1, no stack trace (the
    message says all). Other errors keep their traceback: they are bugs or problems we do not diagnose."""
    try:
        main()
    except CLEAR_ERRORS as error:
        sys.exit(f'{type(error).__name__}: {error}')
    except KeyError as error:
        if _is_missing_instance_mask(error):
            sys.exit(MISSING_MASKS)
        raise


MISSING_MASKS = (
    "MissingMasksError: an annotation of the dataset has no instance mask ('segmentation'), which this config's mask "
    "head needs (mmdet's LoadAnnotations(with_mask=True) failed with a bare KeyError: 'mask'). Give every "
    "annotation a 'segmentation' (polygons or RLE), or train a box-only detector (no mask head, with_mask=False in "
    'the pipelines).')


def _is_missing_instance_mask(error: KeyError) -> bool:
    """mmdet's LoadAnnotations reading `instance['mask']` of an annotation without one: raised in the main process
    (the traceback passes through `_process_masks`) or re-raised from a DataLoader worker (torch puts the worker's
    traceback into the message)."""
    if error.args == ('mask',):
        tb = error.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_name == '_process_masks':
                return True
            tb = tb.tb_next
        return False
    text = str(error.args[0]) if error.args else ''
    return 'in _process_masks' in text and "KeyError: 'mask'" in text
