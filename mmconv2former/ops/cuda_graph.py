"""A module's forward (and, with autograd on, its backward) replayed from CUDA graphs, one per input shape
(`Conv2Former(cuda_graph=True)`).

An eager Conv2Former-T step issues several hundred kernel launches and GEMMs; on the GPU machines we measured, their
host time, not the GPU, sets the speed (docs/performance.md: COCO-size training 57 ms eager vs 30 ms replayed). A
graph replays all of them with one launch. It pays off when shapes repeat: fixed-size training crops, sliding-window
segmentation, fixed-size test pipelines, serving, and also mmdet's keep-ratio batches, whose padded shapes come from
a limited set.

Memory: all graphs of a module share one memory pool and one set of static buffers (input, outputs, output
gradients, packed parameter gradients), so the activations of the shapes do not add up (with a pool per shape they
did). The pool is one segment, sized for the largest shape seen: each capture carves its memory out of it and what it
frees merges back, so captures of other sizes fit again (a pool of many segments, each sized for the shape that made
it, fragmented as new sizes came: Conv2Former-T on keep-ratio COCO shapes grew to 9.4 GiB reserved after 111 shapes;
docs/performance.md). A capture that outgrows the segment makes the next new shape start a new pool, `headroom` times
that size, whose shapes are recaptured as they come again. Sharing is safe because only one graph's activations are
ever in use: while a replayed training forward waits for its backward, further calls of the module run eagerly (e.g.
a second forward before the backward), and a backward whose activations a later replay has overwritten (possible only
with `retain_graph=True`) raises instead of returning wrong gradients. The least recently used graphs beyond
`max_graphs` are dropped; when shapes keep changing without repeats the cache turns itself off with a warning instead
of capturing forever.

Training (autograd on): the forward and the backward are two graphs, wrapped in an autograd Function whose inputs are
the input and the trainable parameters, so gradients reach `.grad` through the autograd engine like any op's (DDP's
and hooks' gradient hooks fire) as fresh tensors (views of one copy of the graph's packed gradients). Capturing runs
the step twice for real first (kernels compiled, workspaces made); the module's buffers (BatchNorm statistics) and the
CUDA RNG state are put back afterwards, so a capture leaves no trace.

Graphs read the parameters where they are: in-place updates (the optimizer, `load_state_dict`, EMA swaps) are seen by
the next replay; a parameter or buffer that moved to new memory (`.to()`, reassignment) or changed `requires_grad`
makes a new capture.
"""
import collections
import contextlib
import math
import warnings
import weakref
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ..utils import memory_format_of


def _autocast_state() -> Tuple[bool, Optional[torch.dtype]]:
    """(enabled, dtype): the dtype only when enabled (a disabled autocast context still sets one)."""
    try:
        enabled, dtype = torch.is_autocast_enabled('cuda'), torch.get_autocast_dtype('cuda')
    except TypeError:  # pragma: no cover - torch < 2.4
        enabled, dtype = torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
    return enabled, (dtype if enabled else None)


class _Pending:
    """Held by the autograd graph of a replayed training forward until its backward has run: while it lives, the
    graphs' shared activations are in use."""


def _spec(t: Tensor):
    """(shape, strides, dtype) of a tensor's copy: channels-last stays channels-last, anything else is contiguous."""
    return tuple(t.shape), (t.stride() if memory_format_of(t) is torch.channels_last else None), t.dtype


