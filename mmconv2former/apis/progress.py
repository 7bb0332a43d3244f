"""A tqdm progress bar for mmengine's train, val and test loops (what tools/train.py and tools/test.py show)."""
import logging
import sys
from typing import Dict, List, Tuple

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from tqdm import tqdm


class _BarSafeStream:
    """A console stream that prints through `tqdm.write`, so log lines appear above the bars instead of tearing
    them. Wrapping the stream (not replacing the handler, as tqdm's own logging redirect does) keeps mmengine's
    handler level, filters and colours."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        tqdm.write(text, file=self.stream, end='')

    def flush(self):
        self.stream.flush()


class ProgressBarHook(Hook):
    """One bar for training (iterations, with the current loss; starts at the resumed iteration) and one per
    validation or test pass (batches), on the main process only.

    Off a terminal (CI logs, `| tee`) the bars redraw rarely and all on one line, without the cursor movements of
    nested bars, so a log file stays readable.
    """

    priority = 'VERY_LOW'

    def __init__(self):
        self._bars: Dict[str, tqdm] = {}
        self._patched: List[Tuple[logging.StreamHandler, object]] = []

    def _open(self, mode: str, total: int, initial: int = 0) -> None:
        if not is_main_process():
            return
        interactive = sys.stderr.isatty()
        self._bars[mode] = tqdm(
            total=total, initial=initial, desc=mode, unit='it' if mode == 'train' else 'batch',
            dynamic_ncols=True, leave=mode != 'val', mininterval=0.2 if interactive else 30,
            position=None if interactive else 0)

    def _step(self, mode: str, **postfix) -> None:
        bar = self._bars.get(mode)
        if bar is not None:
            if postfix:
                bar.set_postfix(postfix, refresh=False)
            bar.update(1)

    def _close(self, mode: str) -> None:
        bar = self._bars.pop(mode, None)
        if bar is not None:
            bar.close()

    def before_run(self, runner) -> None:
        if not is_main_process():
            return
        for handler in runner.logger.handlers:
            if type(handler) is logging.StreamHandler and handler.stream in (sys.stdout, sys.stderr):
                self._patched.append((handler, handler.setStream(_BarSafeStream(handler.stream))))

    def after_run(self, runner) -> None:
        for mode in list(self._bars):
            self._close(mode)
        for handler, stream in self._patched:
            handler.setStream(stream)
        self._patched.clear()

    def before_train(self, runner) -> None:
        self._open('train', runner.max_iters, runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        loss = (outputs or {}).get('loss')
        self._step('train', **({} if loss is None else {'loss': f'{float(loss.detach()):.4f}'}))

    def after_train(self, runner) -> None:
        self._close('train')

    def before_val_epoch(self, runner) -> None:
        self._open('val', len(runner.val_dataloader))

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._step('val')

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._close('val')

    def before_test_epoch(self, runner) -> None:
        self._open('test', len(runner.test_dataloader))

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._step('test')

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._close('test')
