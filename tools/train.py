"""Train an MMDetection or MMSegmentation model from a config (the library is read off the config's scope).

    python tools/train.py configs/mask_rcnn/mask-rcnn_conv2former-t_fpn_1x_coco.py [--amp] [--resume [CKPT]]

Multi-GPU: tools/dist_train.sh; slurm: tools/slurm_train.sh.
"""
import argparse
import logging

from mmengine.device import get_device
from mmengine.logging import print_log

from mmconv2former.apis.runner import (
    UsageError,
    build_runner,
    check_checkpoint_exists,
    check_dataset_paths,
    load_config,
    parse_args,
    run_tool,
)


def parse_train_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (AmpOptimWrapper)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help="scale the lr by the actual batch size over the config's auto_scale_lr.base_batch_size")
    parser.add_argument(
        '--resume', nargs='?', const='auto', metavar='CHECKPOINT',
        help='resume training state: from CHECKPOINT, or without a value from the latest checkpoint in the work dir')
    return parse_args(parser, argv)


def apply_train_args(cfg, args):
    """Turn --amp, --auto-scale-lr and --resume into config settings, refusing what cannot work."""
    if args.amp:
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper == 'AmpOptimWrapper':
            print_log('--amp: the config already trains with AmpOptimWrapper.', logger='current', level=logging.INFO)
        elif wrapper == 'OptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
        else:
            raise UsageError(f"--amp needs optim_wrapper.type 'OptimWrapper' or 'AmpOptimWrapper', got {wrapper!r}")

    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise UsageError('--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=<total batch size the lr was '
                             f'tuned for>) in the config; {args.config} has none')
        cfg.auto_scale_lr.enable = True

    if args.resume is not None:
        cfg.resume = True
        # None makes mmengine look for the latest checkpoint in the work dir.
        cfg.load_from = None if args.resume == 'auto' else args.resume


def check_amp_device(cfg, args, device: str):
    """mmengine's AmpOptimWrapper asserts a GPU-like device when it is built; say so before anything is built."""
    if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper' and device == 'cpu':
        raise UsageError(f'{"--amp" if args.amp else args.config + " trains with AmpOptimWrapper, which"} needs a '
                         'GPU (mmengine runs mixed precision on CUDA, NPU, MLU or MUSA devices only); on a CPU, train '
                         'without --amp, or with the config of the same name without "amp-".')


def main(argv=None):
    args = parse_train_args(argv)
    cfg = load_config(args)
    apply_train_args(cfg, args)
    check_amp_device(cfg, args, get_device())
    if cfg.get('load_from'):  # --resume CKPT, or the config's weights of a whole model
        check_checkpoint_exists(cfg.load_from, '--resume' if args.resume not in (None, 'auto') else 'load_from')
    check_dataset_paths(cfg, 'train')  # before the model is built and weights are loaded
    build_runner(cfg, progress=not args.no_progress).train()


if __name__ == '__main__':
    run_tool(main)