class ShapeGraphs:
    """`run(fn, x, modules, mode)`: `fn(x)` (a tuple of tensors) replayed from the CUDA graph(s) captured for x's
    shape, dtype and device, the autocast and grad state, `mode` (e.g. the module's training flag) and the memory and
    `requires_grad` of the parameters and buffers of `modules` (those `fn` uses). The outputs are fresh tensors.
    See the module docstring for the memory the graphs share and the rules that follow."""

    def __init__(self, max_graphs: int = 256, owner: str = 'cuda_graph', headroom: float = 1.25):
        if headroom < 1:
            raise ValueError(f'ShapeGraphs: headroom must be >= 1 (a pool holds headroom times the estimated need of '
                             f'the largest shape), got {headroom}')
        self.max_graphs = max_graphs
        self.owner = owner
        self.headroom = headroom  # a pool's size, relative to the estimated need of the largest shape so far
        self.graphs = collections.OrderedDict()
        self.captures = self.replays = 0
        self.enabled = True
        self.pool = None  # the memory pool of all the graphs, made at the first capture
        self.seed = None  # the graph that made the pool's segment, which holds the pool (unused otherwise)
        self.pool_size = 0  # bytes of the pool's segments for large allocations (> 1 MiB) now
        self.bytes_per_numel = None  # a shape's estimated need: pool bytes per input element
        self.max_numel = 0  # the largest input captured so far
        self.seeded_numel = 0  # the largest input the pool was sized for
        self.outgrown = False  # the last capture needed more than the pool had: the next new shape starts a new one
        self.misses = 0  # pools outgrown by a shape they were sized for: after three, no new pools (`_captured`)
        self.pools = 0  # pools made so far
        self.side_stream = None  # the warm-ups' stream: one for all captures (cuBLAS keeps a workspace per stream)
        self.arenas: Dict[str, Tensor] = {}  # the static buffers the graphs share (`static`)
        self.generation = 0  # replays so far: a backward needs its forward's activations untouched since
        self.pending = None  # weak reference to the `_Pending` of the replayed forward waiting for its backward

    def __deepcopy__(self, memo):  # a copied module (EMA, deepcopy) starts with no graphs of its own
        return ShapeGraphs(self.max_graphs, self.owner, self.headroom)

    def __getstate__(self):  # nor does an unpickled one
        return dict(max_graphs=self.max_graphs, owner=self.owner, headroom=self.headroom)

    def __setstate__(self, state):
        self.__init__(**state)

    def busy(self) -> bool:
        """True while the activations of a replayed training forward wait for its backward."""
        return self.pending is not None and self.pending() is not None

    def static(self, name: str, specs, device: torch.device) -> List[Tensor]:
        """Tensors of the given `_spec`s in the shared static buffer `name`, made or grown outside the graphs' pool
        (call it before capturing). Graphs captured earlier keep the buffer they were captured with."""
        offsets, nbytes = [], 0
        for shape, _, dtype in specs:
            offsets.append(nbytes)
            nbytes += -(-math.prod(shape) * dtype.itemsize // 256) * 256
        buf = self.arenas.get(name)
        if buf is None or buf.numel() < nbytes or buf.device != device:
            size = nbytes if buf is None else max(nbytes, buf.numel() * 5 // 4)
            with torch.inference_mode(False):  # a normal tensor: graphs captured outside inference mode use it too
                buf = self.arenas[name] = torch.empty(size, dtype=torch.uint8, device=device)
        out = []
        for offset, (shape, strides, dtype) in zip(offsets, specs):
            flat = buf[offset:offset + math.prod(shape) * dtype.itemsize].view(dtype)
            out.append(flat.view(shape) if strides is None else flat.as_strided(shape, strides))
        return out

    def replay(self, graph: torch.cuda.CUDAGraph, static_x: Tensor, x: Tensor, static_out) -> Tuple[Tensor, ...]:
        """Copy x in, replay, copy the outputs out (the next replay of any graph overwrites them)."""
        with torch.no_grad():
            static_x.copy_(x)
        graph.replay()
        self.generation += 1
        return tuple(o.clone() for o in static_out)

    def run(self, fn: Callable[[Tensor], Tuple[Tensor, ...]], x: Tensor, modules: Sequence[nn.Module],
            mode=None) -> Tuple[Tensor, ...]:
        if not self.enabled or self.busy():
            return fn(x)
        slots, buffers = _parameter_slots(modules)
        grad = torch.is_grad_enabled()
        key = (tuple(x.shape), x.stride(), x.dtype, x.device, _autocast_state(), torch.is_inference_mode_enabled(),
               grad, grad and x.requires_grad, mode, tuple((p.data_ptr(), p.requires_grad) for _, _, p in slots),
               tuple(b.data_ptr() for b in buffers))
        entry = self.graphs.get(key)
        if entry is None:
            if self.captures >= 4 * self.max_graphs and self.replays < self.captures:
                self._disable(f'the input shapes keep changing ({self.captures} graphs captured, {self.replays} '
                              'replays); running eagerly from now on. CUDA graphs help when shapes repeat '
                              '(fixed-size training crops, fixed-size or sliding-window inference).')
                return fn(x)
            trainable = [slot for slot in slots if slot[2].requires_grad] if grad else []
            try:
                if self.pool is None or self.outgrown or self.side_stream.device != x.device:  # (moved to another GPU)
                    self._new_pool(x)
                if trainable or (grad and x.requires_grad):
                    entry = _TrainingGraph(self, fn, x, trainable, buffers)
                else:
                    entry = _InferenceGraph(self, fn, x, buffers)
            except Exception as exc:  # something in fn cannot be captured: keep the run going, eagerly
                self._disable(f'capturing a CUDA graph failed ({type(exc).__name__}: '
                              f'{str(exc).splitlines()[0][:200]}); running eagerly from now on.')
                return fn(x)
            self.graphs[key] = entry
            self.captures += 1
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
            self._captured(x)
        else:
            self.graphs.move_to_end(key)
            self.replays += 1
        return entry(self, x)

    def _new_pool(self, x: Tensor):
        """Drops the graphs (and with them the old pool's memory) and makes a pool of one segment of `headroom` times
        the estimated need of the largest shape so far, x's included; the first pool starts empty, and its first
        capture measures what a shape needs."""
        self.graphs.clear()
        self.seed = None
        self.pool = torch.cuda.graph_pool_handle()
        if self.side_stream is None or self.side_stream.device != x.device:
            self.side_stream = torch.cuda.Stream(x.device)
        self.pool_size = 0
        if self.bytes_per_numel is not None:
            self.seeded_numel = max(self.max_numel, x.numel())
            nbytes = -(-int(self.headroom * self.bytes_per_numel * self.seeded_numel) // 2 ** 21) * 2 ** 21
            self.seed = torch.cuda.CUDAGraph()
            # one allocation, freed again at once, leaves the segment in the pool; the kernel keeps the graph non-empty
            with torch.cuda.graph(self.seed, pool=self.pool, capture_error_mode=_CAPTURE_MODE):
                torch.empty(nbytes, dtype=torch.uint8, device=x.device)[:1].zero_()
            self.pool_size = _pool_size(self.pool)
        self.outgrown = False
        self.pools += 1

    def _captured(self, x: Tensor):
        """After a capture that needed new segments: the first capture sets the estimate of a shape's need, a shape
        the pool was sized for raises it by `headroom` (a larger shape only scales it), and the next new shape
        starts a new pool. Should pools keep being outgrown by shapes they were sized for (an allocator that does not
        split the segment, e.g. with `max_split_size_mb` set), the pool is kept and grows by segments instead."""
        size, numel = _pool_size(self.pool), x.numel()
        if size > self.pool_size:
            if self.seed is None:
                self.bytes_per_numel = max(self.bytes_per_numel or 0.0, size / numel)
            elif numel <= self.seeded_numel:  # (a larger shape only needs the estimate scaled to its size)
                self.bytes_per_numel *= self.headroom
                self.misses += 1
            self.outgrown = self.misses < 3
        self.pool_size = size
        self.max_numel = max(self.max_numel, numel)

    def _disable(self, why: str):
        self.enabled = False
        self.graphs.clear()
        self.arenas.clear()
        warnings.warn(f'{self.owner}: {why}', stacklevel=4)


# Only the capturing thread's CUDA calls are checked while capturing: other threads of the process (NCCL's watchdog
# under DDP, data loading) may use CUDA meanwhile.
_CAPTURE_MODE = 'thread_local'


def _pool_size(pool) -> int:
    """Bytes of a graph memory pool's segments for large allocations (small ones, up to 1 MiB, share 2 MiB segments
    of their own)."""
    return sum(seg['total_size'] for seg in torch.cuda.memory_snapshot()
               if tuple(seg.get('segment_pool_id', ())) == tuple(pool) and seg.get('segment_type') != 'small')


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


def _warm_up(step: Callable[[], List[Tensor]], cache: ShapeGraphs, device: torch.device,
             buffers: Sequence[Tensor]) -> List[Tensor]:
    """Runs `step` twice on the cache's side stream (kernels compiled, cuBLAS workspaces made before capturing),
    then puts the buffers (BatchNorm statistics) and the CUDA RNG state back as they were. Returns the last step's
    outputs."""
    saved = [b.clone() for b in buffers]
    rng = torch.cuda.get_rng_state(device)
    side = cache.side_stream
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            outs = step()
    torch.cuda.current_stream(device).wait_stream(side)
    with torch.no_grad():
        for b, s in zip(buffers, saved):
            b.copy_(s)
    torch.cuda.set_rng_state(rng, device)
    return outs


def _no_weight_cache():
    """The current autocast state with its cache of cast weights off: cached casts made while capturing would live in
    the graph's memory pool and be overwritten by later replays."""
    enabled, dtype = _autocast_state()
    return torch.autocast('cuda', dtype=dtype, enabled=enabled, cache_enabled=False)


def _static_input(cache: ShapeGraphs, x: Tensor) -> Tensor:
    (static_x,) = cache.static('x', [_spec(x)], x.device)
    with torch.no_grad():
        static_x.copy_(x)
    return static_x


# The graphs get their ShapeGraphs as an argument rather than keeping it: a reference back to it would make a cycle
# that keeps the pool, the static buffers and the parameters alive after the module is gone, until Python's cycle
# collector happens to run.
class _InferenceGraph:
    """Forward only (no autograd)."""

    def __init__(self, cache: ShapeGraphs, fn, x: Tensor, buffers):
        self.static_x = _static_input(cache, x)
        with _no_weight_cache():
            outs = _warm_up(lambda: fn(self.static_x), cache, x.device, buffers)
            self.static_out = cache.static('out', [_spec(o) for o in outs], x.device)
            del outs
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, pool=cache.pool, capture_error_mode=_CAPTURE_MODE):
                for static, o in zip(self.static_out, fn(self.static_x)):
                    static.copy_(o)

    def __call__(self, cache: ShapeGraphs, x: Tensor) -> Tuple[Tensor, ...]:
        return cache.replay(self.graph, self.static_x, x, self.static_out)


class _TrainingGraph:
    """Forward and backward graphs; gradients of the input (if it requires grad) and of `params`."""

    def __init__(self, cache: ShapeGraphs, fn, x: Tensor, slots, buffers):
        self.params = [p for _, _, p in slots]
        self.x_grad = x.requires_grad
        self.static_x = _static_input(cache, x).requires_grad_(self.x_grad)
        with _no_weight_cache():
            leading = [self.static_x] if self.x_grad else []  # the inputs differentiated, before the parameters
            with _parameter_aliases(slots) as aliases:
                inputs = leading + aliases

                def step():
                    outs = fn(self.static_x)
                    diff = [o for o in outs if o.requires_grad]
                    torch.autograd.grad(diff, inputs, [torch.ones_like(o) for o in diff], allow_unused=True)
                    return [o.detach() for o in outs]

                outs = _warm_up(step, cache, x.device, buffers)
            # fresh aliases for the capture: the warm-up's leaves recorded the side stream
            with _parameter_aliases(slots) as aliases:
                self._capture(cache, fn, leading + aliases, [_spec(o) for o in outs])

    def _capture(self, cache: ShapeGraphs, fn, inputs: List[Tensor], out_specs):
        """The forward graph, then the backward graph: gradients of `inputs` packed per dtype into the shared static
        buffer (one copy per dtype hands them out)."""
        device = self.static_x.device
        self.static_out = cache.static('out', out_specs, device)
        dtypes = sorted({t.dtype for t in inputs}, key=str)
        sizes = [sum(t.numel() for t in inputs if t.dtype == dtype) for dtype in dtypes]
        packed = dict(zip(dtypes, cache.static('grads', [((n,), None, d) for n, d in zip(sizes, dtypes)], device)))
        self.fwd = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.fwd, pool=cache.pool, capture_error_mode=_CAPTURE_MODE):
            outs = fn(self.static_x)
            for static, o in zip(self.static_out, outs):
                static.copy_(o.detach())
        self.differentiable = [i for i, o in enumerate(outs) if o.requires_grad]
        self.static_gout = cache.static('gout', [_spec(outs[i]) for i in self.differentiable], device)
        self.bwd = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.bwd, pool=cache.pool, capture_error_mode=_CAPTURE_MODE):
            grads = torch.autograd.grad([outs[i] for i in self.differentiable], inputs, self.static_gout,
                                        allow_unused=True)
            self.layout = []  # per input: None (no gradient) or (dtype, offset, shape)
            groups = collections.defaultdict(list)
            for g in grads:
                if g is None:
                    self.layout.append(None)
                    continue
                parts = groups[g.dtype]
                self.layout.append((g.dtype, sum(p.numel() for p in parts), g.shape))
                parts.append(g.reshape(-1))
            self.packed = {}
            for dtype, parts in groups.items():
                self.packed[dtype] = packed[dtype][:sum(p.numel() for p in parts)]
                torch.cat(parts, out=self.packed[dtype])
        del outs, grads, groups

    def __call__(self, cache: ShapeGraphs, x: Tensor) -> Tuple[Tensor, ...]:
        return _ReplayFunction.apply(cache, self, x, *self.params)

    def backward(self, cache: ShapeGraphs, generation: int, gouts) -> List[Optional[Tensor]]:
        if generation != cache.generation:
            raise RuntimeError('Conv2Former(cuda_graph=True): backward of a replayed forward whose activations a later '
                               'replay has overwritten or an earlier backward has used (retain_graph=True). Run one '
                               'backward per forward, or set cuda_graph=False.')
        for i, static in zip(self.differentiable, self.static_gout):
            if gouts[i] is None:
                static.zero_()
            else:
                static.copy_(gouts[i])
        self.bwd.replay()
        cache.generation += 1  # the backward reuses the activations' memory
        cache.pending = None
        copies = {dtype: buf.clone() for dtype, buf in self.packed.items()}
        return [None if entry is None else copies[entry[0]][entry[1]:entry[1] + entry[2].numel()].view(entry[2])
                for entry in self.layout]


class _ReplayFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, cache: ShapeGraphs, graph: _TrainingGraph, x: Tensor, *params: Tensor):
        outs = cache.replay(graph.fwd, graph.static_x, x, graph.static_out)
        # the autograd graph keeps the cache (no cycle: the cache keeps only a weak reference to `pending`)
        ctx.cache, ctx.graph, ctx.generation = cache, graph, cache.generation
        ctx.pending = _Pending()  # lives as long as this autograd graph; until its backward, other calls run eagerly
        cache.pending = weakref.ref(ctx.pending)
        return outs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *gouts):
        graph = ctx.graph
        grads = graph.backward(ctx.cache, ctx.generation, gouts)
        dx = grads.pop(0) if graph.x_grad else None
        return (None, None, dx, *grads)
