"""Triton kernels of the fused Conv2Former block (importable without a GPU; `HAS_TRITON` says if triton is there)."""
from .launch import HAS_TRITON

__all__ = ['HAS_TRITON']
