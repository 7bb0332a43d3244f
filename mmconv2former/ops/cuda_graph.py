"""A module's forward (and, with autograd on, its backward) replayed from CUDA graphs, one per input shape
(`Conv2Former(cuda_graph=True)`).

An eager Conv2Former-T step issues several hundred kernel launches and GEMMs; on the GPU machines we measured, their
host time, not the GPU, sets the speed (docs/performance.md: COCO-size training 57 ms eager vs 30 ms replayed). A
graph replays all of them with one launch. It pays off when shapes repeat: fixed-size training crops (mmseg's
512x512, LSJ-style detection), sliding-window segmentation, fixed-size test pipelines, benchmarks, serving. Each
captured shape keeps its activations in its own memory pool, so at most `max_graphs` are kept, and when shapes keep
changing (mmdet's keep-ratio resizing) the cache turns itself off with a warning instead of capturing forever.

Training (autograd on): the forward and the backward are two graphs sharing one pool, wrapped in an autograd
Function whose inputs are the input and the trainable parameters, so gradients reach `.grad` through the autograd
engine like any op's (DDP's and hooks' gradient hooks fire) as fresh tensors (views of one copy of the graph's packed
gradients). Capturing runs the step twice for real first (kernels compiled, workspaces made); the module's buffers
(BatchNorm statistics) and the CUDA RNG state are put back afterwards, so a capture leaves no trace. The backward of a
replay must run before the next forward replay of the same shape (the usual forward/backward/step loop): the graph's
activations are shared, and a late backward raises instead of returning wrong gradients.

Graphs read the parameters where they are: in-place updates (the optimizer, `load_state_dict`, EMA swaps) are seen by
the next replay; a parameter or buffer that moved to new memory (`.to()`, reassignment) or changed `requires_grad`
makes a new capture.
"""
import collections
import contextlib
import warnings
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor


def _autocast_state() -> Tuple[bool, Optional[torch.dtype]]:
    """(enabled, dtype): the dtype only when enabled (a disabled autocast context still sets one)."""
    try:
        enabled, dtype = torch.is_autocast_enabled('cuda'), torch.get_autocast_dtype('cuda')
    except TypeError:  # pragma: no cover - torch < 2.4
        enabled, dtype = torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
    return enabled, (dtype if enabled else None)


class ShapeGraphs:
    """`run(fn, x, modules, mode)`: `fn(x)` (a tuple of tensors) replayed from the CUDA graph(s) captured for x's
    shape, dtype and device, the autocast and grad state, `mode` (e.g. the module's training flag) and the memory and
    `requires_grad` of the parameters and buffers of `modules` (those `fn` uses). The outputs are fresh tensors
    (copies of the graph's static outputs, which the next replay overwrites)."""

    def __init__(self, max_graphs: int = 4, owner: str = 'cuda_graph'):
        self.max_graphs = max_graphs
        self.owner = owner
        self.graphs = collections.OrderedDict()
        self.captures = self.replays = 0
        self.enabled = True

    def __deepcopy__(self, memo):  # a copied module (EMA, deepcopy) starts with no graphs of its own
        return ShapeGraphs(self.max_graphs, self.owner)

    def __getstate__(self):  # nor does an unpickled one
        return dict(max_graphs=self.max_graphs, owner=self.owner)

    def __setstate__(self, state):
        self.__init__(**state)

    def run(self, fn: Callable[[Tensor], Tuple[Tensor, ...]], x: Tensor, modules: Sequence[nn.Module],
            mode=None) -> Tuple[Tensor, ...]:
        if not self.enabled:
            return fn(x)
        slots, buffers = _parameter_slots(modules)
        grad = torch.is_grad_enabled()
        key = (tuple(x.shape), x.dtype, x.device, _autocast_state(), torch.is_inference_mode_enabled(), grad,
               grad and x.requires_grad, mode, tuple((p.data_ptr(), p.requires_grad) for _, _, p in slots),
               tuple(b.data_ptr() for b in buffers))
        entry = self.graphs.get(key)
        if entry is None:
            if self.captures >= 4 * self.max_graphs and self.replays < self.captures:
                self.enabled = False
                self.graphs.clear()
                warnings.warn(f'{self.owner}: the input shapes keep changing ({self.captures} graphs captured, '
                              f'{self.replays} replays); running eagerly from now on. CUDA graphs help when shapes '
                              'repeat (fixed-size training crops, fixed-size or sliding-window inference).',
                              stacklevel=3)
                return fn(x)
            trainable = [slot for slot in slots if slot[2].requires_grad] if grad else []
            try:
                if trainable or (grad and x.requires_grad):
                    entry = _TrainingGraph(fn, x, trainable, buffers)
                else:
                    entry = _InferenceGraph(fn, x, buffers)
            except Exception as exc:  # something in fn cannot be captured: keep the run going, eagerly
                self.enabled = False
                self.graphs.clear()
                warnings.warn(f'{self.owner}: capturing a CUDA graph failed ({type(exc).__name__}: '
                              f'{str(exc).splitlines()[0][:200]}); running eagerly from now on.', stacklevel=3)
                return fn(x)
            self.graphs[key] = entry
            self.captures += 1
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        else:
            self.graphs.move_to_end(key)
            self.replays += 1
        return entry(x)


