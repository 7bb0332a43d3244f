from .checkpoint_io import CorruptCheckpointError, UntrustedCheckpointError, load_checkpoint_file
from .tensors import memory_format_of

__all__ = ['CorruptCheckpointError', 'UntrustedCheckpointError', 'load_checkpoint_file', 'memory_format_of']
