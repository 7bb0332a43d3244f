"""Reading checkpoint files without running code from them.

torch >= 2.6 loads with `weights_only=True`, which refuses every pickled global outside an allow-list. mmengine
0.10.7 calls `torch.load` without the argument, so Runner checkpoints (`HistoryBuffer`, numpy arrays in the message
hub) and the released Conv2Former files (`argparse.Namespace` under `args`) fail to load. We allow-list exactly what
those files contain, nothing more; a file that needs anything else is refused unless the user trusts it explicitly.
"""
import argparse
import os
import os.path as osp
import pickle
import zipfile
from typing import Iterable, List

import numpy as np
import torch

TRUST_ENV = 'MMCONV2FORMER_TRUSTED_CHECKPOINTS'


def _numpy_globals() -> List:
    """numpy's array/scalar reconstruction, under both the numpy<2 (`numpy.core`) and numpy>=2 names."""
    multiarray = np.core.multiarray if hasattr(np, 'core') and not hasattr(np, '_core') else np._core.multiarray
    found = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    found += [type(np.dtype(t)) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                           np.uint32, np.uint64, np.float16, np.float32, np.float64)]
    aliases = []
    for obj in (multiarray._reconstruct, multiarray.scalar):
        for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            aliases.append((obj, f'{module}.{obj.__name__}'))
    return found + aliases


def _history_buffer_method(owner, name: str):
    """The one `getattr` a Runner checkpoint needs: HistoryBuffer pickles its registered statistics methods as
    `getattr(HistoryBuffer, 'min')`. Anything else (other objects, private names) is refused."""
    from mmengine.logging.history_buffer import HistoryBuffer
    # `_statistics_methods` is filled lazily (min/max/current/mean on the first HistoryBuffer()), so also accept
    # any public method defined on the class itself.
    public_method = not name.startswith('_') and callable(HistoryBuffer.__dict__.get(name))
    if owner is not HistoryBuffer or not (public_method or name in HistoryBuffer._statistics_methods):
        raise pickle.UnpicklingError(f'Unsupported global: GLOBAL builtins.getattr on {owner!r}.{name} '
                                     '(only HistoryBuffer statistics methods are allowed)')
    return getattr(owner, name)


def safe_globals() -> List:
    """The allow-list: what Runner checkpoints and the released Conv2Former files pickle besides tensors."""
    from mmengine.logging.history_buffer import HistoryBuffer
    getattrs = [(_history_buffer_method, f'{module}.getattr') for module in ('builtins', '__builtin__')]
    return [argparse.Namespace, HistoryBuffer] + getattrs + _numpy_globals()


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs to unpickle an object that is not on the allow-list."""


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is truncated or otherwise unreadable."""


def _trusted(filename: str, trusted: Iterable[str]) -> bool:
    real = osp.realpath(filename)
    return any(t == '*' or osp.realpath(t) == real for t in trusted)


def trusted_checkpoints() -> List[str]:
    """Files the user trusts to unpickle arbitrary objects: paths in $MMCONV2FORMER_TRUSTED_CHECKPOINTS."""
    return [p for p in os.environ.get(TRUST_ENV, '').split(os.pathsep) if p]


def load_checkpoint_file(filename: str, map_location='cpu'):
    """torch.load with the allow-list; a trusted file (see `trusted_checkpoints`) loads with full unpickling."""
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename!r} does not exist.')
    if _trusted(filename, trusted_checkpoints()):
        return torch.load(filename, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if 'Weights only load failed' not in str(error) and 'Unsupported global' not in str(error):
            raise CorruptCheckpointError(f'checkpoint {filename!r} is corrupted: {error}') from error
        culprit = next((ln.strip() for ln in str(error).splitlines() if 'GLOBAL' in ln), str(error)[:200])
        raise UntrustedCheckpointError(
            f'Refusing to load {filename!r}: it contains pickled objects outside the allow-list of tensors, numpy '
            'arrays, argparse.Namespace and mmengine HistoryBuffer, and unpickling them could run code '
            f'({culprit}). If you trust this file, allow it with `export {TRUST_ENV}={osp.abspath(filename)}` '
            f"(several paths joined by '{os.pathsep}').") from error
    except (RuntimeError, EOFError, zipfile.BadZipFile) as error:
        raise CorruptCheckpointError(
            f'checkpoint {filename!r} is truncated or corrupted ({type(error).__name__}: {error}). If it was being '
            'written when a run stopped, use the previous checkpoint in the same work dir.') from error
