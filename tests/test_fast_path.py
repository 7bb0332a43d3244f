"""The fused Triton fast path of the Conv2Former block (`mmconv2former.ops`) against the reference `Block`.

Checked on CUDA: the forward and the gradients of the input and of every parameter, in fp32 (against a float64 run
of the reference, relative to each tensor's scale, 1e-4) and under bf16 / fp16 autocast (norm-relative error against
float64 at most twice the reference's own autocast error, or under a floor: bf16 2e-2, fp16 3e-3); kernel sizes 7 and
11, odd and tiny spatial sizes; drop path in training mode (same random numbers as timm's DropPath); activation
checkpointing; torch.compile; the backbone with fast_path on vs off; the saved-activation memory. On CPU-only
machines these are skipped (with the reason shown) and only the import / CPU fallback is checked.
"""
import copy
import functools

import pytest
import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp

from mmconv2former.models.backbones.conv2former import Block, Conv2Former
from mmconv2former.ops import block_forward_channels_last, convmod_forward_channels_last, fast_path_available
from mmconv2former.ops import fast_block as fb

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason='the fused Triton kernels run on CUDA only; no GPU here')
gpu = [pytest.mark.gpu, needs_cuda]


@pytest.fixture(autouse=True)
def _no_tf32():
    """fp32 comparisons must not run the reference's convolutions / matmuls in TF32."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def make_block(C, k, drop_path=0.0, seed=0, device='cuda'):
    torch.manual_seed(seed)
    block = Block(C, k, drop_path=drop_path)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in block.named_parameters():
            if 'layer_scale' in name:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith('norm.weight'):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith('bias'):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
    return block.to(device)


def run(block, x_nhwc, gy, fast, amp=None):
    """Output and [dx, d(every parameter)] of one forward/backward, channels-last in and out."""
    x = x_nhwc.detach().clone().requires_grad_()
    block.zero_grad(set_to_none=True)
    with torch.autocast('cuda', dtype=amp or torch.bfloat16, enabled=amp is not None):
        if fast:
            assert fast_path_available(x)
            y = block_forward_channels_last(block, x)
        else:
            y = block(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    y.backward(gy.to(y.dtype))
    grads = [x.grad] + [p.grad for _, p in block.named_parameters()]
    return y.detach(), grads


def names(block):
    return ['input'] + [n for n, _ in block.named_parameters()]


def max_rel(a, b):
    """max |a - b| relative to the scale (max |b|) of the reference tensor."""
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def norm_rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


# ---------------------------------------------------------------------------------------------------------------
# CPU: the module imports and the backbone keeps the reference path
# ---------------------------------------------------------------------------------------------------------------
def test_cpu_import_and_fallback():
    block = make_block(16, 7, device='cpu').eval()
    x = torch.randn(2, 9, 11, 16)
    assert not fast_path_available(x)
    with torch.no_grad():
        out = block_forward_channels_last(block, x)
        ref = block(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    assert out.shape == x.shape and out.is_contiguous()
    assert torch.equal(out, ref)


def test_custom_ops_registered():
    if not fb._HAS_CUSTOM_OP:
        pytest.skip('torch < 2.4: no torch.library.custom_op, the fast path uses an autograd.Function')
    for name in ('block_fwd', 'block_bwd', 'convmod_dw', 'mlp_pos'):
        assert hasattr(torch.ops.mmconv2former, name)


def test_dw_tiles_setting():
    """MMCONV2FORMER_DW_TILES (the depthwise kernels' tile override) takes valid entries and names itself and the
    allowed form when an entry is bad."""
    from mmconv2former.ops.kernels import dwconv
    tiles = dwconv._parse_tiles('conv_large=8x64x2x0, wgrad_small=16x32x1x1, conv_rows=4x16x4x32, dgrad_large=2x32x1x0',
                                dwconv.V3_TILES)
    assert tiles['conv_large'] == (8, 64, 2, 0) and tiles['wgrad_small'] == (16, 32, 1, 1)
    assert tiles['dgrad_large'] == (2, 32, 1, 0)  # the input gradient (transposed conv) has its own entries
    assert tiles['conv_rows'] == (4, 16, 4, 32)  # the row-major MLP forward: its last number is channels
    assert tiles['conv_small'] == dwconv.V3_TILES['conv_small']
    for bad in ('conv_large=8x48x1x0', 'conv_large=8x32x2x0', 'conv_huge=8x32x1x0', 'conv_large=8x32x1', 'x',
                'conv_rows=2x8x2x48', 'conv_rows=2x8x2x512', 'conv_rows=2x12x2x64', 'conv_rows=0x8x2x64'):
        with pytest.raises(ValueError, match=r'MMCONV2FORMER_DW_TILES: bad entry .*THxTWxWARPSxUNROLL'):
            dwconv._parse_tiles(bad, dwconv.V3_TILES)


def test_wgrad_split_covers_every_tile_once():
    """The weight gradient's image tiles are split over programs: every tile in exactly one split (a dropped tile
    would drop its part of the gradient), no split empty, and about WGRAD_PROGRAMS_PER_SM programs per SM when there
    are enough tiles."""
    from mmconv2former.ops.kernels import dwconv
    for n_tiles in (1, 2, 7, 50, 113, 1100, 25_000):
        for per_split in (1, 18, 72, 198, 5000):
            for sms in (4, 132):
                splits, per_prog = dwconv._split_tiles(n_tiles, per_split, sms)
                starts = range(0, splits * per_prog, per_prog)
                assert splits >= 1 and per_prog >= 1
                assert sum(min(per_prog, n_tiles - s) for s in starts) == n_tiles  # each tile once
                assert all(s < n_tiles for s in starts)  # no split empty
                target = dwconv.WGRAD_PROGRAMS_PER_SM * sms
                if n_tiles >= target:
                    assert splits * per_split >= min(target, n_tiles * per_split) * 0.5


# ---------------------------------------------------------------------------------------------------------------
# CUDA parity
# ---------------------------------------------------------------------------------------------------------------
FP32_CASES = [  # k, N, H, W, C
    (11, 2, 37, 53, 72),
    (7, 2, 37, 53, 64),
    (11, 1, 5, 7, 40),   # smaller than the kernel
    (7, 3, 1, 9, 16),    # a single row
]


@pytest.mark.parametrize('k,N,H,W,C', FP32_CASES, ids=[f'k{c[0]}-{c[1]}x{c[2]}x{c[3]}x{c[4]}' for c in FP32_CASES])
@pytest.mark.gpu
@needs_cuda
def test_fp32_matches_reference(k, N, H, W, C):
    block = make_block(C, k, seed=k + C)
    x = torch.randn(N, H, W, C, device='cuda')
    gy = torch.randn(N, H, W, C, device='cuda')
    ref_out, ref_grads = run(copy.deepcopy(block).double(), x.double(), gy.double(), fast=False)
    out, grads = run(block, x, gy, fast=True)
    assert out.dtype == torch.float32 and out.shape == x.shape
    errors = {'output': max_rel(out, ref_out)}
    errors.update({n: max_rel(g, r) for n, g, r in zip(names(block), grads, ref_grads)})
    bad = {n: e for n, e in errors.items() if not e <= 1e-4}
    assert not bad, f'fp32 errors above 1e-4 (relative to scale): {bad}'


AMP_CASES = [  # dtype, k, N, H, W, C
    ('bf16', 11, 2, 37, 53, 72),
    ('bf16', 7, 1, 37, 53, 64),
    ('fp16', 11, 2, 37, 53, 72),
    ('bf16', 11, 4, 14, 14, 72),  # narrow maps: ConvMod's forward on the tensor cores
    ('fp16', 11, 2, 9, 16, 144),
]
AMP_FLOOR = {'bf16': 2e-2, 'fp16': 3e-3, 'fp32': 1e-5}


@pytest.mark.parametrize('amp,k,N,H,W,C', AMP_CASES, ids=[f'{c[0]}-k{c[1]}-{c[3]}x{c[4]}x{c[5]}' for c in AMP_CASES])
@pytest.mark.gpu
@needs_cuda
def test_autocast_matches_reference(amp, k, N, H, W, C):
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16)[amp]
    block = make_block(C, k, seed=3 * k + C)
    x = torch.randn(N, H, W, C, device='cuda')
    gy = torch.randn(N, H, W, C, device='cuda')
    true_out, true_grads = run(copy.deepcopy(block).double(), x.double(), gy.double(), fast=False)
    ref_out, ref_grads = run(copy.deepcopy(block), x, gy, fast=False, amp=dtype)
    out, grads = run(block, x, gy, fast=True, amp=dtype)
    assert out.dtype == ref_out.dtype
    bad = {}
    for n, a, r, t in zip(['output'] + names(block), [out] + grads, [ref_out] + ref_grads, [true_out] + true_grads):
        e_fast, e_ref = norm_rel(a, t), norm_rel(r, t)
        if not e_fast <= max(2 * e_ref, AMP_FLOOR[amp]):
            bad[n] = (e_fast, e_ref)
    assert not bad, f'{amp}: (fast error, reference autocast error) vs float64: {bad}'


@pytest.mark.gpu
@needs_cuda
def test_drop_path_training_same_masks():
    C, k, N = 72, 11, 6
    block = make_block(C, k, drop_path=0.5, seed=1).train()
    x = torch.randn(N, 19, 23, C, device='cuda')
    gy = torch.randn(N, 19, 23, C, device='cuda')
    torch.manual_seed(123)
    s1, s2 = fb._drop_path_scales(block, x, torch.float32)
    assert (s1 == 0).any() or (s2 == 0).any(), 'the seed should drop at least one sample'
    assert set(torch.cat([s1, s2]).tolist()) <= {0.0, 2.0}
    torch.manual_seed(123)
    ref_out, ref_grads = run(block, x, gy, fast=False)
    torch.manual_seed(123)
    out, grads = run(block, x, gy, fast=True)
    errors = {'output': max_rel(out, ref_out)}
    errors.update({n: max_rel(g, r) for n, g, r in zip(names(block), grads, ref_grads)})
    bad = {n: e for n, e in errors.items() if not e <= 1e-4}
    assert not bad, f'drop path: errors above 1e-4: {bad}'
    # eval mode: no drop path at all
    block.eval()
    with torch.no_grad():
        assert max_rel(block_forward_channels_last(block, x), block(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)) < 1e-4


@pytest.mark.gpu
@needs_cuda
def test_availability_check_leaves_the_rng_alone():
    """The first fast-path call runs a self-test; drawing from the global RNG there would change the drop-path
    masks of a seeded run (and break the recompute of checkpointed blocks)."""
    x = torch.zeros(1, 4, 4, 8, device='cuda')
    torch.manual_seed(3)
    expected = torch.rand(4, device='cuda')
    fb._SELFTEST.clear()
    torch.manual_seed(3)
    assert fast_path_available(x)
    assert torch.equal(torch.rand(4, device='cuda'), expected)


@pytest.mark.gpu
@needs_cuda
def test_activation_checkpoint():
    C, k = 72, 11
    block = make_block(C, k, drop_path=0.3, seed=2).train()
    x = torch.randn(4, 21, 17, C, device='cuda')
    gy = torch.randn_like(x)
    torch.manual_seed(7)
    out, grads = run(block, x, gy, fast=True)
    xc = x.clone().requires_grad_()
    block.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    y = cp.checkpoint(block_forward_channels_last, block, xc, use_reentrant=False)
    y.backward(gy)
    grads_cp = [xc.grad] + [p.grad for _, p in block.named_parameters()]
    assert max_rel(y, out) < 1e-6
    # the column sums are fp32 atomics: their order (and last bits) may differ between the two runs
    bad = {n: max_rel(a, b) for n, a, b in zip(names(block), grads_cp, grads) if not max_rel(a, b) < 1e-5}
    assert not bad, f'checkpointed gradients differ: {bad}'


@pytest.mark.gpu
@needs_cuda
def test_torch_compile_smoke():
    C, k = 64, 7
    b1, b2 = make_block(C, k, seed=4), make_block(C, k, seed=5)

    def two_blocks(x):
        return block_forward_channels_last(b2, block_forward_channels_last(b1, x))

    compiled = torch.compile(two_blocks, fullgraph=True)
    x = torch.randn(2, 13, 29, C, device='cuda')
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    ye = two_blocks(xe)
    ye.sum().backward()
    grads_e = [xe.grad] + [p.grad.clone() for p in list(b1.parameters()) + list(b2.parameters())]
    for p in list(b1.parameters()) + list(b2.parameters()):
        p.grad = None
    yc = compiled(xc)
    yc.sum().backward()
    grads_c = [xc.grad] + [p.grad for p in list(b1.parameters()) + list(b2.parameters())]
    assert max_rel(yc, ye) < 1e-5
    assert max(max_rel(a, b) for a, b in zip(grads_c, grads_e)) < 1e-5


@pytest.mark.parametrize('with_cp', [False, True])
@pytest.mark.gpu
@needs_cuda
def test_backbone_fast_vs_reference(with_cp):
    arch = dict(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128), kernel_size=7)
    torch.manual_seed(0)
    ref = Conv2Former(arch=arch, fast_path=False, with_cp=with_cp).cuda().train()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if 'layer_scale' in name:
                p.uniform_(0.5, 1.5)
    fast = copy.deepcopy(ref)
    fast.fast_path = True
    # the fast path runs the stem and downsampling layers channels-last (no layout copies between the stages)
    stem_bn_layouts = []
    fast.downsample_layers[0][2].register_forward_hook(
        lambda mod, inputs, out: stem_bn_layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last)))
    x = torch.randn(2, 3, 67, 99, device='cuda')
    outs = []
    for model in (ref, fast):
        xi = x.clone().requires_grad_()
        ys = model(xi)
        sum((y * torch.linspace(-1, 1, y.numel(), device='cuda').view_as(y)).sum() for y in ys).backward()
        outs.append((ys, xi.grad, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (ys_r, dx_r, g_r), (ys_f, dx_f, g_f) = outs
    assert stem_bn_layouts == [True]
    # ... but hands standard contiguous NCHW maps to the necks (mmcv's RoIAlign reads raw NCHW memory)
    assert all(y.is_contiguous() for y in ys_f)
    assert all(max_rel(a, b) < 1e-4 for a, b in zip(ys_f, ys_r))
    assert max_rel(dx_f, dx_r) < 1e-4
    assert g_r.keys() == g_f.keys()
    bad = {n: max_rel(g_f[n], g_r[n]) for n in g_r if not max_rel(g_f[n], g_r[n]) < 1e-4}
    assert not bad, bad


@pytest.mark.parametrize('amp', ['fp32', 'bf16', 'fp16'])
@pytest.mark.gpu
@needs_cuda
def test_backbone_autocast_matches_reference(amp):
    """In fp32 and under autocast the fast backbone is as close to float64 as the reference in the same mode and
    returns the reference's dtypes (fp32: autocast runs LayerNorm in fp32): in eager training, with the
    downsampling and output LayerNorms as Triton row kernels (writing the convolution's dtype; what runs in its CUDA
    graphs), forward and every gradient, and in inference."""
    dtype = dict(fp32=None, bf16=torch.bfloat16, fp16=torch.float16)[amp]
    arch = dict(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128), kernel_size=7)
    torch.manual_seed(1)
    # stem BatchNorms in eval mode: with batch statistics their backward cancels most of the input's gradient,
    # leaving rounding noise of any implementation to compare
    ref = Conv2Former(arch=arch, fast_path=False, norm_eval=True).cuda().train()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if 'layer_scale' in name or name.endswith('.bias'):
                p.uniform_(0.5, 1.5)  # nonzero biases and layer scales: their gradients count too
    fast = copy.deepcopy(ref)
    fast.fast_path = True
    x = torch.randn(2, 3, 67, 99, device='cuda')

    def row_norms(model):  # the body as the CUDA graphs run it
        return lambda t: model._forward_body(model._stem(t, True), True, graphed=True)

    def step(model, amp_dtype, forward=None, grad=True):
        xi = x.to(next(model.parameters()).dtype).clone().requires_grad_(grad)
        with torch.autocast('cuda', dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            with torch.set_grad_enabled(grad):
                ys = list((forward or model)(xi))
        if not grad:
            return ys
        sum((y.double() * torch.linspace(-1, 1, y.numel(), device='cuda', dtype=torch.double).view_as(y)).sum()
            for y in ys).backward()
        grads = [xi.grad] + [p.grad for p in model.parameters()]
        model.zero_grad(set_to_none=True)
        return ys + grads

    double = copy.deepcopy(ref).double()
    names = ['output'] * 4 + ['input'] + [n for n, _ in ref.named_parameters()]
    train_true, train_ref = step(double, None), step(ref, dtype)  # both training cases compare against these
    cases = {'eager training': (train_true, train_ref, step(fast, dtype)),
             'row-kernel norms': (train_true, train_ref, step(fast, dtype, row_norms(fast))),
             'inference': (step(double, None, grad=False), step(ref, dtype, grad=False),
                           step(fast, dtype, grad=False))}
    bad = {}
    for case, (true, got_ref, got) in cases.items():
        assert [y.dtype for y in got[:4]] == [y.dtype for y in got_ref[:4]] == [torch.float32] * 4, case
        for n, a, r, t in zip(names, got, got_ref, true):
            e_fast, e_ref = norm_rel(a, t), norm_rel(r, t)
            if not e_fast <= max(2 * e_ref, AMP_FLOOR[amp]):
                bad[f'{case}: {n}'] = (e_fast, e_ref)
    assert not bad, f'{amp}: (fast error, reference autocast error) vs float64: {bad}'


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
@pytest.mark.gpu
@needs_cuda
def test_tensor_core_convmod_forward(dtype, monkeypatch):
    """On maps at most 16 pixels wide (k = 11, bf16/fp16) ConvMod's forward runs on the tensor cores, as close to
    float64 as v3's FMA kernel; anything else keeps v3."""
    from mmconv2former.ops.kernels import dwconv
    assert not dwconv.use_tensor_cores(dwconv.MODE_A_FWD, 11, 14, torch.float32)
    assert not dwconv.use_tensor_cores(dwconv.MODE_A_FWD, 11, 17, dtype)
    assert not dwconv.use_tensor_cores(dwconv.MODE_A_FWD, 7, 14, dtype)
    assert not dwconv.use_tensor_cores(dwconv.MODE_A_BWD, 11, 14, dtype)
    torch.manual_seed(0)
    for N, H, W, C in ((8, 14, 14, 288), (3, 9, 16, 72), (2, 7, 5, 576), (1, 3, 1, 64)):
        assert dwconv.use_tensor_cores(dwconv.MODE_A_FWD, 11, W, dtype)
        av = torch.randn(N * H * W, 2 * C, device='cuda').to(dtype)
        weight = torch.randn(C, 1, 11, 11, device='cuda') / 11
        bias = torch.randn(C, device='cuda')
        g = F.gelu(av[:, :C].double()).view(N, H, W, C).permute(0, 3, 1, 2)
        y = F.conv2d(g, weight.double(), bias.double(), padding=5, groups=C)
        ref = y.permute(0, 2, 3, 1).reshape(-1, C) * av[:, C:].double()
        m, _ = dwconv.convmod_fwd(av, dwconv.conv_weights(weight), bias, (N, H, W))
        with monkeypatch.context() as mp:
            mp.setattr(dwconv, 'use_tensor_cores', lambda *args: False)
            m3, _ = dwconv.convmod_fwd(av, dwconv.conv_weights(weight), bias, (N, H, W))
        err, err_v3 = max_rel(m, ref), max_rel(m3, ref)
        assert m.dtype == dtype and err <= max(2 * err_v3, 5e-3), (N, H, W, C, err, err_v3)


