from .checkpoint_io import CorruptCheckpointError, UntrustedCheckpointError, load_checkpoint_file

__all__ = ['CorruptCheckpointError', 'UntrustedCheckpointError', 'load_checkpoint_file']
