"""Check that the whole stack works end to end: versions, compiled mmcv ops, mmdet/mmseg models, Conv2Former."""
import importlib
import platform
import time

import mmcv
import mmdet
import mmengine
import mmseg
import timm
import torch
from mmcv.ops import nms, roi_align

import mmconv2former
from mmconv2former.registry import MODELS


def main():
    print(f'python {platform.python_version()} | torch {torch.__version__} (CUDA available: '
          f'{torch.cuda.is_available()}) | mmengine {mmengine.__version__} | mmcv {mmcv.__version__} | '
          f'mmdet {mmdet.__version__} | mmseg {mmseg.__version__} | timm {timm.__version__} | '
          f'mmconv2former {mmconv2former.__version__}')
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
    kept = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)[1]
    pooled = roi_align(torch.randn(1, 4, 16, 16), torch.tensor([[0., 0., 0., 8., 8.]]), (2, 2))
    print(f'mmcv compiled ops: nms kept {kept.tolist()}, roi_align -> {tuple(pooled.shape)}')
    model = MODELS.build(dict(type='mmconv2former.Conv2Former', arch='nano')).eval()
    start = time.perf_counter()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 224, 224))
    print(f'Conv2Former-N on 1x3x224x224 in {1e3 * (time.perf_counter() - start):.0f} ms -> '
          + ', '.join(f'{tuple(o.shape[1:])}' for o in outs))
    importlib.import_module('mmdet.models')
    importlib.import_module('mmseg.models')
    print('mmdet.models and mmseg.models import: the stack is ready.')


if __name__ == '__main__':
    main()
