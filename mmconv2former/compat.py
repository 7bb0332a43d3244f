"""Runtime fixes that make the OpenMMLab stack work on today's torch; `import mmconv2former` applies them.

1. torch >= 2.6 `weights_only` loading. Without this, `--resume`, `load_from`, `init_cfg=Pretrained` on a local
   file and mmdet's `init_detector` fail with
   `_pickle.UnpicklingError: Weights only load failed ...
   Unsupported global: GLOBAL mmengine.logging.history_buffer.HistoryBuffer`
   and the released Conv2Former files with `... Unsupported global: GLOBAL argparse.Namespace`.
   We register, for local paths, a loader that allow-lists exactly what those files contain
   (`mmconv2former.utils.checkpoint_io`), instead of a blanket `weights_only=False`.
2. Checkpoints written in place. mmengine's local backend `put` opens the final file and writes into it, so a run
   killed while saving leaves a truncated `iter_N.pth` that `--resume` then fails on
   (`RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central directory`).
   We write to a temporary file in the same folder and rename it over the target (atomic on POSIX). A SIGKILL
   mid-save leaves that temporary file; auto-resume names such leftovers so they can be deleted.
3. `last_checkpoint` written in place. After each save CheckpointHook opens `<work_dir>/last_checkpoint` for
   writing and then writes the path into it, so a run killed in between leaves it empty and auto-resume fails with
   `FileNotFoundError: checkpoint file '' does not exist.` An empty `last_checkpoint`, or one naming a file that is
   gone (a moved work dir), now resumes from the newest `epoch_N.pth`/`iter_N.pth` in the work dir.
"""
import logging
import os
import os.path as osp
import re
from typing import Optional

import mmengine.runner
import mmengine.runner._flexible_runner
import mmengine.runner.runner
from mmengine.fileio.backends import LocalBackend
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.runner.checkpoint import find_latest_checkpoint as _mmengine_find_latest_checkpoint

from .utils.checkpoint_io import load_checkpoint_file

_applied = False


def load_from_local_safely(filename: str, map_location=None):
    """mmengine's local-path checkpoint loader, with torch's safe unpickling and our allow-list."""
    return load_checkpoint_file(filename, map_location=map_location)


def atomic_put(self, obj: bytes, filepath) -> None:
    """LocalBackend.put that leaves the previous file (or none) if it is interrupted, never a truncated one."""
    filepath = str(filepath)
    os.makedirs(osp.dirname(osp.abspath(filepath)), exist_ok=True)
    tmp = f'{filepath}.tmp-{os.getpid()}'  # a name _TEMP_FILE matches
    try:
        with open(tmp, 'wb') as f:
            f.write(obj)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


# CheckpointHook's default file names (filename_tmpl 'epoch_{}.pth' / 'iter_{}.pth'), and atomic_put's temporary files.
_CHECKPOINT_NAME = re.compile(r'(?:epoch|iter)_(\d+)\.pth')
_TEMP_FILE = re.compile(r'.+\.tmp-\d+')


def newest_checkpoint(work_dir: str) -> Optional[str]:
    """The `epoch_N.pth`/`iter_N.pth` in `work_dir` with the largest N (None if there is none)."""
    numbered = [(int(m.group(1)), name) for name in os.listdir(work_dir)
                if (m := _CHECKPOINT_NAME.fullmatch(name)) and osp.isfile(osp.join(work_dir, name))]
    return osp.join(work_dir, max(numbered)[1]) if numbered else None


def warn_of_unfinished_saves(work_dir: str) -> None:
    """Name the temporary files of `atomic_put` in `work_dir`: a run killed while saving (SIGKILL, power loss)
    leaves its whole-checkpoint-sized temporary file behind; the user may delete it."""
    left = sorted(name for name in os.listdir(work_dir) if _TEMP_FILE.fullmatch(name))
    if left:
        size = sum(osp.getsize(osp.join(work_dir, name)) for name in left) / 2**30
        print_log(f'{work_dir} holds {len(left)} unfinished checkpoint save(s) of a run that was stopped while '
                  f'saving: {", ".join(left)} ({size:.2f} GiB); the checkpoints are whole without them, they can be '
                  'deleted.', logger='current', level=logging.WARNING)


def find_latest_checkpoint(path: str) -> Optional[str]:
    """mmengine's (the file `last_checkpoint` names), falling back to `newest_checkpoint` when that file is empty
    or names a local file that does not exist. Checkpoints themselves are written atomically (`atomic_put`), so
    every `epoch_N.pth`/`iter_N.pth` in the folder is complete; leftovers of unfinished saves are named."""
    if osp.isdir(path):
        warn_of_unfinished_saves(path)
    named = _mmengine_find_latest_checkpoint(path)
    if named is None or '://' in named or osp.exists(named):
        return named
    newest = newest_checkpoint(path) if osp.isdir(path) else None
    problem = 'is empty' if not named else f'names {named!r}, which does not exist'
    action = f'resuming from {newest}' if newest else 'no checkpoint is in the work dir, so training starts anew'
    print_log(f'{osp.join(path, "last_checkpoint")} {problem} (a run stopped while writing it, or the work dir was '
              f'moved): {action}.', logger='current', level=logging.WARNING)
    return newest


def apply():
    global _applied
    if _applied:
        return
    # prefixes='' is mmengine's scheme for local paths; force replaces its `load_from_local`.
    CheckpointLoader.register_scheme(prefixes='', force=True)(load_from_local_safely)
    LocalBackend.put = atomic_put
    # Runner and FlexibleRunner call the name they imported; the strategies import it from mmengine.runner.
    for module in (mmengine.runner, mmengine.runner.runner, mmengine.runner._flexible_runner):
        module.find_latest_checkpoint = find_latest_checkpoint
    _applied = True
