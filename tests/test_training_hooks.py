"""Training-loop hooks of mmconv2former that are not about faults (those are in test_reliability.py and
test_fault_tolerance.py), run in a real mmengine Runner."""
import pytest
from mmengine.hooks import Hook
from toy_runner import make_runner

import mmconv2former  # noqa: F401
from mmconv2former.engine.hooks.single_thread_backward_hook import multithreading_enabled


class _Probe(Hook):
    """Records, after each training iteration, whether backward used the engine's device threads."""

    priority = 'VERY_LOW'

    def __init__(self):
        self.seen = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.seen.append(multithreading_enabled())


@pytest.mark.parametrize('with_hook', [True, False])
def test_single_thread_backward_hook(tmp_path, with_hook):
    """The hook turns the autograd engine's multithreading off for the training iterations and puts the previous
    value back when training ends; without it the loop keeps PyTorch's default."""
    probe = _Probe()
    hooks = [dict(type='mmconv2former.SingleThreadBackwardHook')] if with_hook else []
    runner = make_runner(tmp_path, max_iters=3, custom_hooks=hooks, checkpoint_interval=10)
    runner.register_hook(probe)
    assert multithreading_enabled()
    runner.train()
    assert probe.seen == [not with_hook] * 3
    assert multithreading_enabled()  # restored
