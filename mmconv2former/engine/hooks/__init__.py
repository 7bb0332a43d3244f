from .finite_loss_hook import FiniteLossHook, NonFiniteLossError
from .random_state_hook import RandomStateHook

__all__ = ['FiniteLossHook', 'NonFiniteLossError', 'RandomStateHook']
