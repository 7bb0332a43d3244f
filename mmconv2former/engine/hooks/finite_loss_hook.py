"""Stop training on a NaN/Inf loss before a checkpoint of garbage weights is written."""
import math

import torch
from mmengine.hooks import Hook
from mmengine.optim import AmpOptimWrapper

from ...registry import HOOKS


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Checks the loss of every training iteration and stops with the iteration number when it is not finite.

    It runs before CheckpointHook (priority ABOVE_NORMAL), so the weights already updated by the bad step are never
    saved; resume from the last checkpoint. Under AMP (`AmpOptimWrapper`) a non-finite loss usually means an fp16
    overflow: the grad scaler skips that step and lowers the scale, as mmengine does, so only `max_amp_skips`
    consecutive non-finite iterations stop the run.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, max_amp_skips: int = 20):
        if not isinstance(max_amp_skips, int) or max_amp_skips < 0:
            raise ValueError(f'FiniteLossHook: max_amp_skips must be an int >= 0, got {max_amp_skips!r}.')
        self.max_amp_skips = max_amp_skips
        self._consecutive = 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        loss = (outputs or {}).get('loss')
        if loss is None:
            return
        value = loss.item() if isinstance(loss, torch.Tensor) else float(loss)
        if math.isfinite(value):
            self._consecutive = 0
            return
        self._consecutive += 1
        amp = isinstance(runner.optim_wrapper, AmpOptimWrapper)
        if amp and self._consecutive <= self.max_amp_skips:
            runner.logger.warning(f'Loss is {value} at iteration {runner.iter + 1}: AMP skips this step '
                                  f'({self._consecutive}/{self.max_amp_skips} in a row allowed).')
            return
        others = {k: round(v.item(), 4) for k, v in outputs.items() if isinstance(v, torch.Tensor) and v.numel() == 1}
        raise NonFiniteLossError(
            f'Training loss is {value} at iteration {runner.iter + 1} (epoch {runner.epoch + 1}); losses: {others}. '
            'Stopped before saving a checkpoint. Resume from the last checkpoint with a lower learning rate, '
            'gradient clipping (optim_wrapper.clip_grad) or AMP off.')
