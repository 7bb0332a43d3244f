"""Run the training loop's backward passes on the loop's own thread instead of the autograd engine's CUDA thread.

For CUDA tensors PyTorch's autograd engine hands every backward call to a worker thread of the device and waits for
it. On the GPU machines we measured, that handoff roughly doubled the host time of small backward steps, and eager
training steps are host-bound (docs/performance.md, host time). Interleaved on one H200 machine (2026-11-30, median
of 6 runs of 10 steps each, bf16, backbone only): Conv2Former-T COCO-size training 65.6 -> 49.3 ms, ADE-size
60.0 -> 43.8 ms, ConvNeXt-T COCO-size 34.5 -> 27.2 ms.

`torch.autograd.set_multithreading_enabled` is a per-thread setting: the hook turns it off on the runner's thread for
`runner.train()` and puts the previous value back afterwards. Our configs' runtime base lists it: whole training
iterations in real Runners (2x H200 machine, 2026-11-30) were 0-12% faster with it, never slower, on one GPU and
under DDP (Mask R-CNN-T and UperNet-T, eager and cuda_graph=True), with 30-100 MB less peak memory. CPU backwards
already run on the calling thread. With several GPUs in one process (DataParallel, which mmengine does not use) their
backward work would run one device after the other. mmengine calls no hook when training raises: the thread then
keeps the setting (results are the same either way); `torch.autograd.set_multithreading_enabled(True)` restores it.
"""
import torch
from mmengine.hooks import Hook

from ...registry import HOOKS


def multithreading_enabled() -> bool:
    """Whether this thread's backward calls use the autograd engine's device threads (PyTorch's default)."""
    return torch._C._is_multithreading_enabled()


@HOOKS.register_module()
class SingleThreadBackwardHook(Hook):
    """Training backwards on the runner's thread (see the module docstring). Configs that inherit
    configs/_base_/conv2former_runtime.py have it; elsewhere add `dict(type='mmconv2former.SingleThreadBackwardHook')`
    to `custom_hooks`."""

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
