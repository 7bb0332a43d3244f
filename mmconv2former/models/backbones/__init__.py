from .conv2former import Conv2Former, Conv2FormerBody

__all__ = ['Conv2Former', 'Conv2FormerBody']
