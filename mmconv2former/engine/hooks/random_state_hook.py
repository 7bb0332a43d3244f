"""Save the random number generators' states in checkpoints and restore them on resume.

mmengine's resume restores weights, optimizer, schedulers and the iteration, and replays the data loader up to it,
but not the main process's RNGs: dropout/drop-path masks and RoI sampling after a resume then differ from an
uninterrupted run. With this hook (and data loading in worker processes, whose seeds mmengine derives from the
run's seed, so the replay reproduces them), a resumed deterministic run gives the same losses.
"""
import random

import numpy as np
import torch
from mmengine.hooks import Hook

from ...registry import HOOKS

KEY = 'random_state'


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Stores python/numpy/torch(/CUDA) RNG states under checkpoint['meta']['random_state']; restores on resume."""

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint.setdefault('meta', {})[KEY] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('meta', {}).get(KEY)
        if state is None:
            runner.logger.info('RandomStateHook: the checkpoint has no RNG states; random draws after resuming '
                               'will differ from an uninterrupted run.')
            return
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available() and len(state['cuda']) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state['cuda'])
