from .finite_loss_hook import FiniteLossHook, NonFiniteLossError
from .random_state_hook import RandomStateHook
from .single_thread_backward_hook import SingleThreadBackwardHook

__all__ = ['FiniteLossHook', 'NonFiniteLossError', 'RandomStateHook', 'SingleThreadBackwardHook']
