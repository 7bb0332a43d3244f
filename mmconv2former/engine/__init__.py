from .hooks import FiniteLossHook, NonFiniteLossError, RandomStateHook, SingleThreadBackwardHook
from .optimizers import LayerDecayOptimWrapperConstructor

__all__ = ['FiniteLossHook', 'LayerDecayOptimWrapperConstructor', 'NonFiniteLossError', 'RandomStateHook',
           'SingleThreadBackwardHook']
