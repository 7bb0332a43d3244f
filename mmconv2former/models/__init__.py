from .backbones import Conv2Former, Conv2FormerBody
from .checkpoint import load_pretrained_backbone, release_to_backbone
from .timm_conv2former import Conv2FormerClassifier

__all__ = ['Conv2Former', 'Conv2FormerBody', 'Conv2FormerClassifier', 'load_pretrained_backbone',
           'release_to_backbone']