@pytest.fixture
def dw_impl(request):
    """Run a test with the given depthwise-conv implementation (v3: default, v2: the previous kernels)."""
    from mmconv2former.ops.kernels import dwconv
    saved = dict(dwconv.IMPL)
    dwconv.IMPL.update(large=request.param, small=request.param)
    yield request.param
    dwconv.IMPL.update(saved)


@pytest.mark.parametrize('dw_impl', ['v3', 'v2'], indirect=True)
@pytest.mark.gpu
@needs_cuda
def test_standalone_fused_ops(dw_impl):
    N, H, W, C = 2, 23, 31, 48
    av = torch.randn(N, H, W, 2 * C, device='cuda', dtype=torch.float64, requires_grad=True)
    w = torch.randn(C, 1, 11, 11, device='cuda', dtype=torch.float64, requires_grad=True)
    b = torch.randn(C, device='cuda', dtype=torch.float64, requires_grad=True)
    a, v = av.permute(0, 3, 1, 2).chunk(2, 1)
    ref = (F.conv2d(F.gelu(a), w, b, padding=5, groups=C) * v).permute(0, 2, 3, 1)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (av, w, b), g)
    leaves = [t.detach().float().requires_grad_() for t in (av, w, b)]
    out = fb.convmod_dw(*leaves)
    grads = torch.autograd.grad(out, leaves, g.float())
    assert max_rel(out, ref) < 1e-5 and all(max_rel(x, y) < 1e-5 for x, y in zip(grads, ref_grads))

    h0 = torch.randn(N, H, W, 4 * C, device='cuda', dtype=torch.float64, requires_grad=True)
    w = torch.randn(4 * C, 1, 3, 3, device='cuda', dtype=torch.float64, requires_grad=True)
    b = torch.randn(4 * C, device='cuda', dtype=torch.float64, requires_grad=True)
    gg = F.gelu(h0.permute(0, 3, 1, 2))
    ref = (gg + F.gelu(F.conv2d(gg, w, b, padding=1, groups=4 * C))).permute(0, 2, 3, 1)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (h0, w, b), g)
    leaves = [t.detach().float().requires_grad_() for t in (h0, w, b)]
    out = fb.mlp_pos(*leaves)
    grads = torch.autograd.grad(out, leaves, g.float())
    assert max_rel(out, ref) < 1e-5 and all(max_rel(x, y) < 1e-5 for x, y in zip(grads, ref_grads))

    block = make_block(C, 11, seed=9)
    x = torch.randn(N, H, W, C, device='cuda', requires_grad=True)
    ref = block.attn(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    ref_grads = torch.autograd.grad(ref, [x] + list(block.attn.parameters()), g[..., :C])
    out = convmod_forward_channels_last(block.attn, x)
    grads = torch.autograd.grad(out, [x] + list(block.attn.parameters()), g[..., :C].float())
    assert max_rel(out, ref) < 1e-4 and all(max_rel(a, b) < 1e-4 for a, b in zip(grads, ref_grads))


@pytest.mark.gpu
@needs_cuda
def test_saved_activation_memory():
    """What the forward keeps for backward: the fast path keeps well under half of the reference's."""
    C, k = 72, 11
    block = make_block(C, k, seed=6).train()
    x = torch.randn(2, 64, 96, C, device='cuda', requires_grad=True)
    kept = {}
    # one warm-up pass of each path first: the first call compiles kernels and allocates cuBLAS's workspace
    for fast in (False, True, False, True):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        with torch.autocast('cuda', dtype=torch.bfloat16):
            y = block_forward_channels_last(block, x) if fast else block(x.permute(0, 3, 1, 2))
        torch.cuda.synchronize()
        kept[fast] = torch.cuda.memory_allocated() - before
        y.float().sum().backward()
        del y
    assert kept[True] < 0.5 * kept[False], kept


# ---------------------------------------------------------------------------------------------------------------
# cuda_graph=True: inference replayed from CUDA graphs
# ---------------------------------------------------------------------------------------------------------------
def test_cuda_graph_option_checked_and_ignored_on_cpu():
    with pytest.raises(ValueError, match='cuda_graph must be True or False'):
        Conv2Former(arch='nano', cuda_graph='yes')
    model = Conv2Former(arch=dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_size=7), cuda_graph=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ys = model(x)
    model.cuda_graph = False
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(ys, model(x)))
    assert copy.deepcopy(model)._graphs is None  # nothing captured on CPU


