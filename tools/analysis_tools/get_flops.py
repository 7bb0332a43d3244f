"""Parameters and FLOPs (multiply-accumulates, as mmengine/fvcore count them) of a Conv2Former or a whole model.

    python tools/analysis_tools/get_flops.py --arch tiny --classifier          # the released classifier at 224x224
    python tools/analysis_tools/get_flops.py --arch base --shape 512 512       # the backbone alone
    python tools/analysis_tools/get_flops.py configs/mask_rcnn/X.py --shape 800 1280   # a detector or segmentor
"""
import argparse
import functools
import json
import logging

import torch
from mmengine.analysis import get_model_complexity_info
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger

import mmconv2former  # noqa: F401  (registers the backbone and the timm models)
from mmconv2former.models import Conv2Former, Conv2FormerClassifier


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Params and FLOPs of Conv2Former models')
    parser.add_argument('config', nargs='?', help='an mmdet/mmseg config (omit to measure --arch alone)')
    parser.add_argument('--arch', default='tiny', help='nano/tiny/small/base/large when no config is given')
    parser.add_argument('--classifier', action='store_true', help='the released classifier (with head) for --arch')
    parser.add_argument('--shape', type=int, nargs=2, default=None, metavar=('H', 'W'),
                        help='input size (default: 224 224, or 800 1280 for detection, 512 512 for segmentation)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='key=value overrides for the config')
    parser.add_argument('--json', action='store_true', help='print one JSON line instead of text')
    return parser.parse_args(argv)


MASK_ROIS = 100  # RoIs through the mask head when counting: mmdet's StandardRoIHead.forward, mmdet 2's forward_dummy


def count_cascade_masks_like_the_papers(model):
    """Count Cascade's mask heads on the first 100 RoIs, as for Mask R-CNN.

    mmdet 3's `CascadeRoIHead.forward` ('tensor' mode) runs every stage's mask head on all (1000) proposals, while
    its `StandardRoIHead.forward` and mmdet 2's `forward_dummy` (which produced the published tables, e.g. ConvNeXt-T
    Cascade Mask R-CNN 741G) take the first 100. The other rows are filled with zeros, which count no FLOPs.
    """
    from mmdet.models.roi_heads import CascadeRoIHead
    roi_head = getattr(model, 'roi_head', None)
    if not (isinstance(roi_head, CascadeRoIHead) and roi_head.with_mask):
        return
    mask_forward = roi_head._mask_forward

    def first_rois_only(stage, x, rois):
        results = mask_forward(stage, x, rois[:MASK_ROIS])
        preds = results['mask_preds']
        results['mask_preds'] = torch.cat([preds, preds.new_zeros((len(rois) - len(preds),) + preds.shape[1:])])
        return results
    roi_head._mask_forward = first_rois_only


def build_from_config(path, shape, cfg_options):
    """The model of an mmdet/mmseg config (in 'tensor' mode) and an input batch of the given size."""
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg'):
        raise SystemExit(f"{path}: default_scope must be 'mmdet' or 'mmseg', got {scope!r}")
    init_default_scope(scope)
    if cfg.model.get('backbone', {}).get('init_cfg'):
        cfg.model.backbone.init_cfg = None  # FLOPs need no weights
    model = MODELS.build(cfg.model)
    shape = tuple(shape or ((800, 1280) if scope == 'mmdet' else (512, 512)))
    meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape, batch_input_shape=shape, scale_factor=(1., 1.))
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample as DataSample
        count_cascade_masks_like_the_papers(model)
    else:
        from mmseg.structures import SegDataSample as DataSample
    # The jit tracer behind the counter takes tensors only: bind the data samples (as mmdet's get_flops does).
    model.forward = functools.partial(model.forward, data_samples=[DataSample(metainfo=meta)], mode='tensor')
    return model, shape, (torch.randn(1, 3, *shape),)


def measure(args):
    if args.config:
        model, shape, inputs = build_from_config(args.config, args.shape, args.cfg_options)
        name = args.config
    else:
        shape = tuple(args.shape or (224, 224))
        model = (Conv2FormerClassifier(arch=args.arch) if args.classifier else Conv2Former(arch=args.arch))
        inputs = (torch.randn(1, 3, *shape),)
        name = f'Conv2Former-{args.arch}' + (' classifier' if args.classifier else ' backbone')
    model.eval()
    # mmengine warns once per op it does not count (GELU, elementwise products): they are not multiply-adds.
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    with torch.no_grad():
        result = get_model_complexity_info(model, inputs=inputs, show_table=False, show_arch=False)
    return dict(model=name, input_shape=list(shape), flops_g=result['flops'] / 1e9,
                params_m=sum(p.numel() for p in model.parameters()) / 1e6)


def main(argv=None):
    args = parse_args(argv)
    result = measure(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['model']}  input {result['input_shape'][0]}x{result['input_shape'][1]}: "
              f"{result['params_m']:.2f} M params, {result['flops_g']:.2f} GFLOPs (multiply-accumulates)")
    return result


if __name__ == '__main__':
    main()
