from .hooks import FiniteLossHook, NonFiniteLossError, RandomStateHook
from .optimizers import LayerDecayOptimWrapperConstructor

__all__ = ['FiniteLossHook', 'LayerDecayOptimWrapperConstructor', 'NonFiniteLossError', 'RandomStateHook']