def test_cuda_graph_capture_aliases_parameters_and_puts_them_back():
    """While capturing, each parameter is replaced by an alias of the same memory (a graph leaf of its own); the
    real parameters are back afterwards, also when the capture fails."""
    from mmconv2former.ops.cuda_graph import _parameter_aliases, _parameter_slots
    model = Conv2Former(arch=dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_size=7))
    body = [model.stages[0], model.norm0]
    before = [p for m in body for p in m.parameters()]
    slots, buffers = _parameter_slots(body)
    assert len(slots) == len(before) and all(p is q for (_, _, p), q in zip(slots, before)) and buffers == []
    with pytest.raises(RuntimeError, match='capture failed'):
        with _parameter_aliases(slots) as aliases:
            now = [p for m in body for p in m.parameters()]
            assert all(a is n and a is not b for a, n, b in zip(aliases, now, before))
            assert all(a.data_ptr() == b.data_ptr() and a.requires_grad for a, b in zip(aliases, before))
            raise RuntimeError('capture failed')
    assert all(p is q for p, q in zip((p for m in body for p in m.parameters()), before))


def graphed_and_eager(depths=(1, 1, 2, 1), device='cuda', **kwargs):
    """A small seeded Conv2Former with cuda_graph=True (training mode) and an eager copy with the same weights that
    runs the kernels the graphs run (the downsampling and output LayerNorms as Triton row kernels, which eager
    training leaves to PyTorch; test_backbone_autocast_matches_reference checks both against float64)."""
    torch.manual_seed(0)
    model = Conv2Former(arch=dict(depths=depths, dims=(16, 32, 64, 128), kernel_size=7), cuda_graph=True,
                        **kwargs).to(device)
    eager = copy.deepcopy(model)
    eager.cuda_graph = False
    eager._forward_body = functools.partial(Conv2Former._forward_body, eager, graphed=True)
    return model, eager


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_inference():
    model, eager = (m.eval() for m in graphed_and_eager())
    x1, x2 = torch.randn(2, 3, 64, 96, device='cuda'), torch.randn(2, 3, 64, 96, device='cuda')
    with torch.no_grad():
        for amp in (None, torch.bfloat16):
            with torch.autocast('cuda', dtype=amp or torch.bfloat16, enabled=amp is not None):
                ref1, ref2 = eager(x1), eager(x2)
                out1 = model(x1)  # captures
                out2 = model(x2)  # replays
                again = model(x1)
            for a, b in zip(out1 + out2 + again, ref1 + ref2 + ref1):
                assert a.shape == b.shape and a.is_contiguous() and max_rel(a, b) < 1e-5
        graphs = model._graphs
        assert (graphs.captures, graphs.replays) == (2, 4)  # one graph per autocast state
        assert all(max_rel(a, b) < 1e-5 for a, b in zip(out1, ref1))  # outputs are copies, not overwritten
        # in-place weight updates are seen by the next replay; weights in new memory make a new capture
        with torch.no_grad():
            model(x1)  # captured again: the bf16 capture started a pool sized by the first (see shapes_share_memory)
            captures, replays = graphs.captures, graphs.replays
            for m in (model, eager):
                m.stages[0][0].layer_scale_1.mul_(3)
            assert all(max_rel(a, b) < 1e-5 for a, b in zip(model(x1), eager(x1)))
            assert (graphs.captures, graphs.replays) == (captures, replays + 1)
            model.stages[0][0].layer_scale_1.data = model.stages[0][0].layer_scale_1.data.clone()
            assert all(max_rel(a, b) < 1e-5 for a, b in zip(model(x1), eager(x1)))
        assert graphs.captures == captures + 1
        # a new shape is a new graph, and so is the training mode (BatchNorm, drop path)
        with torch.no_grad():
            model(torch.randn(1, 3, 96, 64, device='cuda'))
        assert graphs.captures == captures + 2
        model.train()
        with torch.no_grad():
            model(x1)
        assert graphs.captures == captures + 3
    # shapes that keep changing: the cache turns itself off
    model.eval()
    graphs.max_graphs = 4  # (default 256)
    with torch.no_grad(), pytest.warns(UserWarning, match='shapes keep changing'):
        for i in range(20):
            model(torch.randn(1, 3, 64 + 32 * i, 64, device='cuda'))
    assert not graphs.enabled


