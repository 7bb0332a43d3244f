"""Side-by-side speed and memory of backbones, in one process, on one GPU.

Columns: Conv2Former-T with the fused Triton fast path, Conv2Former-T on the reference (plain PyTorch) path, timm's
ConvNeXt-T (`features_only`) and mmdet's Swin-T (when mmdet imports); `--arch small` or `base` compares the S or B
variants instead. Settings (bf16 autocast by default):

    coco_train   2x3x800x1344  forward + backward       ade_train  4x3x512x512  forward + backward
    coco_infer   1x3x800x1344  inference                in_infer   128x3x224x224 inference

Each case runs on a freshly built model (as a run of that setting would; a `cuda_graph=True` model would otherwise
keep the graphs and the memory pool of the settings before): warm-up steps (Triton compiles in the first), then the
median of `--steps` steps timed with CUDA events; peak memory is `torch.cuda.max_memory_allocated` with the peak
reset at the start of the case, less what earlier cases left allocated (model weights and gradients included; for
`cuda_graph=True` the capture included, and the size of the graphs' memory pool, which stays reserved, is
reported too). Then micro-benchmarks at the COCO stage-1 size of the T variant (2x200x336, C=72, k=11): the fused
ConvMod kernel (a) and whole ConvMod, the MLP kernel (b) and the whole block, fast vs reference, forward + backward;
and each Triton kernel of the block timed alone next to its memory-bandwidth / FMA floor.

Writes `benchmark.json`, `benchmark.md` and `benchmark.png` into `--out`.

`--graphs` adds Conv2Former fast and ConvNeXt replayed from hand-made CUDA graphs (what the GPU alone needs) and the
backbone's own `cuda_graph=True` option (forward and backward replayed per input shape), in every setting, and times
the micro-benchmarks replayed from CUDA graphs too (both paths).

`--keep-ratio N` instead times N training steps on the batch shapes of mmdet's keep-ratio COCO pipeline (2 images
of COCO-like sizes resized to fit 1333x800, the batch padded to a multiple of 32; seeded), where every few steps
bring a shape not seen before: Conv2Former fast eager and with `cuda_graph=True` (captures included; `--models`
picks others).

`--detector` instead times a Mask R-CNN (FPN) training iteration with Conv2Former (fast path, reference path and
fast with `cuda_graph=True`) vs Swin of the same size; it needs mmdet with mmcv's compiled ops (RoIAlign, NMS).

If mmcv is installed without its compiled ops (`mmcv._ext`), the backbone columns still import mmdet's Swin by
registering a stub `mmcv._ext` whose functions raise when called: Swin itself uses no compiled op.
"""
import argparse
import datetime
import functools
import gc
import json
import os
import os.path as osp
import statistics
import sys
import time
import traceback
import types

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

SETTINGS = {
    'coco_train': dict(shape=(2, 3, 800, 1344), train=True, label='COCO train 2x800x1344 fwd+bwd'),
    'ade_train': dict(shape=(4, 3, 512, 512), train=True, label='ADE train 4x512x512 fwd+bwd'),
    'coco_infer': dict(shape=(1, 3, 800, 1344), train=False, label='COCO inference 1x800x1344'),
    'in_infer': dict(shape=(128, 3, 224, 224), train=False, label='ImageNet inference 128x224x224'),
}
# The variant compared (`--arch`): Conv2Former's, against timm's ConvNeXt and mmdet's Swin of the same size. Model
# names: c2f_fast (fused path), c2f_ref (PyTorch path), c2f_fast_cg (cuda_graph=True) are Conv2Former of `--arch`;
# convnext_<l> and swin_<l> name their size by its letter (t, s, b); `_graph`: replayed from hand-made CUDA graphs.
ARCH = 'tiny'
LETTERS = {'tiny': 't', 'small': 's', 'base': 'b'}
CONVNEXT = {'t': 'convnext_tiny', 's': 'convnext_small', 'b': 'convnext_base'}  # timm names
SWIN = {'t': dict(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),  # mmdet's Swin-T/S/B
        's': dict(embed_dims=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24]),
        'b': dict(embed_dims=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32])}
C2F_LABELS = {'c2f_fast': 'fast', 'c2f_ref': 'ref', 'c2f_fast_graph': 'fast, CUDA graph',
              'c2f_fast_cg': 'fast, cuda_graph=True'}


def models(arch=None):
    """All model names of a comparison at `arch` (default: `--arch`), in the report's column order."""
    l = LETTERS[arch or ARCH]  # noqa: E741
    return ['c2f_fast', 'c2f_ref', f'convnext_{l}', f'swin_{l}', 'c2f_fast_graph', f'convnext_{l}_graph',
            'c2f_fast_cg']


def parse_model(name: str):
    """(family, size letter, graphed, base name) of a model name: family 'c2f' (ours, at --arch), 'convnext' or
    'swin', or None for a name the tool does not know; a '_graph' suffix (not in the base name) means replayed from a
    hand-made CUDA graph."""
    graphed = name.endswith('_graph')
    base = name[:-len('_graph')] if graphed else name
    if base in C2F_LABELS:
        return 'c2f', LETTERS[ARCH], graphed, base
    family, _, letter = base.partition('_')
    if (family == 'convnext' and letter in CONVNEXT) or (family == 'swin' and letter in SWIN):
        return family, letter, graphed, base
    return None, None, graphed, base


def model_label(name: str) -> str:
    """The report's name of a model (the model name itself when it is not one of ours)."""
    family, letter, graphed, base = parse_model(name)
    if family == 'c2f':
        what = C2F_LABELS[name] if name in C2F_LABELS else C2F_LABELS[base] + ', CUDA graph'
        return f'Conv2Former-{letter.upper()} {what}'
    if family == 'convnext':
        return f'ConvNeXt-{letter.upper()}' + (', CUDA graph' if graphed else ' (timm)')
    if family == 'swin':
        return f'Swin-{letter.upper()} (mmdet)'
    return name


def swin_args(letter: str, **extra) -> dict:
    """mmdet SwinTransformer arguments of Swin-T/S/B (ImageNet-1k, window 7, all four stage outputs)."""
    return dict(SWIN[letter], window_size=7, mlp_ratio=4, qkv_bias=True, patch_norm=True, out_indices=(0, 1, 2, 3),
                convert_weights=False, **extra)
# datasheet numbers for the floors (the copy bandwidth is also measured and reported): HBM bandwidth by device
# name (H100 SXM 3.35 TB/s, H200 4.8 TB/s; others: the H100's), fp32 FMA rate (the same 132 SMs in both)
HBM_BYTES_PER_S = {'H200': 4.8e12, 'H100': 3.35e12}
FP32_FLOPS = 67e12
GIB = 2 ** 30


