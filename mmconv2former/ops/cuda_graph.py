"""Inference replayed from CUDA graphs, one graph per input shape (`Conv2Former(cuda_graph=True)`).

An eager Conv2Former-T forward issues several hundred kernel launches; on the GPU machines we measured, their host
time, not the GPU, sets the speed of small-batch inference (docs/performance.md: 10.8 ms eager vs 4.2 ms replayed for
one 800x1344 image). A graph replays all of them with one launch. It pays off when shapes repeat: sliding-window
segmentation, fixed-size test pipelines, benchmarks, serving. Each captured shape keeps its activations in its own
memory pool, so at most `max_graphs` are kept, and when shapes keep changing (mmdet's keep-ratio resizing) the cache
turns itself off with a warning instead of capturing forever.

Graphs read the parameters where they are: in-place updates (`load_state_dict`, EMA swaps) are seen by the next
replay; a parameter or buffer that moved to new memory (`.to()`, reassignment) makes a new capture.
"""
import collections
import warnings
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor


def _autocast_state() -> Tuple[bool, Optional[torch.dtype]]:
    """(enabled, dtype): the dtype only when enabled (a disabled autocast context still sets one)."""
    try:
        enabled, dtype = torch.is_autocast_enabled('cuda'), torch.get_autocast_dtype('cuda')
    except TypeError:  # pragma: no cover - torch < 2.4
        enabled, dtype = torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
    return enabled, (dtype if enabled else None)


class GraphedInference:
    """`run(fn, x, tensors)`: `fn(x)` (a tuple of tensors) replayed from the CUDA graph captured for x's shape,
    dtype, device and autocast state and the memory of `tensors` (the module's parameters and buffers); the outputs
    are fresh tensors (copies of the graph's static outputs, which the next replay overwrites)."""

    def __init__(self, max_graphs: int = 4, owner: str = 'cuda_graph'):
        self.max_graphs = max_graphs
        self.owner = owner
        self.graphs = collections.OrderedDict()
        self.captures = self.replays = 0
        self.enabled = True

    def __deepcopy__(self, memo):  # a copied module (EMA, deepcopy) starts with no graphs of its own
        return GraphedInference(self.max_graphs, self.owner)

    def __getstate__(self):  # nor does an unpickled one
        return dict(max_graphs=self.max_graphs, owner=self.owner)

    def __setstate__(self, state):
        self.__init__(**state)

    def run(self, fn: Callable[[Tensor], Tuple[Tensor, ...]], x: Tensor, tensors) -> Tuple[Tensor, ...]:
        if not self.enabled:
            return fn(x)
        key = (tuple(x.shape), x.dtype, x.device, _autocast_state(), torch.is_inference_mode_enabled(),
               tuple(t.data_ptr() for t in tensors))
        entry = self.graphs.get(key)
        if entry is None:
            if self.captures >= 4 * self.max_graphs and self.replays < self.captures:
                self.enabled = False
                self.graphs.clear()
                warnings.warn(f'{self.owner}: the input shapes keep changing ({self.captures} graphs captured, '
                              f'{self.replays} replays); running eagerly from now on. CUDA graphs help when shapes '
                              'repeat (fixed-size or sliding-window inference).', stacklevel=3)
                return fn(x)
            entry = self.graphs[key] = self._capture(fn, x)
            self.captures += 1
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        else:
            self.graphs.move_to_end(key)
            self.replays += 1
        graph, static_x, static_out = entry
        static_x.copy_(x)
        graph.replay()
        return tuple(o.clone() for o in static_out)

    @staticmethod
    def _capture(fn, x: Tensor):
        enabled, dtype = _autocast_state()
        # autocast's cache of cast weights must stay off while capturing: cached casts would live in the graph's
        # memory pool and be overwritten by later replays
        with torch.autocast('cuda', dtype=dtype, enabled=enabled, cache_enabled=False):
            static_x = x.clone()
            side = torch.cuda.Stream(x.device)
            side.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(side):  # warm-up off the capture: kernels compiled, cuBLAS workspaces made
                for _ in range(2):
                    fn(static_x)
            torch.cuda.current_stream(x.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = fn(static_x)
        return graph, static_x, static_out