def _loss(outs):
    """A loss whose gradient is not the same at every pixel: a uniform one (e.g. a sum or mean of the maps) gives
    the output LayerNorms' inputs a zero gradient, up to rounding noise, and nothing to compare upstream."""
    return sum((o.float().square() * (k + 1)).mean() for k, o in enumerate(outs))


def _train_steps(model, xs, amp=None, steps=3, accumulate=False):
    """Losses and the model after `steps` SGD steps (or one step of gradients accumulated over `xs`)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for i in range(steps):
        if not accumulate or i == 0:
            opt.zero_grad(set_to_none=(i % 2 == 0))
        with torch.autocast('cuda', dtype=amp or torch.bfloat16, enabled=amp is not None):
            outs = model(xs[i % len(xs)])
        loss = _loss(outs)
        loss.backward()
        losses.append(loss.item())
        if not accumulate:
            opt.step()
    return losses


@pytest.mark.parametrize('amp', [None, torch.bfloat16], ids=['fp32', 'bf16'])
@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_training_matches_eager(amp):
    """Training steps replayed from graphs give the losses, weights and BatchNorm statistics of eager steps."""
    model, eager = graphed_and_eager()  # training mode: the stem's BatchNorm updates its statistics
    xs = [torch.randn(2, 3, 64, 96, device='cuda') for _ in range(2)]
    tol = 1e-5 if amp is None else 2e-2
    ref = _train_steps(eager, xs, amp)
    got = _train_steps(model, xs, amp)
    assert max(abs(a - b) / abs(b) for a, b in zip(got, ref)) < tol, (got, ref)
    assert (model._graphs.captures, model._graphs.replays) == (1, 2)
    for (name, a), b in zip(model.state_dict().items(), eager.state_dict().values()):
        if a.is_floating_point():  # parameters and BatchNorm statistics (the capture's warm-up left them alone)
            assert max_rel(a, b) < 10 * tol, name
        else:
            assert torch.equal(a, b), name
    # gradients accumulated over two replays are the sum of both (the graph's gradient buffers are not aliased)
    for m in (model, eager):
        m.zero_grad(set_to_none=True)
    ref = _train_steps(eager, xs, amp, steps=2, accumulate=True)
    got = _train_steps(model, xs, amp, steps=2, accumulate=True)
    for (name, p), q in zip(model.named_parameters(), eager.parameters()):
        assert max_rel(p.grad, q.grad) < 10 * tol, name


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_training_rules():
    model, eager = graphed_and_eager(depths=(1, 1, 1, 1), drop_path_rate=0.5, frozen_stages=1)
    x = torch.randn(2, 3, 64, 64, device='cuda')
    # an input that requires grad gets its gradient; frozen parameters get none
    xg, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    model.eval()
    eager.eval()  # no drop path: comparable
    _loss(model(xg)).backward()
    _loss(eager(xe)).backward()
    assert max_rel(xg.grad, xe.grad) < 1e-5
    assert all(p.grad is None for p in model.stages[0].parameters())
    # drop path draws new masks at each replay
    model.train()
    with torch.no_grad():
        model.stages[1][0].layer_scale_1.fill_(1.0)
    outs = [model(x)[-1].detach() for _ in range(3)]
    assert not torch.equal(outs[1], outs[2])
    # a second backward over the replayed graph (retain_graph) raises instead of returning wrong gradients
    y = model(x)[-1].sum()
    y.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match='one backward per forward'):
        y.backward()
    # with activation checkpointing, training runs eagerly (inference still replays)
    model.with_cp = True
    captures = model._graphs.captures
    sum(o.sum() for o in model(x)).backward()
    assert model._graphs.captures == captures


def _grads(model):
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_forwards_before_backward():
    """While a replayed forward waits for its backward, further forwards run eagerly (the graphs share their
    activations' memory): two forwards and one backward give eager's gradients. A forward whose outputs are dropped
    without a backward does not hold the graphs up."""
    model, eager = graphed_and_eager()
    for m in (model, eager):
        m.eval()  # deterministic; the parameters stay trainable, so the training graphs are used
    xa, xb = torch.randn(2, 3, 64, 96, device='cuda'), torch.randn(1, 3, 96, 64, device='cuda')
    sum(o.sum() for o in model(xa)).backward()  # captures
    graphs = model._graphs
    assert (graphs.captures, graphs.replays) == (1, 0)
    for m in (model, eager):
        m.zero_grad(set_to_none=True)
        loss = _loss(m(xa)) + 2 * _loss(m(xb)) + 3 * _loss(m(xa))
        loss.backward()
    assert (graphs.captures, graphs.replays) == (1, 1)  # the last two forwards ran eagerly
    assert all(max_rel(a, b) < 1e-5 for a, b in zip(_grads(model), _grads(eager)))
    model(xa)  # replayed, never backwarded: dropped at once
    sum(o.sum() for o in model(xb)).backward()
    assert (graphs.captures, graphs.replays) == (2, 2)


def _graph_step(model, x):
    """A training step with every output in the loss; returns the outputs and the gradients."""
    model.zero_grad(set_to_none=True)
    outs = model(x)
    _loss(outs).backward()
    return [o.detach() for o in outs], _grads(model)


def _replays_eager(model, eager, xs):
    for x in xs:
        (outs, grads), (ref_outs, ref_grads) = _graph_step(model, x), _graph_step(eager, x)
        assert all(max_rel(a, b) < 1e-5 for a, b in zip(outs + grads, ref_outs + ref_grads))


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_shapes_share_memory():
    """The graphs of all shapes share one memory pool of one segment: the first capture measures what a shape needs,
    a larger shape starts a new pool sized for it, smaller shapes then fit in it without adding memory, and every
    shape still replays eager's outputs and gradients after all the captures."""
    model, eager = graphed_and_eager(depths=(1, 1, 2, 1))
    shapes = [(2, 3, 192, 256), (2, 3, 256, 384), (2, 3, 192, 384), (1, 3, 256, 320), (2, 3, 224, 256)]
    xs = [torch.randn(s, device='cuda') for s in shapes]
    _graph_step(model, xs[0])
    graphs = model._graphs
    assert graphs.pools == 1 and graphs.seed is None and graphs.outgrown  # measured: the next new shape re-pools
    _graph_step(model, xs[1])
    assert graphs.pools == 2 and graphs.seed is not None and not graphs.outgrown and len(graphs.graphs) == 1
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    size, reserved = graphs.pool_size, torch.cuda.memory_reserved()
    for x in xs[2:] + xs[:1]:
        _graph_step(model, x)
    torch.cuda.empty_cache()
    assert (graphs.pools, graphs.pool_size, len(graphs.graphs), graphs.captures) == (2, size, 5, 6)
    assert torch.cuda.memory_reserved() - reserved <= 0.1 * size, (torch.cuda.memory_reserved() - reserved, size)
    _replays_eager(model, eager, xs[::-1])  # nothing overwritten by the later captures
    assert graphs.replays == len(shapes)


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_pool_outgrown():
    """A pool outgrown by a shape it was sized for makes the next new shape start a larger pool; after three such
    misses (an allocator that will not split the segment) the pool is kept and grows by segments. Every graph
    replays eager's results throughout."""
    model, eager = graphed_and_eager(depths=(1, 1, 1, 1))
    # all different, and needing well over the 20 MiB of the smallest segment the allocator makes for a large block
    xs = [torch.randn(2, 3, 512 + 64 * (i % 3), 768 + 64 * (i // 3), device='cuda') for i in range(6)]
    _replays_eager(model, eager, xs[:1])
    graphs = model._graphs
    assert graphs.outgrown and graphs.bytes_per_numel * xs[0].numel() > 100 * 2 ** 20  # the first capture measured
    graphs.bytes_per_numel /= 100  # far too small: every pool made from it is outgrown
    for i, x in enumerate(xs[1:5], 1):
        _replays_eager(model, eager, [x])
        assert graphs.pools == min(i, 3) + 1
    assert not graphs.outgrown and len(graphs.graphs) == 2  # the last pool kept its two shapes
    _replays_eager(model, eager, xs[3:5] + xs[5:])
    assert (graphs.pools, graphs.captures, graphs.replays) == (4, 6, 2)
    with pytest.raises(ValueError, match='headroom must be >= 1'):
        type(graphs)(headroom=0.9)


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_memory_freed_with_the_model():
    """A graphed model that is deleted gives back its graphs' pool, static buffers and parameters at once: nothing in
    the cache refers back to it (such a cycle kept them until Python's cycle collector happened to run)."""
    import gc
    import weakref

    def pool_bytes(pool):  # all of the pool's segments (this small model's activations are in small ones)
        return sum(seg['total_size'] for seg in torch.cuda.memory_snapshot()
                   if tuple(seg.get('segment_pool_id', ())) == tuple(pool))

    model, _ = graphed_and_eager(depths=(1, 1, 1, 1))
    x = torch.randn(2, 3, 128, 192, device='cuda')
    _graph_step(model, x)  # a training capture
    with torch.no_grad():
        model.eval()(x)  # and an inference one
    graphs = weakref.ref(model._graphs)
    pool = graphs().pool
    held = [weakref.ref(t) for t in [*graphs().arenas.values(), *model.parameters()]]
    assert graphs().captures == 2 and pool_bytes(pool) > 0 and len(held) > 4
    gc.disable()
    try:
        del model
        assert graphs() is None and not any(ref() is not None for ref in held)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        assert pool_bytes(pool) == 0
    finally:
        gc.enable()


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_training_under_ddp():
    """Under DistributedDataParallel (one process) the replayed backward's gradients reach DDP through the autograd
    engine's gradient hooks: DDP would raise at the next forward if a parameter's gradient had bypassed them."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    model, eager = graphed_and_eager()
    xs = [torch.randn(2, 3, 64, 96, device='cuda') for _ in range(2)]
    dist.init_process_group('nccl', store=dist.HashStore(), rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(model, device_ids=[torch.cuda.current_device()])
        got = _train_steps(ddp, xs, steps=4)
    finally:
        dist.destroy_process_group()
    ref = _train_steps(eager, xs, steps=4)
    assert max(abs(a - b) / abs(b) for a, b in zip(got, ref)) < 1e-5, (got, ref)
    assert (model._graphs.captures, model._graphs.replays) == (1, 3)


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_capture_failure_falls_back_to_eager():
    """Something that cannot be captured (here a host sync) turns the graphs off with a warning; the call and the
    following ones run eagerly and give the eager result."""
    from mmconv2former.ops.cuda_graph import ShapeGraphs
    lin = torch.nn.Linear(8, 8).cuda()
    syncs = []

    def fn(t):
        y = lin(t)
        syncs.append(float(y.sum()))  # .item()-like host sync: not allowed while capturing
        return (y,)

    graphs = ShapeGraphs(owner='test')
    x = torch.randn(4, 8, device='cuda')
    with pytest.warns(UserWarning, match='capturing a CUDA graph failed'):
        (y,) = graphs.run(fn, x, [lin])
    assert not graphs.enabled and torch.allclose(y, lin(x))
    (y,) = graphs.run(fn, x, [lin])  # eager from now on; the device still works
    assert torch.allclose(y, lin(x))
