"""Runtime fixes that make the OpenMMLab stack work on today's torch; `import mmconv2former` applies them.

1. torch >= 2.6 `weights_only` loading. Without this, `--resume`, `load_from`, `init_cfg=Pretrained` on a local
   file and mmdet's `init_detector` fail with
   `_pickle.UnpicklingError: Weights only load failed ...
   Unsupported global: GLOBAL mmengine.logging.history_buffer.HistoryBuffer`
   and the released Conv2Former files with `... Unsupported global: GLOBAL argparse.Namespace`.
   We register, for local paths, a loader that allow-lists exactly what those files contain
   (`mmconv2former.utils.checkpoint_io`), instead of a blanket `weights_only=False`.
"""
from mmengine.runner.checkpoint import CheckpointLoader

from .utils.checkpoint_io import load_checkpoint_file

_applied = False


def load_from_local_safely(filename: str, map_location=None):
    """mmengine's local-path checkpoint loader, with torch's safe unpickling and our allow-list."""
    return load_checkpoint_file(filename, map_location=map_location)


def apply():
    global _applied
    if _applied:
        return
    # prefixes='' is mmengine's scheme for local paths; force replaces its `load_from_local`.
    CheckpointLoader.register_scheme(prefixes='', force=True)(load_from_local_safely)
    _applied = True
