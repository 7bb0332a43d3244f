"""Predict on images with a trained checkpoint and save pictures of the predictions.

    python demo/image_demo.py IMAGE [IMAGE ...] CONFIG CHECKPOINT [--out-dir outputs] [--device cpu]

Detection configs run through mmdet's DetInferencer (boxes, masks, class names and scores drawn on the image),
segmentation configs through mmseg's MMSegInferencer (the label map blended over the image): the stock
inferencers, which work with our configs once `mmconv2former` is imported. Pictures go to OUT_DIR/vis/.
"""
import argparse
import os.path as osp

from mmengine.config import Config

import mmconv2former  # noqa: F401  (registers Conv2Former so the inferencers can build our configs)
from mmconv2former.apis.runner import config_scope


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', nargs='+', help='image files (or one folder of images)')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (from tools/train.py)')
    parser.add_argument('--out-dir', default='outputs', help='pictures go to OUT_DIR/vis/')
    parser.add_argument('--device', default='cpu', help="'cpu' or e.g. 'cuda:0'")
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection: draw boxes scoring at least this')
    return parser.parse_args(argv)


def build_inferencer(scope: str, config: str, checkpoint: str, device: str):
    """mmdet's or mmseg's stock inferencer for the config, on `device`."""
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint!r} does not exist (tools/train.py writes them to the '
                                'work dir, e.g. work_dirs/<config name>/iter_300.pth)')
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer
        return DetInferencer(model=config, weights=checkpoint, device=device)
    from mmseg.apis import MMSegInferencer
    return MMSegInferencer(model=config, weights=checkpoint, device=device)


def main(argv=None):
    args = parse_args(argv)
    scope = config_scope(Config.fromfile(args.config))
    inferencer = build_inferencer(scope, args.config, args.checkpoint, args.device)
    inputs = args.inputs[0] if len(args.inputs) == 1 else args.inputs
    # Only the detector takes a score threshold; both save pictures under out_dir/vis/.
    inferencer(inputs, out_dir=args.out_dir, **(dict(pred_score_thr=args.score_thr) if scope == 'mmdet' else {}))
    print(f'pictures of the predictions: {osp.join(args.out_dir, "vis")}/')


if __name__ == '__main__':
    main()
