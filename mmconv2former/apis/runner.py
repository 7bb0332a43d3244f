"""What tools/train.py and tools/test.py share: one pair of tools for MMDetection and MMSegmentation configs.

A config says which library it belongs to through `default_scope`, which it inherits from its `mmdet::` or
`mmseg::` bases; everything scope-specific in the tools dispatches on that, so neither library is imported for
the other's configs.
"""
import argparse
import importlib
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from .progress import ProgressBarHook

SCOPES = {'mmdet': 'MMDetection', 'mmseg': 'MMSegmentation'}


def parse_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Add the arguments both tools take (mmengine's usual set) after the tool's own, and parse."""
    parser.add_argument('--work-dir', help='where logs, checkpoints and metrics go '
                        '(default: the config\'s work_dir, else ./work_dirs/<config name>)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries, e.g. train_cfg.max_iters=100 "model.backbone.arch=tiny"; '
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
        raise ValueError(
            f'{cfg.filename or "the config"}: default_scope is {scope!r}, but these tools run configs whose '
            'default_scope is one of '
            f"{allowed}. A config gets it by inheriting from an mmdet:: or mmseg:: base (e.g. _base_ = "
            "['mmdet::_base_/default_runtime.py']) or by setting it.")
    return scope


def load_config(args: argparse.Namespace) -> Config:
    """Read the config, apply --cfg-options and --launcher, and settle the work dir (CLI > config > config name)."""
    cfg = Config.fromfile(args.config)  # a missing file: FileNotFoundError naming it
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    config_scope(cfg)
    return cfg


def build_runner(cfg: Config, progress: bool = True) -> Runner:
    """The config's runner (`runner_type` from the config's library registry if set), with a progress bar."""
    if 'runner_type' in cfg:
        runner = importlib.import_module(f'{config_scope(cfg)}.registry').RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    if progress:
        runner.register_hook(ProgressBarHook())
    return runner
