from .conv2former import ArgumentError, Conv2Former, Conv2FormerBody

__all__ = ['ArgumentError', 'Conv2Former', 'Conv2FormerBody']
