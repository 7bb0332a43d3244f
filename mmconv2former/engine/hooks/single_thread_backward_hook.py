"""Run the training loop's backward passes on the loop's own thread instead of the autograd engine's CUDA thread.

For CUDA tensors PyTorch's autograd engine hands every backward call to a worker thread of the device and waits for
it. On the GPU machines we measured, that handoff roughly doubled the host time of small backward steps, and eager
training steps are host-bound (docs/performance.md, host time). Interleaved on one H200 machine (2026-11-30, median
of 6 runs of 10 steps each, bf16, backbone only): Conv2Former-T COCO-size training 65.6 -> 49.3 ms, ADE-size
60.0 -> 43.8 ms, ConvNeXt-T COCO-size 34.5 -> 27.2 ms.

`torch.autograd.set_multithreading_enabled` is a per-thread setting: the hook turns it off on the runner's thread for
`runner.train()` and puts the previous value back afterwards. It is opt-in (it changes how every backward of the
loop is scheduled, not only the backbone's) and has not been measured under DDP; with several GPUs in one process
(DataParallel) their backward work would run one device after the other.
"""
import torch
from mmengine.hooks import Hook

from ...registry import HOOKS


def multithreading_enabled() -> bool:
    """Whether this thread's backward calls use the autograd engine's device threads (PyTorch's default)."""
    return torch._C._is_multithreading_enabled()


@HOOKS.register_module()
class SingleThreadBackwardHook(Hook):
    """Training backwards on the runner's thread (see the module docstring). Add
    `dict(type='mmconv2former.SingleThreadBackwardHook')` to a config's `custom_hooks`, e.g.
    `custom_hooks = _base_.custom_hooks + [dict(type='mmconv2former.SingleThreadBackwardHook')]` in a config that
    inherits ours (which keeps their FiniteLossHook and RandomStateHook)."""

    priority = 'VERY_HIGH'

    def __init__(self):
        self._previous = None

    def before_train(self, runner) -> None:
        self._previous = multithreading_enabled()
        torch.autograd.set_multithreading_enabled(False)  # a plain call sets it (it is also a context manager)
        runner.logger.info('SingleThreadBackwardHook: backward passes run on the training thread '
                           '(autograd engine multithreading off).')

    def after_train(self, runner) -> None:
        if self._previous is not None:
            torch.autograd.set_multithreading_enabled(self._previous)
            self._previous = None
