"""Evaluate a checkpoint of an MMDetection or MMSegmentation config (the library is read off the config's scope).

    python tools/test.py CONFIG CHECKPOINT [--show-dir vis] [--out results] [--tta]

Detection reports the config's evaluator (CocoMetric: bbox/segm AP), segmentation its IoUMetric (mIoU).
Sliding-window or multi-scale testing is a config matter: --cfg-options model.test_cfg.mode=slide, or --tta.
Multi-GPU: tools/dist_test.sh; slurm: tools/slurm_test.sh.
"""
import argparse

from mmengine.config import ConfigDict

from mmconv2former.apis.runner import (
    UsageError,
    build_runner,
    check_checkpoint_exists,
    check_dataset_paths,
    config_scope,
    load_config,
    parse_args,
    run_tool,
)


def parse_test_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='also keep the raw predictions: detection, a .pkl file; '
                        'segmentation, a directory of label PNGs')
    parser.add_argument('--show', action='store_true', help='show each prediction in a window')
    parser.add_argument('--show-dir', help='save pictures of the predictions (beside the ground truth) here; '
                        'detection puts the folder under <work_dir>/<timestamp>/')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds each --show window stays')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation with the config's tta_model and tta_pipeline")
    return parse_args(parser, argv)


def enable_visualization(cfg, args, scope):
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        example = 'DetVisualizationHook' if scope == 'mmdet' else 'SegVisualizationHook'
        raise UsageError(f"--show/--show-dir need default_hooks.visualization in the config: dict(type='{example}')")
    hook.draw = True
    if args.show:
        hook.update(show=True, wait_time=args.wait_time)
    if args.show_dir:
        # The two libraries' hooks save in different ways: mmdet's writes files itself, mmseg's goes through the
        # visualizer's backend.
        if scope == 'mmdet':
            hook.test_out_dir = args.show_dir
        else:  # mmseg's hook draws every `interval`-th batch, also when testing: here every one
            cfg.visualizer.save_dir = args.show_dir
            hook.interval = 1


def enable_tta(cfg):
    missing = [key for key in ('tta_model', 'tta_pipeline') if key not in cfg]
    if missing:
        raise UsageError(
            f'--tta needs {" and ".join(missing)} in the config. mmseg::_base_ configs define both; mmdet\'s '
            'DetTTAModel merges boxes only, so the Mask R-CNN configs have none.')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)


def apply_test_args(cfg, args):
    """Turn the checkpoint, --out, --show/--show-dir and --tta into config settings (--out of a detection
    config is added to the runner's evaluator in `main`)."""
    scope = config_scope(cfg)
    cfg.load_from = args.checkpoint
    if args.out and scope == 'mmdet' and not args.out.endswith(('.pkl', '.pickle')):
        raise UsageError(f'--out for a detection config must be a .pkl file, got {args.out!r}')

    if args.show or args.show_dir:
        enable_visualization(cfg, args, scope)
    if args.tta:
        enable_tta(cfg)
    if args.out and scope == 'mmseg':
        cfg.test_evaluator.update(output_dir=args.out, keep_results=True)


def main(argv=None):
    args = parse_test_args(argv)
    cfg = load_config(args)
    apply_test_args(cfg, args)
    check_dataset_paths(cfg, 'test')  # before the model is built and the checkpoint is loaded
    check_checkpoint_exists(args.checkpoint)
    runner = build_runner(cfg, progress=not args.no_progress)
    if args.out and config_scope(cfg) == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    run_tool(main)