def hbm_bytes_per_s(device_name: str) -> float:
    return next((v for k, v in HBM_BYTES_PER_S.items() if k in device_name), HBM_BYTES_PER_S['H100'])


def kernel_floor(k: dict, hbm: float) -> dict:
    """The floor of one kernel-table row (bytes, FLOPs, measured ms): max(bytes / HBM, FLOPs / FMA rate)."""
    floor_ms = max(k['bytes'] / hbm, k['flops'] / FP32_FLOPS) * 1e3
    return dict(floor_ms=floor_ms, bound='memory' if k['bytes'] / hbm >= k['flops'] / FP32_FLOPS else 'FMA',
                gbps=k['bytes'] / k['ms'] / 1e6, x_floor=k['ms'] / floor_ms)


# ---------------------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------------------
def _stub_mmcv_ext():
    """Let mmdet import when mmcv was installed without compiled ops: its functions raise if ever called."""
    try:
        import mmcv._ext  # noqa: F401
        return False
    except ImportError:
        pass

    class _Stub(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith('__'):
                raise AttributeError(name)

            def missing(*args, **kwargs):
                raise RuntimeError(f'mmcv._ext.{name} is not compiled (stub registered by benchmark_backbone.py)')
            return missing

    sys.modules['mmcv._ext'] = _Stub('mmcv._ext')
    return True


_UNKNOWN_MODEL = ("unknown model {!r}: one of c2f_fast, c2f_ref, c2f_fast_cg, convnext_<t|s|b>, swin_<t|s|b> "
                  "(optionally + _graph: replayed from a CUDA graph)")


def known_model(name: str) -> bool:
    return parse_model(name)[0] is not None


def c2f_options(name: str) -> dict:
    """Conv2Former's arguments for one of our model names (c2f_fast, c2f_ref, c2f_fast_cg, optionally _graph)."""
    base = parse_model(name)[3]
    return dict(arch=ARCH, fast_path=(base != 'c2f_ref'), cuda_graph=(base == 'c2f_fast_cg'))


def build_model(name, device):
    family, letter, _, _ = parse_model(name)
    if family == 'c2f':
        from mmconv2former.models.backbones.conv2former import Conv2Former
        return Conv2Former(**c2f_options(name)).to(device)
    if family == 'convnext':
        import timm
        return timm.create_model(CONVNEXT[letter], pretrained=False, features_only=True).to(device)
    if family == 'swin':
        stubbed = _stub_mmcv_ext()
        from mmdet.models.backbones import SwinTransformer
        model = SwinTransformer(**swin_args(letter, drop_path_rate=0.0, with_cp=False))
        model.mmcv_ext_stubbed = stubbed
        return model.to(device)
    raise KeyError(_UNKNOWN_MODEL.format(name))


# ---------------------------------------------------------------------------------------------------------------
# timing helpers
# ---------------------------------------------------------------------------------------------------------------
def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_fn(fn, device, steps, warmup, before=None):
    """Median and all step times (ms) of fn(), each step timed alone (CUDA events on GPU)."""
    for _ in range(warmup):
        if before:
            before()
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        if before:
            before()
        if device.type == 'cuda':
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), times


def _loss(outs):
    if isinstance(outs, torch.Tensor):
        outs = [outs]
    return sum(o.float().mean() for o in outs)


class _LossOf(nn.Module):
    """model -> scalar loss under autocast (weight-cast cache off, as CUDA graph capture needs)."""

    def __init__(self, model, dtype):
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x):
        with torch.autocast(x.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32, cache_enabled=False):
            return _loss(self.model(x))


def _graphed_step(model, x, dtype, train):
    """The same step, captured once in CUDA graph(s) and replayed: what the GPU alone needs, without the host."""
    if train:
        model.train()
        graphed = torch.cuda.make_graphed_callables(_LossOf(model, dtype), (x,), allow_unused_input=True)
        return lambda: graphed(x).backward()
    model.eval()
    use_amp = dtype != torch.float32
    with torch.no_grad(), torch.autocast(x.device.type, dtype=dtype, enabled=use_amp, cache_enabled=False):
        return _replayed(lambda: model(x))