# Only the capturing thread's CUDA calls are checked while capturing: other threads of the process (NCCL's watchdog
# under DDP, data loading) may use CUDA meanwhile.
_CAPTURE_MODE = 'thread_local'


def _parameter_slots(modules):
    """[(owner module, name, parameter)] and [buffer] of `modules` and their submodules."""
    slots, buffers = [], []
    for module in modules:
        for m in module.modules():
            slots.extend((m, name, p) for name, p in m._parameters.items() if p is not None)
            buffers.extend(b for b in m._buffers.values() if b is not None)
    return slots, buffers


@contextlib.contextmanager
def _parameter_aliases(slots):
    """Swaps each parameter for an alias (same memory, a graph leaf of its own) while capturing, and yields them.

    Autograd must not touch the real parameters' gradient accumulators there: DDP keeps them alive from its
    construction on the default stream, and a backward that reaches them from the capture stream syncs with the
    default stream, which invalidates the capture. The graphs read the same memory, so replays use the real weights.
    """
    aliases = [nn.Parameter(p.detach(), requires_grad=True) for _, _, p in slots]
    for (owner, name, _), alias in zip(slots, aliases):
        owner._parameters[name] = alias
    try:
        yield aliases
    finally:
        for owner, name, p in slots:
            owner._parameters[name] = p


def _warm_up(step: Callable[[], None], device: torch.device, buffers: Sequence[Tensor]):
    """Runs `step` twice on a side stream (kernels compiled, cuBLAS workspaces made before capturing), then puts the
    buffers (BatchNorm statistics) and the CUDA RNG state back as they were."""
    saved = [b.clone() for b in buffers]
    rng = torch.cuda.get_rng_state(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    with torch.no_grad():
        for b, s in zip(buffers, saved):
            b.copy_(s)
    torch.cuda.set_rng_state(rng, device)


def _no_weight_cache():
    """The current autocast state with its cache of cast weights off: cached casts made while capturing would live in
    the graph's memory pool and be overwritten by later replays."""
    enabled, dtype = _autocast_state()
    return torch.autocast('cuda', dtype=dtype, enabled=enabled, cache_enabled=False)


class _InferenceGraph:
    """Forward only (no autograd)."""

    def __init__(self, fn, x: Tensor, buffers):
        with _no_weight_cache():
            self.static_x = x.detach().clone()
            _warm_up(lambda: fn(self.static_x), x.device, buffers)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, capture_error_mode=_CAPTURE_MODE):
                self.static_out = fn(self.static_x)

    def __call__(self, x: Tensor) -> Tuple[Tensor, ...]:
        self.static_x.copy_(x)
        self.graph.replay()
        return tuple(o.clone() for o in self.static_out)


