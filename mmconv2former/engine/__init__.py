from .hooks import FiniteLossHook, NonFiniteLossError
from .optimizers import LayerDecayOptimWrapperConstructor

__all__ = ['FiniteLossHook', 'LayerDecayOptimWrapperConstructor', 'NonFiniteLossError']