def _replayed(step):
    """step() captured once in a CUDA graph (after three warm-up runs on a side stream); returns its replay.
    Autocast inside step must run with cache_enabled=False."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def run_case(model, setting, device, dtype, steps, warmup, graphed=False, leftover=0):
    """Median step time and peak memory; `leftover`: bytes allocated before the model was built (not counted)."""
    cfg = SETTINGS[setting]
    shape = cfg['shape']
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device) - leftover if device.type == 'cuda' else 0
    x = torch.randn(shape, device=device)
    use_amp = dtype != torch.float32
    clear = functools.partial(_clear_grads, model) if cfg['train'] else None
    if graphed:
        step = _graphed_step(model, x, dtype, cfg['train'])
        med, times = time_fn(step, device, steps, warmup, before=clear)
        _clear_grads(model)
    elif cfg['train']:
        model.train()

        def step():
            with torch.autocast(device.type, dtype=dtype, enabled=use_amp):
                loss = _loss(model(x))
            loss.backward()
        med, times = time_fn(step, device, steps, warmup, before=clear)
        _clear_grads(model)
    else:
        model.eval()

        def step():
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=use_amp):
                model(x)
        med, times = time_fn(step, device, steps, warmup)
    peak = torch.cuda.max_memory_allocated(device) - leftover if device.type == 'cuda' else 0
    res = dict(ms=med, ms_min=min(times), ms_max=max(times), peak_gib=peak / GIB, base_gib=base / GIB)
    graphs = getattr(model, '_graphs', None)
    if graphs is not None and graphs.pool is not None:  # cuda_graph=True: the pool stays reserved for the graphs
        from mmconv2former.ops.cuda_graph import _pool_size
        res['graph_pool_gib'] = _pool_size(graphs.pool) / GIB
    return res


# ---------------------------------------------------------------------------------------------------------------
# micro-benchmarks
# ---------------------------------------------------------------------------------------------------------------
def _bench(fn, device, steps, warmup):
    return time_fn(fn, device, steps, warmup)[0]


def micro_benchmarks(device, dtype, steps, warmup, N=2, H=200, W=336, C=72, K=11, graphs=False):
    """Fast vs reference, forward + backward, of parts of one block. `graphs`: each step also replayed from a CUDA
    graph (no host time: what the GPU alone needs)."""
    from mmconv2former.models.backbones.conv2former import Block
    from mmconv2former.ops import fast_block as fb
    torch.manual_seed(0)
    block = Block(C, K).to(device)
    for p in block.parameters():
        p.data.normal_(0, 0.1)
    results = []

    def fwd_bwd(fn, *inputs):
        def step():
            for t in inputs:
                t.grad = None
            _clear_grads(block)
            with torch.autocast(device.type, dtype=dtype, cache_enabled=False):  # (capturable)
                out = fn()
            out.float().sum().backward()
        return step

    def measure(name, fast, ref, **extra):
        r = dict(name=name, fast_ms=_bench(fast, device, steps, warmup), ref_ms=_bench(ref, device, steps, warmup),
                 **{k: _bench(v, device, steps, warmup) for k, v in extra.items()})
        r['speedup'] = r['ref_ms'] / r['fast_ms']
        if graphs:
            try:
                r['fast_graph_ms'] = _bench(_replayed(fast), device, steps, warmup)
                r['ref_graph_ms'] = _bench(_replayed(ref), device, steps, warmup)
                r['speedup_graph'] = r['ref_graph_ms'] / r['fast_graph_ms']
            except Exception as exc:  # noqa: BLE001  (recorded; the eager numbers stand)
                r['graph_error'] = f'{type(exc).__name__}: {exc}'.splitlines()[0][:200]
        results.append(r)

    # (a) alone: GELU -> DWConv_k -> * v
    av = torch.randn(N, H, W, 2 * C, device=device, dtype=dtype, requires_grad=True)
    a_ref = torch.randn(N, C, H, W, device=device, dtype=dtype, requires_grad=True)
    v_ref = torch.randn(N, C, H, W, device=device, dtype=dtype, requires_grad=True)
    a_cl = a_ref.detach().to(memory_format=torch.channels_last).requires_grad_()
    v_cl = v_ref.detach().to(memory_format=torch.channels_last).requires_grad_()
    dw = block.attn.att[2]
    measure(f'(a) GELU->DW{K}x{K}->*v, {N}x{H}x{W}x{C}', fwd_bwd(lambda: fb.convmod_dw(av, dw.weight, dw.bias), av),
            fwd_bwd(lambda: dw(F.gelu(a_ref)) * v_ref, a_ref, v_ref),
            ref_channels_last_ms=fwd_bwd(lambda: dw(F.gelu(a_cl)) * v_cl, a_cl, v_cl))
    # ConvMod (block.attn) whole
    x_cf = torch.randn(N, C, H, W, device=device, requires_grad=True)
    x_cl = x_cf.detach().permute(0, 2, 3, 1).contiguous().requires_grad_()
    measure(f'ConvMod (LN, 3 1x1, (a)), {N}x{H}x{W}x{C}',
            fwd_bwd(lambda: fb.convmod_forward_channels_last(block.attn, x_cl), x_cl),
            fwd_bwd(lambda: block.attn(x_cf), x_cf))
    # (b) alone: g = GELU(h0); g + GELU(DW3(g))
    C4 = 4 * C
    pos = block.mlp.pos
    h0 = torch.randn(N, H, W, C4, device=device, dtype=dtype, requires_grad=True)
    h0_ref = torch.randn(N, C4, H, W, device=device, dtype=dtype, requires_grad=True)

    def mlp_ref():
        g = F.gelu(h0_ref)
        return g + F.gelu(pos(g))
    measure(f'(b) GELU->DW3x3->GELU->add, {N}x{H}x{W}x{C4}', fwd_bwd(lambda: fb.mlp_pos(h0, pos.weight, pos.bias), h0),
            fwd_bwd(mlp_ref, h0_ref))
    # the whole block
    measure(f'Block, {N}x{H}x{W}x{C}, k={K}', fwd_bwd(lambda: fb.block_forward_channels_last(block, x_cl), x_cl),
            fwd_bwd(lambda: block(x_cf), x_cf))
    return results


def kernel_benchmarks(device, dtype, steps, warmup, N=2, H=200, W=336, C=72, K=11):
    """Each Triton kernel of the block alone at one stage size, with bytes / FLOPs and the floor they imply. The
    depthwise kernels are timed in both implementations (v3: the default, register row reuse; v2: the previous
    one), each with its own channel-blocked layout."""
    from mmconv2former.models.backbones.conv2former import Block
    from mmconv2former.ops import fast_block as fb
    from mmconv2former.ops.kernels import dwconv as dk
    from mmconv2former.ops.kernels import layernorm as lk
    from mmconv2former.ops.kernels import weights as wk
    torch.manual_seed(0)
    M, C4, e = N * H * W, 4 * C, torch.finfo(dtype).bits // 8
    shape = (N, H, W)
    r = lambda *s, dt=dtype: torch.randn(*s, device=device, dtype=dt)  # noqa: E731
    av, dm = r(M, 2 * C), r(M, C)
    wdw, bdw = r(C, 1, K, K, dt=torch.float32), r(C, dt=torch.float32)
    h0, dh = r(M, C4), r(M, C4)
    wpos, bpos = r(C4, 1, 3, 3, dt=torch.float32), r(C4, dt=torch.float32)
    wt, wt3 = dk.conv_weights(wdw), dk.conv_weights(wpos)
    wtf, wt3f = wt.flip(0), wt3.flip(0)
    x32, r1, g32 = r(M, C, dt=torch.float32), r(M, C), r(M, C, dt=torch.float32)
    lnw, lnb = r(C, dt=torch.float32), r(C, dt=torch.float32)
    acc = torch.zeros(4 * C4 + C4 * 9 + 4 * C + C * K * K, device=device)
    s1, s2, s3, s4 = acc[:C], acc[C:2 * C], acc[2 * C:3 * C], acc[3 * C:4 * C]
    dwk, dw3 = acc[4 * C:4 * C + C * K * K], acc[4 * C + C * K * K:4 * C + C * K * K + 9 * C4]
    stats = torch.zeros(2, M, device=device)
    stats[1] = 1
    MC, MC4 = M * C, M * C4
    kk, k3 = K * K, 9
    o1 = torch.empty_like(dm)
    o2 = torch.empty_like(av)
    ob1 = torch.empty_like(h0)
    g_rows = F.gelu(h0)
    block = Block(C, K).to(device)
    params = fb._block_params(block)
    wbytes = sum(p.numel() for p in params) * 4 + (11 * C * C + 8 * C) * e + (K * K + 41) * C * 4
    cases = [('weights prep (one launch per block)', None, lambda: wk.prepare_block_weights(params, dtype), wbytes,
              0)]
    saved = dict(dk.IMPL)
    for impl in ('v3', 'v2'):
        dk.IMPL.update(large=impl, small=impl)
        bl, bl3 = dk.block_width(C, K), dk.block_width(C4, 3)
        g = dk.gelu_blocked(av, C, bl)
        gb = dk.gelu_blocked(h0, C4, bl3)
        o3, ob2 = torch.empty_like(g), torch.empty_like(gb)
        # v2 gets its taps pre-flipped (as it was timed before); v3 flips the tap index in the kernel
        fa, fb3, fl = (wtf, wt3f, False) if impl == 'v2' else (wt, wt3, True)
        cases += [
            (f'GELU -> blocked (a) [{impl}]', impl, lambda av=av, bl=bl: dk.gelu_blocked(av, C, bl), 2 * MC * e, 0),
            (f'(a) fwd DW{K} [{impl}]', impl, lambda g=g: dk._launch_conv(dk.MODE_A_FWD, g, wt, bdw, shape, C, K,
                                                                         x1=av[:, C:], o1=o1), 3 * MC * e,
             2 * kk * MC),
            (f'(a) bwd recompute DW{K} [{impl}]', impl, lambda g=g, o3=o3: dk._launch_conv(
                dk.MODE_A_BWD, g, wt, bdw, shape, C, K, x1=av[:, C:], x2=dm, o1=o1, o2=o2[:, C:], o3=o3, p1=s1,
                p2=s2), 6 * MC * e, 2 * kk * MC),
            (f'(a) bwd dgrad DW{K} [{impl}]', impl, lambda o3=o3, fa=fa, fl=fl: dk._launch_conv(
                dk.MODE_A_DGRAD, o3, fa, bdw, shape, C, K, x1=av, o1=o2, p1=s3, flip=fl), 3 * MC * e, 2 * kk * MC),
            (f'(a) bwd wgrad DW{K} [{impl}]', impl, lambda g=g, o3=o3: dk.dw_wgrad(g, o3, shape, C, K, dwk),
             2 * MC * e, 2 * kk * MC),
            (f'GELU -> blocked (b){" (backward)" if impl == "v3" else ""} [{impl}]', impl,
             lambda bl3=bl3: dk.gelu_blocked(h0, C4, bl3), 2 * MC4 * e, 0),
        ]
        if impl == 'v3':  # the forward reads row-major GELU(h0) (`rows_forward`)
            cases += [
                ('GELU (b), row-major (forward) [v3]', impl, lambda: F.gelu(h0), 2 * MC4 * e, 0),
                ('(b) fwd DW3, row-major input [v3]', impl, lambda: dk._launch_conv(
                    dk.MODE_B_FWD, g_rows, wt3, bpos, shape, C4, 3, o1=ob1), 2 * MC4 * e, 2 * k3 * MC4)]
        else:
            cases += [
                (f'(b) fwd DW3 [{impl}]', impl, lambda gb=gb: dk._launch_conv(
                    dk.MODE_B_FWD, gb, wt3, bpos, shape, C4, 3, o1=ob1), 2 * MC4 * e, 2 * k3 * MC4)]
        cases += [
            (f'(b) bwd recompute DW3 [{impl}]', impl, lambda gb=gb, ob2=ob2: dk._launch_conv(
                dk.MODE_B_BWD, gb, wt3, bpos, shape, C4, 3, x1=dh, o1=ob1, o2=ob2, p1=s4), 4 * MC4 * e,
             2 * k3 * MC4),
            (f'(b) bwd dgrad DW3 [{impl}]', impl, lambda ob2=ob2, fb3=fb3, fl=fl: dk._launch_conv(
                dk.MODE_B_DGRAD, ob2, fb3, bpos, shape, C4, 3, x1=dh, x2=h0, o1=ob1, p1=s4, flip=fl), 4 * MC4 * e,
             2 * k3 * MC4),
            (f'(b) bwd wgrad DW3 [{impl}]', impl, lambda gb=gb, ob2=ob2: dk.dw_wgrad(gb, ob2, shape, C4, 3, dw3),
             2 * MC4 * e, 2 * k3 * MC4),
        ]
    dk.IMPL.update(saved)
    cases += [
        ('LayerNorm fwd (fp32 in)', None, lambda: lk.layer_norm(x32, lnw, lnb, 1e-6, dtype), MC * (4 + e), 0),
        ('residual + LayerNorm fwd', None, lambda: lk.layer_norm(x32, lnw, lnb, 1e-6, dtype, res=r1, hw=H * W,
                                                                  res_out_dtype=torch.float32),
         MC * (4 + e + 4 + e), 0),
        ('residual add', None, lambda: lk.residual_add(x32, r1, None, H * W, torch.float32), MC * (4 + e + 4), 0),
        ('LayerNorm bwd (+ residual grad, cast)', None, lambda: lk.layer_norm_bwd(
            x32, stats[0], stats[1], lnw, r1, s1, s2, dres=g32, dx_dtype=torch.float32, ds_dtype=dtype,
            ds_colsum=s3), MC * (4 + e + 4 + 4 + e), 0),
    ]
    out = []
    try:
        hbm = hbm_bytes_per_s(torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu')
        for name, impl, fn, nbytes, flops in cases:
            if impl:
                dk.IMPL.update(large=impl, small=impl)
            ms = _bench(fn, device, steps, warmup)
            dk.IMPL.update(saved)
            row = dict(kernel=name, ms=ms, bytes=nbytes, flops=flops)
            out.append(dict(row, **kernel_floor(row, hbm)))
    finally:
        dk.IMPL.update(saved)
    return out


def host_time_per_block(device, dtype, C=72, K=11, n=50):
    """Host (enqueue) time of one block's forward + backward: a tiny input (1x8x8), so the GPU work is negligible
    and the wall time of a synchronized step is the host time. Fast path vs the reference module."""
    from mmconv2former.models.backbones.conv2former import Block
    from mmconv2former.ops import fast_block as fb
    block = Block(C, K).to(device)
    x_cl = torch.randn(1, 8, 8, C, device=device, requires_grad=True)
    x_cf = x_cl.detach().permute(0, 3, 1, 2).contiguous().requires_grad_()

    def step(fast):
        def run():
            _clear_grads(block)
            with torch.autocast(device.type, dtype=dtype):
                y = fb.block_forward_channels_last(block, x_cl) if fast else block(x_cf)
            y.float().sum().backward()
        return run
    res = {}
    for name, fast in (('fast', True), ('reference', False)):
        run = step(fast)
        for _ in range(5):
            run()
        _sync(device)
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            run()
            _sync(device)
            ts.append((time.perf_counter() - t0) * 1e6)
        res[name] = statistics.median(ts)
    return res


def launch_overhead(device, n=2000):
    """Host time of one launch (us): a torch op, one of our Triton kernels through Triton, and through FastLauncher."""
    from mmconv2former.ops.kernels import layernorm as lk
    x = torch.randn(64, 72, device=device)
    r = torch.randn(64, 72, device=device, dtype=torch.bfloat16)
    out = torch.empty_like(x)
    grid = (2,)
    args = (x, r, x, out, 64, 64, 72, 128, 32, False)

    def host_us(fn):
        for _ in range(20):
            fn()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = (time.perf_counter() - t0) / n * 1e6
        _sync(device)
        return t
    res = {'torch x.add_(1)': host_us(lambda: x.add_(1)),
           'Triton kernel[grid](...)': host_us(lambda: lk._residual_kernel[grid](*args, num_warps=4)),
           'Triton, FastLauncher': host_us(lambda: lk._residual[grid](*args, num_warps=4))}
    return res


def copy_bandwidth(device):
    x = torch.empty(2 * GIB // 4, device=device, dtype=torch.float32)
    y = torch.empty_like(x)
    ms = _bench(lambda: y.copy_(x), device, 10, 3)
    return 2 * x.numel() * 4 / ms / 1e9  # TB/s, read + write


def profile_fast_step(device, dtype, out_dir, top=25):
    """Kernel-level profile of one fast-path COCO training step of Conv2Former (`--arch`; CUDA time per kernel)."""
    from torch.profiler import ProfilerActivity, profile
    model = build_model('c2f_fast', device).train()
    x = torch.randn(SETTINGS['coco_train']['shape'], device=device)
    for _ in range(2):
        with torch.autocast(device.type, dtype=dtype):
            _loss(model(x)).backward()
    _sync(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with torch.autocast(device.type, dtype=dtype):
            _loss(model(x)).backward()
        _sync(device)
    table = prof.key_averages().table(sort_by='cuda_time_total', row_limit=top)
    with open(osp.join(out_dir, 'profile_fast_coco_train.txt'), 'w') as f:
        f.write(table)
    del model
    return table


# ---------------------------------------------------------------------------------------------------------------
# keep-ratio mode: changing batch shapes
# ---------------------------------------------------------------------------------------------------------------
def keep_ratio_shapes(n, batch=2, scale=(1333, 800), divisor=32, seed=0, tiny=False):
    """Batch shapes of mmdet's `Resize(scale=(1333, 800), keep_ratio=True)` + batch padding to `divisor`, for image
    sizes drawn like COCO's: long side 640, short side 480 (45%), 427 (25%) or uniform in 320..640; 30% portrait.
    `tiny`: each side divided by 8 (smoke tests)."""
    import random
    rng = random.Random(seed)
    shapes = []
    for _ in range(n):
        hs, ws = [], []
        for _ in range(batch):
            r = rng.random()
            short = 480 if r < 0.45 else 427 if r < 0.70 else rng.randint(320, 640)
            h, w = (short, 640) if rng.random() < 0.7 else (640, short)
            f = min(max(scale) / max(h, w), min(scale) / min(h, w))
            hs.append(int(h * f + 0.5))
            ws.append(int(w * f + 0.5))
        shapes.append((batch, 3, -(-max(hs) // divisor) * divisor, -(-max(ws) // divisor) * divisor))
    return [(b, c, h // 8, w // 8) for b, c, h, w in shapes] if tiny else shapes


def _time_over_shapes(step, shapes, device, on_new_shape=None):
    """Wall time (ms, synchronized) of `step(shape)` for each shape in turn, and whether the shape had come before;
    `on_new_shape(i, shapes_seen)` runs after each step on a shape not seen before."""
    times, repeat, seen = [], [], set()
    for i, shape in enumerate(shapes):
        t0 = time.perf_counter()
        step(shape)
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
        repeat.append(shape in seen)
        seen.add(shape)
        if on_new_shape and not repeat[-1]:
            on_new_shape(i, len(seen))
    return times, repeat


def _free_memory(device):
    """After a model is dropped: collect any reference cycles (e.g. of timm's or mmdet's modules) and hand the cached
    memory back, so that the next case starts from a clean device."""
    gc.collect()
    if device.type == 'cuda':
        # cuBLAS keeps a workspace per stream it ran on (CUDA-graph cases use side streams) until told otherwise
        torch._C._cuda_clearCublasWorkspaces()
        torch.cuda.empty_cache()


def _clear_grads(model):
    for p in model.parameters():
        p.grad = None


def _train_step(model, shape, device, dtype):
    _clear_grads(model)
    x = torch.randn(shape, device=device)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        loss = _loss(model(x))
    loss.backward()


def keep_ratio_benchmark(device, dtype, steps, warmup, names, tiny=False):
    shapes = keep_ratio_shapes(steps, tiny=tiny)
    results = []
    cuda = device.type == 'cuda'
    for name in names:
        model = build_model(name, device).train()
        if cuda:
            torch.cuda.empty_cache()
            free0 = torch.cuda.mem_get_info(device)[0]
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(warmup):
            _train_step(model, shapes[0], device, dtype)
        _sync(device)
        memory = []

        def record_memory(i, seen, name=name, model=model, memory=memory):  # as the shapes (and graphs) add up
            if cuda and seen % 20 == 0:
                graphs = getattr(model, '_graphs', None)
                memory.append(dict(step=i + 1, shapes=seen, reserved_gib=torch.cuda.memory_reserved(device) / GIB,
                                   allocated_gib=torch.cuda.memory_allocated(device) / GIB,
                                   graph_pool_gib=graphs.pool_size / GIB if graphs else None))
                print(f"[keep-ratio] {model_label(name)}: step {i + 1}, {seen} shapes, reserved "
                      f"{memory[-1]['reserved_gib']:.2f} GiB, allocated {memory[-1]['allocated_gib']:.2f} GiB"
                      + (f", graph pool {graphs.pool_size / GIB:.2f} GiB ({graphs.pools} made)" if graphs else ''),
                      flush=True)

        times, repeat = _time_over_shapes(lambda shape, m=model: _train_step(m, shape, device, dtype), shapes,
                                          device, record_memory)
        graphs = getattr(model, '_graphs', None)
        again = [t for t, r in zip(times, repeat) if r]
        res = dict(model=name, label=model_label(name), steps=len(shapes), shapes=len(set(shapes)),
                   mean_ms=statistics.mean(times), median_ms=statistics.median(times),
                   repeat_median_ms=statistics.median(again) if again else float('nan'),
                   new_median_ms=statistics.median([t for t, r in zip(times, repeat) if not r]),
                   peak_gib=torch.cuda.max_memory_allocated(device) / GIB if cuda else 0.0,
                   device_used_gib=(free0 - torch.cuda.mem_get_info(device)[0]) / GIB if cuda else 0.0,
                   captures=graphs.captures if graphs else None, replays=graphs.replays if graphs else None,
                   graph_pools=graphs.pools if graphs else None, memory_by_shapes=memory)
        results.append(res)
        print(f"[keep-ratio] {res['label']:36s} mean {res['mean_ms']:7.1f} ms  median {res['median_ms']:7.1f}  "
              f"seen-shape median {res['repeat_median_ms']:7.1f}  new-shape median {res['new_median_ms']:7.1f}  "
              f"peak {res['peak_gib']:.2f} GiB  device +{res['device_used_gib']:.2f} GiB  "
              f"captures {res['captures']} replays {res['replays']} pools {res['graph_pools']}", flush=True)
        del model
        _free_memory(device)
    return results


# ---------------------------------------------------------------------------------------------------------------
# detector mode
# ---------------------------------------------------------------------------------------------------------------
def _detector_step(model, opt, data, device, dtype):
    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            losses = model(**data, mode='loss')
        loss = sum(v.sum() if isinstance(v, torch.Tensor) else sum(v) for k, v in losses.items() if 'loss' in k)
        loss.backward()
        opt.step()
    return step


def detector_benchmark(device, dtype, steps, warmup, image=(800, 1344), batch=2, keep_ratio=0, tiny=False):
    """Mask R-CNN training iterations: `steps` on one fixed batch shape, or with `keep_ratio` > 0 that many
    iterations on keep-ratio COCO batch shapes (`keep_ratio_shapes`; each shape's data made before timing; the
    median is over the iterations whose shape was seen before)."""
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import MODELS as ROOT_MODELS

    import mmconv2former  # noqa: F401  (registers the backbone)
    register_all_modules()
    base = Config.fromfile(osp.join(REPO, 'configs/_base_/models/mask-rcnn_conv2former_fpn.py'))
    shapes = keep_ratio_shapes(keep_ratio, batch, tiny=tiny) if keep_ratio else [(batch, 3) + tuple(image)]
    from mmconv2former.models.backbones.conv2former import ARCH_SETTINGS
    letter = LETTERS[ARCH]
    swin = f'swin_{letter}'
    names = ('c2f_fast', 'c2f_fast_cg') if keep_ratio else ('c2f_fast', 'c2f_ref', swin, 'c2f_fast_cg')
    results = []
    for name in names:
        cfg = base.model.copy()
        cfg['backbone'] = dict(cfg['backbone'])
        cfg['backbone'].update(norm_cfg=dict(type='BN', requires_grad=True))
        if name == swin:
            cfg['backbone'] = dict(type='mmdet.SwinTransformer', **swin_args(letter, drop_path_rate=0.2))
            cfg['neck'] = dict(cfg['neck'], in_channels=[SWIN[letter]['embed_dims'] * 2 ** i for i in range(4)])
        else:
            cfg['backbone'].update(c2f_options(name), drop_path_rate=0.2)
            cfg['neck'] = dict(cfg['neck'], in_channels=list(ARCH_SETTINGS[ARCH]['dims']))
        cfg.setdefault('_scope_', 'mmdet')
        model = ROOT_MODELS.build(cfg).to(device).train()
        data = {}
        for shape in shapes:
            if shape not in data:
                packed = demo_mm_inputs(batch_size=batch, image_shapes=[shape[1:]] * batch, num_items=[8] * batch,
                                        with_mask=True)
                data[shape] = model.data_preprocessor(packed, True)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        if device.type == 'cuda':
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        if keep_ratio:
            for _ in range(warmup):
                _detector_step(model, opt, data[shapes[0]], device, dtype)()
            _sync(device)
            times, repeat = _time_over_shapes(
                lambda shape, m=model, o=opt, d=data: _detector_step(m, o, d[shape], device, dtype)(), shapes, device)
            again = [t for t, r in zip(times, repeat) if r]
            med = statistics.median(again) if again else float('nan')
        else:
            med, _ = time_fn(_detector_step(model, opt, data[shapes[0]], device, dtype), device, steps, warmup)
        peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == 'cuda' else 0.0
        results.append(dict(model=name, label=model_label(name), ms=med, peak_gib=peak, steps=len(shapes),
                            shapes=len(set(shapes))))
        print(f'[detector] {model_label(name):22s} {med:8.1f} ms  {peak:6.2f} GiB', flush=True)
        del model, opt, data
        _free_memory(device)
    return results


# ---------------------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------------------
BACKWARD_THREAD = dict(engine="the autograd engine's device thread (PyTorch's default)",
                       calling='the calling thread (as our configs train: SingleThreadBackwardHook)')


def markdown(report):
    changing = report.get('keep_ratio') or any(r.get('shapes', 1) > 1 for r in report.get('detector') or [])
    timing = (f"{report['warmup']} warm-up steps on the first shape" if changing else
              f"median of {report['steps']} steps after {report['warmup']} warm-up")
    lines = [f"Device: {report['device']} · dtype: {report['dtype']} autocast · torch {report['torch']} · "
             f"triton {report['triton']} · {report['date']} · {timing} · backward on "
             f"{BACKWARD_THREAD[report.get('backward_thread', 'engine')]}", '']
    cases = report['cases']
    names = _in_order(cases)
    if cases:
        lines += _backbone_table(cases, names)
    if report.get('swin_note'):
        lines += ['', f"Swin: {report['swin_note']}"]
    return _markdown_rest(report, lines)


def _in_order(cases):
    """The model names of `cases`: those of a standard comparison in its column order, then any others."""
    names = list(dict.fromkeys(c['model'] for c in cases))
    order = models()
    return sorted(names, key=lambda m: order.index(m) if m in order else len(order))


def _backbone_table(cases, names):
    letter = LETTERS[ARCH]
    convnext = model_label(f'convnext_{letter}').split(' (')[0]
    lines = []
    lines.append('| setting | ' + ' | '.join(model_label(m) for m in names) + f' | fast / {convnext} |')
    lines.append('|---' * (len(names) + 2) + '|')
    for s in SETTINGS:
        row, by = [], {c['model']: c for c in cases if c['setting'] == s}
        if not by:
            continue
        for m in names:
            c = by.get(m)
            if c is None or 'error' in c:
                row.append('n/a')
            else:
                row.append(f"{c['ms']:.1f} ms · {c['peak_gib']:.2f} GiB")
        f, r = by.get('c2f_fast'), by.get(f'convnext_{letter}')
        if f and r and 'error' not in f and 'error' not in r:
            ratio = f"{f['ms'] / r['ms']:.2f}x time · {f['peak_gib'] / max(r['peak_gib'], 1e-9):.2f}x mem"
        else:
            ratio = 'n/a'
        fg, rg = by.get('c2f_fast_graph'), by.get(f'convnext_{letter}_graph')
        if fg and rg and 'error' not in fg and 'error' not in rg:
            ratio += f" (CUDA graphs: {fg['ms'] / rg['ms']:.2f}x)"
        cg = by.get('c2f_fast_cg')
        if cg and r and 'error' not in cg and 'error' not in r:
            ratio += f"; cuda_graph=True vs eager {convnext}: {cg['ms'] / r['ms']:.2f}x"
        lines.append(f"| {SETTINGS[s]['label']} | " + ' | '.join(row) + f' | {ratio} |')
    pools = [c for c in cases if 'graph_pool_gib' in c]
    if pools:
        lines += ['', "`cuda_graph=True`: the peak includes the capture; the graphs' memory pool then stays reserved "
                  'for the replays (not counted as allocated): ' + ', '.join(
                      f"{SETTINGS[c['setting']]['label'].split(' fwd')[0]} {c['graph_pool_gib']:.2f} GiB"
                      for c in pools) + '.']
    errors = [c for c in cases if 'error' in c]
    if errors:
        lines.append('')
        for c in errors:
            lines.append(f"- {model_label(c['model'])} / {c['setting']}: not run ({c['error']})")
    return lines


def _markdown_rest(report, lines):
    if report.get('launch_us'):
        lines += ['', '| one launch, host time | us |', '|---|---|']
        for k, v in report['launch_us'].items():
            lines.append(f'| {k} | {v:.1f} |')
    if report.get('host_us_per_block'):
        lines += ['', '| host time of one block fwd+bwd (1x8x8x72, k=11, wall of a synchronized step) | us |',
                  '|---|---|']
        for k, v in report['host_us_per_block'].items():
            lines.append(f'| {k} | {v:.0f} |')
    if report.get('micro'):
        graphed = any('fast_graph_ms' in r for r in report['micro'])
        lines += ['', '| micro-benchmark (fwd+bwd) | fast | reference | speedup |' +
                  (' fast, CUDA graph | reference, CUDA graph | speedup |' if graphed else ''),
                  '|---' * (7 if graphed else 4) + '|']
        for r in report['micro']:
            extra = f" (channels_last ref {r['ref_channels_last_ms']:.2f} ms)" if 'ref_channels_last_ms' in r else ''
            line = f"| {r['name']} | {r['fast_ms']:.2f} ms | {r['ref_ms']:.2f} ms{extra} | {r['speedup']:.1f}x |"
            if 'fast_graph_ms' in r:
                line += f" {r['fast_graph_ms']:.2f} ms | {r['ref_graph_ms']:.2f} ms | {r['speedup_graph']:.1f}x |"
            elif graphed:
                line += f" {r.get('graph_error', 'n/a')} | | |"
            lines.append(line)
    if report.get('kernels'):
        lines += ['', f"Kernels at {report.get('kernel_shape', '')}, floor = max(bytes / "
                  f"{hbm_bytes_per_s(report['device']) / 1e12:.2f} TB/s, FLOPs / {FP32_FLOPS / 1e12:.0f} TFLOP/s); "
                  "measured copy "
                  f"bandwidth {report.get('copy_tbps', float('nan')):.2f} TB/s", '',
                  '| kernel | time | bytes | FLOPs | floor | bound | achieved | x floor |',
                  '|---|---|---|---|---|---|---|---|']
        for k in report['kernels']:
            lines.append(f"| {k['kernel']} | {k['ms'] * 1e3:.0f} us | {k['bytes'] / 1e6:.0f} MB | "
                         f"{k['flops'] / 1e9:.1f} G | {k['floor_ms'] * 1e3:.0f} us | {k['bound']} | "
                         f"{k['gbps']:.0f} GB/s | {k['x_floor']:.1f} |")
    if report.get('keep_ratio'):
        rows = report['keep_ratio']
        lines += ['', f"Training on keep-ratio COCO batch shapes: {rows[0]['steps']} steps, {rows[0]['shapes']} "
                  'different shapes (`keep_ratio_shapes`), wall time per step including captures', '',
                  '| model | mean per step | median | median, shape seen before | median, new shape | peak memory '
                  '| device memory used | graphs captured / replayed (memory pools made) |',
                  '|---|---|---|---|---|---|---|---|']
        for r in rows:
            cg = (f"{r['captures']} / {r['replays']} ({r.get('graph_pools')})" if r['captures'] is not None
                  else '-')
            lines.append(f"| {r['label']} | {r['mean_ms']:.1f} ms | {r['median_ms']:.1f} ms | "
                         f"{r['repeat_median_ms']:.1f} ms | {r['new_median_ms']:.1f} ms | {r['peak_gib']:.2f} GiB | "
                         f"{r['device_used_gib']:.2f} GiB | {cg} |")
    if report.get('detector'):
        det = report['detector']
        what = (f"median of the iterations whose shape was seen before, {det[0]['steps']} iterations on "
                f"{det[0]['shapes']} keep-ratio COCO batch shapes" if det[0]['shapes'] > 1 else 'median')
        lines += ['', f'| Mask R-CNN train iteration ({what}) | time | peak memory |', '|---|---|---|']
        for r in report['detector']:
            lines.append(f"| {r['label']} | {r['ms']:.1f} ms | {r['peak_gib']:.2f} GiB |")
    return '\n'.join(lines) + '\n'


def chart(report, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cases = [c for c in report['cases'] if 'error' not in c]
    settings = [s for s in SETTINGS if any(c['setting'] == s for c in cases)]
    names = _in_order(cases)
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    width = 0.8 / max(1, len(names))
    for ax, key, ylabel in ((axes[0], 'ms', 'time per step (ms, median)'), (axes[1], 'peak_gib', 'peak memory (GiB)')):
        for i, m in enumerate(names):
            vals = []
            for s in settings:
                c = next((c for c in cases if c['model'] == m and c['setting'] == s), None)
                vals.append(c[key] if c else 0.0)
            xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(settings))]
            bars = ax.bar(xs, vals, width, label=model_label(m))
            for b, v in zip(bars, vals):
                if v:
                    ax.annotate(f'{v:.1f}' if key == 'ms' else f'{v:.2f}', (b.get_x() + b.get_width() / 2, v),
                                ha='center', va='bottom', fontsize=7)
        ax.set_xticks(range(len(settings)))
        ax.set_xticklabels([SETTINGS[s]['label'].replace(' ', '\n', 2) for s in settings], fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(axis='y', alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Backbones, {report['dtype']} autocast, {report['device']}, torch {report['torch']}, "
                 f"{report['date']}" + (', backward on the calling thread' if report.get('backward_thread') == 'calling'
                                        else ''), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_models(names, args, report, device, dtype):
    for name in names:
        for s in args.settings.split(','):
            leftover = torch.cuda.memory_allocated(device) if device.type == 'cuda' else 0
            try:
                model = build_model(name, device)
            except Exception as exc:
                msg = f'{type(exc).__name__}: {exc}'.splitlines()[0][:200]
                print(f'[skip] {name}: {msg}', flush=True)
                report['cases'].append(dict(model=name, setting=s, error=msg))
                continue
            if getattr(model, 'mmcv_ext_stubbed', False):
                report['swin_note'] = 'mmcv without compiled ops: stub mmcv._ext (Swin uses none)'
            try:
                res = run_case(model, s, device, dtype, args.steps, args.warmup, graphed=name.endswith('_graph'),
                               leftover=leftover)
                res['leftover_gib'] = leftover / GIB
            except Exception as exc:
                traceback.print_exc()
                res = dict(error=f'{type(exc).__name__}: {exc}'.splitlines()[0][:200])
                if device.type == 'cuda':
                    torch.cuda.empty_cache()
            res.update(model=name, setting=s, label=model_label(name))
            report['cases'].append(res)
            if 'error' in res:
                print(f"[{name:10s}] {s:10s} error: {res['error']}", flush=True)
            else:
                print(f"[{name:10s}] {s:10s} {res['ms']:8.2f} ms  {res['peak_gib']:6.2f} GiB", flush=True)
            del model
            _free_memory(device)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='work_dirs/benchmark', help='output folder')
    parser.add_argument('--arch', default='tiny', choices=list(LETTERS),
                        help="Conv2Former's variant, compared with ConvNeXt and Swin of the same size")
    parser.add_argument('--models', default=None, help='default: c2f_fast,c2f_ref,convnext_<l>,swin_<l> (l: the '
                        'letter of --arch: t, s or b); with --keep-ratio c2f_fast,c2f_fast_cg')
    parser.add_argument('--settings', default=','.join(SETTINGS))
    parser.add_argument('--dtype', default='bf16', choices=['bf16', 'fp16', 'fp32'])
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--no-micro', action='store_true', help='skip the micro-benchmarks and the kernel table')
    parser.add_argument('--profile', action='store_true', help='also write a kernel profile of the fast path')
    parser.add_argument('--graphs', action='store_true',
                        help='add Conv2Former fast and ConvNeXt replayed from CUDA graphs (GPU time, no host), '
                             "and the backbone's own cuda_graph=True option")
    parser.add_argument('--launch-overhead', action='store_true', help='host time of one kernel launch')
    parser.add_argument('--detector', action='store_true',
                        help='Mask R-CNN training iteration instead (with --keep-ratio N: on changing shapes)')
    parser.add_argument('--keep-ratio', type=int, default=0, metavar='N',
                        help="N training steps on mmdet's keep-ratio COCO batch shapes instead")
    parser.add_argument('--single-thread-backward', action='store_true',
                        help="every model's backward on the calling thread, as our configs' SingleThreadBackwardHook "
                             "runs training (default: PyTorch's, handed to the autograd engine's device thread)")
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--tiny', action='store_true', help='smoke test: tiny inputs (e.g. on CPU)')
    args = parser.parse_args()
    global ARCH
    ARCH = args.arch
    for name in (args.models.split(',') if args.models else []):
        if not known_model(name):
            parser.error('--models: ' + _UNKNOWN_MODEL.format(name))
    for setting in args.settings.split(','):
        if setting not in SETTINGS:
            parser.error(f"--settings: unknown setting {setting!r}: one of {', '.join(SETTINGS)}")

    device = torch.device(args.device)
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16, fp32=torch.float32)[args.dtype]
    os.makedirs(args.out, exist_ok=True)
    try:
        import triton
        triton_version = triton.__version__
    except Exception:
        triton_version = 'n/a'
    report = dict(device=torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
                  arch=args.arch, dtype=args.dtype, torch=torch.__version__, triton=triton_version,
                  date=datetime.datetime.now().strftime('%Y-%m-%d %H:%M'), steps=args.steps, warmup=args.warmup,
                  cases=[], backward_thread='calling' if args.single_thread_backward else 'engine')
    torch.autograd.set_multithreading_enabled(not args.single_thread_backward)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = False
    suffix = ''
    micro_size = {}
    if args.tiny:
        for cfg in SETTINGS.values():
            old = 'x'.join(map(str, cfg['shape'][:1] + cfg['shape'][2:]))
            cfg['shape'] = (min(cfg['shape'][0], 2), 3, 64, 96)
            cfg['label'] = cfg['label'].replace(old, 'x'.join(map(str, cfg['shape'][:1] + cfg['shape'][2:])))
        micro_size = dict(N=1, H=9, W=13, C=16)
    if args.detector:
        if device.type != 'cuda' and dtype != torch.float32:  # mmcv's CPU RoIAlign takes fp32 only
            dtype, report['dtype'] = torch.float32, 'fp32'
            print('[detector] fp32 (mmcv RoIAlign on the CPU has no half-precision kernel)')
        elif dtype == torch.bfloat16:  # mmcv 2.1's RoIAlign has no bf16 CUDA kernel; mmdet's AMP is fp16 anyway
            dtype, report['dtype'] = torch.float16, 'fp16'
            print('[detector] fp16 autocast (mmcv RoIAlign has no bf16 kernel; mmdet AmpOptimWrapper uses fp16)')
        report['detector'] = detector_benchmark(device, dtype, args.steps, args.warmup,
                                                image=(128, 160) if args.tiny else (800, 1344),
                                                keep_ratio=args.keep_ratio, tiny=args.tiny)
        suffix = '_detector_keep_ratio' if args.keep_ratio else '_detector'
    elif args.keep_ratio:
        names = args.models.split(',') if args.models else ('c2f_fast', 'c2f_fast_cg')
        report['keep_ratio'] = keep_ratio_benchmark(device, dtype, args.keep_ratio, args.warmup, names, args.tiny)
        suffix = '_keep_ratio'
    else:
        run_models(args.models.split(',') if args.models else models()[:4], args, report, device, dtype)
        if not args.no_micro and device.type != 'cuda':
            print('[micro] skipped: the micro-benchmarks and the kernel table time the Triton kernels, which run on '
                  'CUDA only')
        elif not args.no_micro:
            report['micro'] = micro_benchmarks(device, dtype, args.steps, args.warmup, graphs=args.graphs,
                                               **micro_size)
            report['copy_tbps'] = copy_bandwidth(device)
            ks = dict(dict(N=2, H=200, W=336, C=72), **micro_size)
            report['kernel_shape'] = f"N x H x W = {ks['N']}x{ks['H']}x{ks['W']}, C={ks['C']} (4C={4 * ks['C']}), k=11"
            report['kernels'] = kernel_benchmarks(device, dtype, args.steps, args.warmup, **micro_size)
        if args.launch_overhead and device.type == 'cuda':
            report['launch_us'] = launch_overhead(device)
            report['host_us_per_block'] = host_time_per_block(device, dtype)
        if args.profile and device.type == 'cuda':
            print(profile_fast_step(device, dtype, args.out), flush=True)
        if args.graphs:  # last: a failed capture can leave the device unusable for what follows
            run_models([m for m in models() if m.endswith(('_graph', '_cg'))], args, report, device, dtype)
    with open(osp.join(args.out, f'benchmark{suffix}.json'), 'w') as f:
        json.dump(report, f, indent=1)
    md = markdown(report)
    with open(osp.join(args.out, f'benchmark{suffix}.md'), 'w') as f:
        f.write(md)
    if report['cases']:
        try:
            chart(report, osp.join(args.out, f'benchmark{suffix}.png'))
        except Exception as exc:  # matplotlib missing
            print(f'no chart: {exc!r}')
    print(md, flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
