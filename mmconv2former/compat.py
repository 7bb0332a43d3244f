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
   We write to a temporary file in the same folder and rename it over the target (atomic on POSIX).
"""
import os
import os.path as osp

from mmengine.fileio.backends import LocalBackend
from mmengine.runner.checkpoint import CheckpointLoader

from .utils.checkpoint_io import load_checkpoint_file

_applied = False


def load_from_local_safely(filename: str, map_location=None):
    """mmengine's local-path checkpoint loader, with torch's safe unpickling and our allow-list."""
    return load_checkpoint_file(filename, map_location=map_location)


def atomic_put(self, obj: bytes, filepath) -> None:
    """LocalBackend.put that leaves the previous file (or none) if it is interrupted, never a truncated one."""
    filepath = str(filepath)
    os.makedirs(osp.dirname(osp.abspath(filepath)), exist_ok=True)
    tmp = f'{filepath}.tmp-{os.getpid()}'
    try:
        with open(tmp, 'wb') as f:
            f.write(obj)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def apply():
    global _applied
    if _applied:
        return
    # prefixes='' is mmengine's scheme for local paths; force replaces its `load_from_local`.
    CheckpointLoader.register_scheme(prefixes='', force=True)(load_from_local_safely)
    LocalBackend.put = atomic_put
    _applied = True
