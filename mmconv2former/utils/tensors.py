import torch


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """torch.channels_last for an NCHW tensor stored as NHWC, else torch.contiguous_format."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