class _TrainingGraph:
    """Forward and backward graphs; gradients of the input (if it requires grad) and of `params`."""

    def __init__(self, fn, x: Tensor, slots, buffers):
        self.params = [p for _, _, p in slots]
        self.x_grad = x.requires_grad
        with _no_weight_cache():
            self.static_x = x.detach().clone().requires_grad_(self.x_grad)
            leading = [self.static_x] if self.x_grad else []  # the inputs differentiated, before the parameters
            with _parameter_aliases(slots) as aliases:
                inputs = leading + aliases

                def step():
                    outs = [o for o in fn(self.static_x) if o.requires_grad]
                    torch.autograd.grad(outs, inputs, [torch.ones_like(o) for o in outs], allow_unused=True)

                _warm_up(step, x.device, buffers)
            # fresh aliases for the capture: the warm-up's leaves recorded the side stream
            with _parameter_aliases(slots) as aliases:
                self._capture(fn, leading + aliases)
        self.generation = 0

    def _capture(self, fn, inputs: List[Tensor]):
        """The forward graph, then the backward graph in the same pool: gradients of `inputs` packed per dtype."""
        self.fwd = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.fwd, capture_error_mode=_CAPTURE_MODE):
            outs = fn(self.static_x)
        self.static_out = tuple(o.detach() for o in outs)
        self.differentiable = [i for i, o in enumerate(outs) if o.requires_grad]
        self.static_gout = [torch.empty_like(outs[i]) for i in self.differentiable]
        self.bwd = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.bwd, pool=self.fwd.pool(), capture_error_mode=_CAPTURE_MODE):
            grads = torch.autograd.grad([outs[i] for i in self.differentiable], inputs, self.static_gout,
                                        allow_unused=True)
            # one packed buffer per dtype, so a replay hands out its gradients with one copy per dtype
            self.layout = []  # per input: None (no gradient) or (dtype, offset, shape)
            groups = collections.defaultdict(list)
            for g in grads:
                if g is None:
                    self.layout.append(None)
                    continue
                parts = groups[g.dtype]
                self.layout.append((g.dtype, sum(p.numel() for p in parts), g.shape))
                parts.append(g.reshape(-1))
            self.packed = {dtype: torch.cat(parts) for dtype, parts in groups.items()}
        del outs, grads, groups

    def __call__(self, x: Tensor) -> Tuple[Tensor, ...]:
        return _ReplayFunction.apply(self, x, *self.params)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        self.static_x.detach().copy_(x)
        self.fwd.replay()
        self.generation += 1
        return tuple(o.clone() for o in self.static_out)

    def backward(self, generation: int, gouts) -> List[Optional[Tensor]]:
        if generation != self.generation:
            raise RuntimeError('Conv2Former(cuda_graph=True): backward of a forward that a later forward of the same '
                               'input shape has replaced (the graph keeps one set of activations per shape). Run '
                               'backward before the next forward, or set cuda_graph=False.')
        for i, static in zip(self.differentiable, self.static_gout):
            if gouts[i] is None:
                static.zero_()
            else:
                static.copy_(gouts[i])
        self.bwd.replay()
        copies = {dtype: buf.clone() for dtype, buf in self.packed.items()}
        return [None if entry is None else copies[entry[0]][entry[1]:entry[1] + entry[2].numel()].view(entry[2])
                for entry in self.layout]


class _ReplayFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, graph: _TrainingGraph, x: Tensor, *params: Tensor):
        ctx.graph, ctx.generation = graph, graph.generation + 1
        return graph.forward(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *gouts):
        graph = ctx.graph
        grads = graph.backward(ctx.generation, gouts)
        dx = grads.pop(0) if graph.x_grad else None
        return (None, dx, *grads)
