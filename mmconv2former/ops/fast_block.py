"""Fused channels-last forward/backward of the Conv2Former block on CUDA (Triton), and the public entry points.

`block_forward_channels_last(block, x)` computes exactly `Block.forward` (on an (N, H, W, C) tensor) with the
block's own parameters: same state-dict keys, no new parameters, drop path included in training mode (per-sample,
like timm's DropPath, drawing the same random numbers in the same order). Layout of one block (M = N*H*W rows of C
channels; `cd` is the compute dtype: the autocast dtype, else the input dtype):

    xn1, stats1 = LN1(x)                         Triton row kernel
    av = xn1 @ [Wa; Wv]^T + [ba; bv]              one GEMM (M, 2C)
    m  = (DWConv_k(GELU(a)) + b) * v              Triton (a)
    r1 = m @ (ls1*Wp)^T + ls1*bp                  GEMM, layer scale folded into the weight
    x1, xn2, stats2 = x + s1[n]*r1, LN2(x1)       Triton row kernel (residual + LN fused)
    h0 = xn2 @ W1^T + b1                          GEMM (M, 4C)
    h  = GELU(h0) + GELU(DWConv_3(GELU(h0)) + b)  Triton (b)
    r2 = h @ (ls2*W2)^T + ls2*b2                  GEMM
    out = x1 + s2[n]*r2                           Triton row kernel

Saved for backward: x, av, x1, h0, xn1, xn2, GELU(a) (in the conv's blocked layout) and the LayerNorm statistics,
22 bytes per pixel-channel with bf16 compute (the reference keeps about 80). The backward recomputes m, GELU(h0) and h
instead of saving them (kept tensors cost memory, recomputing costs launches: each launch costs 10-25 us of host
time, which bounds eager steps), and gets the layer-scale gradients without the branch outputs: with G = D^T m (D the
masked residual gradient), dWp = ls1 * G, dls1 = rowsum(Wp * G) + bp * colsum(D).

The block runs as one `torch.library` custom op (`mmconv2former::block_fwd`, backward `mmconv2former::block_bwd`),
so torch.compile keeps it as a single opaque node, and activation checkpointing reruns it like any op.
"""
import os
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .kernels import HAS_TRITON

if HAS_TRITON:
    from .kernels import dwconv as _dw
    from .kernels import layernorm as _ln
    from .kernels import weights as _wt

_DISABLED = os.environ.get('MMCONV2FORMER_FAST_PATH', '1').lower() in ('0', 'false', 'off', 'no')
_SELFTEST = {}

# ---------------------------------------------------------------------------------------------------------------
# The block, as two plain functions (forward, backward) on channels-last tensors.
# ---------------------------------------------------------------------------------------------------------------
# params: ln1_w, ln1_b, wa, ba, wdw, bdw, wv, bv, wp, bp, ls1, ln2_w, ln2_b, w1, b1, wpos, bpos, w2, b2, ls2
NUM_PARAMS = 20


def _block_params(block: nn.Module) -> List[Tensor]:
    a, m = block.attn, block.mlp
    return [a.norm.weight, a.norm.bias, a.att[0].weight, a.att[0].bias, a.att[2].weight, a.att[2].bias,
            a.v.weight, a.v.bias, a.proj.weight, a.proj.bias, block.layer_scale_1,
            m.norm.weight, m.norm.bias, m.fc1.weight, m.fc1.bias, m.pos.weight, m.pos.bias,
            m.fc2.weight, m.fc2.bias, block.layer_scale_2]


# the backward's one zero-initialised fp32 buffer of packed gradients: names, in order
_GRAD_NAMES = ('ln1_w', 'ln1_b', 'ba', 'wdw', 'bdw', 'bv', 'wp', 'bp', 'ls1', 'ln2_w', 'ln2_b', 'b1', 'wpos', 'bpos',
               'w2', 'b2', 'ls2', 'sum_d1', 'sum_d2')
_G = {name: i for i, name in enumerate(_GRAD_NAMES)}
_LAYOUTS = {}


def _grad_sizes(C: int, K: int):
    """Sizes of the packed gradients (in `_GRAD_NAMES` order) and their total."""
    key = (C, K)
    if key not in _LAYOUTS:
        C4 = 4 * C
        sizes = dict(ln1_w=C, ln1_b=C, ba=C, wdw=C * K * K, bdw=C, bv=C, wp=C * C, bp=C, ls1=C, ln2_w=C, ln2_b=C,
                     b1=C4, wpos=C4 * 9, bpos=C4, w2=C * C4, b2=C, ls2=C, sum_d1=C, sum_d2=C)
        sizes = [sizes[n] for n in _GRAD_NAMES]
        _LAYOUTS[key] = (sizes, sum(sizes))
    return _LAYOUTS[key]


_MM_OUT_DTYPE = hasattr(torch.ops.aten.mm, 'dtype')  # torch.mm(..., out_dtype=) on CUDA (torch >= 2.8)


def _mm_f32(a: Tensor, b: Tensor) -> Tensor:
    """a @ b as fp32: half-precision inputs accumulate straight into an fp32 output (no bf16 rounding, no cast
    launch) where torch supports it."""
    if a.dtype == torch.float32:
        return torch.mm(a, b)
    if _MM_OUT_DTYPE and a.is_cuda:
        return torch.mm(a, b, out_dtype=torch.float32)
    return torch.mm(a, b).float()


def _block_fwd_impl(x: Tensor, p: List[Tensor], s1: Optional[Tensor], s2: Optional[Tensor], eps1: float,
                    eps2: float, cd: torch.dtype, for_backward: bool = True):
    """Returns (out, av, x1, h0, xn1, xn2, ga, stats, wbuf, wbuf32): the output and what the backward needs (xn1,
    xn2, ga = the blocked GELU(a) and stats are None unless `for_backward`)."""
    (ln1_w, ln1_b, wa, ba, wdw, bdw, wv, bv, wp, bp, ls1, ln2_w, ln2_b, w1, b1, wpos, bpos, w2, b2, ls2) = p
    N, H, W, C = x.shape
    M, HW = N * H * W, H * W
    od = torch.promote_types(x.dtype, ls1.dtype)
    with torch.autocast(device_type=x.device.type, enabled=False):
        # all derived weights (compute-dtype matrices with the layer scales folded in, fp32 depthwise taps) in one
        # launch; the backward reuses them
        wbuf, wbuf32 = _wt.prepare_block_weights(p, cd)
        wav, bav, wps, bps, w1c, b1c, w2s, b2s, wt_dw, wt_pos, bdw32, bpos32 = _wt.unpack_block_weights(
            wbuf, wbuf32, C, wdw.shape[-1])
        x2d = x.view(M, C)
        # the LayerNorm outputs and statistics are kept for the backward (cheaper than two recomputing launches)
        stats = x.new_empty((4, M), dtype=torch.float32) if for_backward else None
        mean1, rstd1, mean2, rstd2 = stats.unbind(0) if for_backward else (None,) * 4
        xn1, _, _ = _ln.layer_norm(x2d, ln1_w, ln1_b, eps1, cd, mean=mean1, rstd=rstd1)
        av = F.linear(xn1, wav, bav)
        m, ga = _dw.convmod_fwd(av, wt_dw, bdw32, (N, H, W))
        ga = ga if for_backward else None
        r1 = F.linear(m, wps, bps)
        del m
        x1, xn2, _, _ = _ln.layer_norm(x2d, ln2_w, ln2_b, eps2, cd, res=r1, scale=s1, hw=HW, res_out_dtype=od,
                                       mean=mean2, rstd=rstd2)
        del r1
        h0 = F.linear(xn2, w1c, b1c)
        if not for_backward:
            xn1 = xn2 = None
        h = _dw.mlp_pos_fwd(h0, wt_pos, bpos32, (N, H, W))
        r2 = F.linear(h, w2s, b2s)
        del h
        out = _ln.residual_add(x1, r2, s2, HW, od)
    return out.view(N, H, W, C), av, x1, h0, xn1, xn2, ga, stats, wbuf, wbuf32


def _block_bwd_impl(gout: Tensor, x: Tensor, av: Tensor, x1: Tensor, h0: Tensor, xn1: Tensor, xn2: Tensor,
                    ga: Tensor, stats: Tensor, wbuf: Tensor, wbuf32: Tensor, p: List[Tensor], s1: Optional[Tensor],
                    s2: Optional[Tensor], cd: torch.dtype) -> List[Tensor]:
    """Returns [dx, packed fp32 gradients (see `_grad_sizes`), d[Wa; Wv] (2C, C), dW1 (4C, C)]."""
    (ln1_w, ln1_b, wa, ba, wdw, bdw, wv, bv, wp, bp, ls1, ln2_w, ln2_b, w1, b1, wpos, bpos, w2, b2, ls2) = p
    N, H, W, C = x.shape
    K = wdw.shape[-1]
    M, HW = N * H * W, H * W
    shape = (N, H, W)
    sizes, total = _grad_sizes(C, K)
    flat = torch.zeros(total, device=x.device, dtype=torch.float32)
    gr = flat.split(sizes)
    G = _G
    mean1, rstd1, mean2, rstd2 = stats.unbind(0)
    wav, _, wps, _, w1c, _, w2s, _, wt_dw, wt_pos, bdw32, bpos32 = _wt.unpack_block_weights(wbuf, wbuf32, C, K)
    with torch.autocast(device_type=x.device.type, enabled=False):
        g2 = gout.reshape(M, C)
        if not g2.is_contiguous():
            g2 = g2.contiguous()
        # ---- MLP branch: out = x1 + s2 * (h @ (ls2 W2)^T + ls2 b2)
        d2 = _ln.scale_cast(g2, s2, HW, cd, gr[G['sum_d2']])
        dh = torch.mm(d2, w2s)
        h, dh0 = _dw.mlp_pos_bwd(h0, dh, wt_pos, bpos32, shape, gr[G['wpos']], gr[G['bpos']], gr[G['b1']])
        del dh
        gm2 = torch.mm(d2.t(), h)
        del h, d2
        dxn2 = torch.mm(dh0, w1c)
        dw1 = _mm_f32(dh0.t(), xn2)
        del dh0, xn2
        dx1, d1 = _ln.layer_norm_bwd(x1, mean2, rstd2, ln2_w, dxn2, gr[G['ln2_w']], gr[G['ln2_b']], dres=g2,
                                     dx_dtype=torch.float32, scale=s1, hw=HW, ds_dtype=cd,
                                     ds_colsum=gr[G['sum_d1']])
        del dxn2
        # ---- ConvMod branch: x1 = x + s1 * (m @ (ls1 Wp)^T + ls1 bp)
        dm = torch.mm(d1, wps)
        m, dav = _dw.convmod_bwd(av, dm, wt_dw, bdw32, shape, gr[G['wdw']], gr[G['bdw']], gr[G['ba']], gr[G['bv']],
                                 g=ga)
        del ga
        del dm
        gm1 = torch.mm(d1.t(), m)
        del m, d1
        # both layer-scaled 1x1 convs' gradients in one launch
        _ln.layer_scale_grads2(gm1, wp, bp, ls1, gr[G['sum_d1']], gr[G['wp']], gr[G['bp']], gr[G['ls1']],
                               gm2, w2, b2, ls2, gr[G['sum_d2']], gr[G['w2']], gr[G['b2']], gr[G['ls2']])
        del gm1, gm2
        dxn1 = torch.mm(dav, wav)
        x2d = x.reshape(M, C)
        dwav = _mm_f32(dav.t(), xn1)
        del dav, xn1
        dx = _ln.layer_norm_bwd(x2d, mean1, rstd1, ln1_w, dxn1, gr[G['ln1_w']], gr[G['ln1_b']], dres=dx1,
                                dx_dtype=x.dtype)
    return [dx.view(N, H, W, C), flat, dwav, dw1]


def _unpack_grads(flat: Tensor, dwav: Tensor, dw1: Tensor, p: List[Tensor]) -> List[Tensor]:
    """The 20 parameter gradients (views of the backward's buffers), in `_block_params` order."""
    wa, wdw = p[2], p[4]
    C, K = wa.shape[0], wdw.shape[-1]
    gr = flat.split(_grad_sizes(C, K)[0])
    G = _G
    grads = [gr[G['ln1_w']], gr[G['ln1_b']], dwav[:C], gr[G['ba']], gr[G['wdw']], gr[G['bdw']], dwav[C:],
             gr[G['bv']], gr[G['wp']], gr[G['bp']], gr[G['ls1']], gr[G['ln2_w']], gr[G['ln2_b']], dw1, gr[G['b1']],
             gr[G['wpos']], gr[G['bpos']], gr[G['w2']], gr[G['b2']], gr[G['ls2']]]
    out = []
    for g, t in zip(grads, p):
        if g.dim() != t.dim():
            g = g.view(t.shape)
        if t.dtype != torch.float32:
            g = g.to(t.dtype)
        out.append(g)
    return out


# ---------------------------------------------------------------------------------------------------------------
# torch.library custom ops (opaque to torch.compile) with hand-written autograd; in eager mode the same two
# functions run through a plain autograd.Function, whose dispatch costs far less host time per call.
# ---------------------------------------------------------------------------------------------------------------
_HAS_CUSTOM_OP = hasattr(torch.library, 'custom_op') and hasattr(torch.library, 'register_autograd')


def _fwd_outputs_like(x: Tensor, ls1: Tensor, wdw: Tensor, cd: torch.dtype):
    N, H, W, C = x.shape
    M, K = N * H * W, wdw.shape[-1]
    BL = _dw.block_width(C, K)
    od = torch.promote_types(x.dtype, ls1.dtype)
    f32 = torch.float32
    return (x.new_empty((N, H, W, C), dtype=od), x.new_empty((M, 2 * C), dtype=cd), x.new_empty((M, C), dtype=od),
            x.new_empty((M, 4 * C), dtype=cd), x.new_empty((M, C), dtype=cd), x.new_empty((M, C), dtype=cd),
            x.new_empty((C // BL, M, BL), dtype=cd), x.new_empty((4, M), dtype=f32),
            x.new_empty((11 * C * C + 8 * C,), dtype=cd), x.new_empty(((K * K + 41) * C,), dtype=f32))


_FWD_RETURNS = Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


class _BlockFunction(torch.autograd.Function):
    """Eager-mode autograd of the fused block (the custom op below is used under torch.compile)."""

    @staticmethod
    def forward(ctx, x, *args):
        params = list(args[:NUM_PARAMS])
        s1, s2, eps1, eps2, cd = args[NUM_PARAMS:]
        out = _block_fwd_impl(x.contiguous(), params, s1, s2, eps1, eps2, cd)
        ctx.save_for_backward(x, *out[1:], s1, s2, *params)
        ctx.cd = cd
        return out[0]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        x, av, x1, h0, xn1, xn2, ga, stats, wbuf, wbuf32, s1, s2, *params = ctx.saved_tensors
        dx, flat, dwav, dw1 = _block_bwd_impl(gout, x, av, x1, h0, xn1, xn2, ga, stats, wbuf, wbuf32, params, s1, s2,
                                              ctx.cd)
        return (dx, *_unpack_grads(flat, dwav, dw1, params)) + (None,) * 5


if _HAS_CUSTOM_OP:

    @torch.library.custom_op('mmconv2former::block_fwd', mutates_args=())
    def _block_fwd_op(x: Tensor, ln1_w: Tensor, ln1_b: Tensor, wa: Tensor, ba: Tensor, wdw: Tensor, bdw: Tensor,
                      wv: Tensor, bv: Tensor, wp: Tensor, bp: Tensor, ls1: Tensor, ln2_w: Tensor, ln2_b: Tensor,
                      w1: Tensor, b1: Tensor, wpos: Tensor, bpos: Tensor, w2: Tensor, b2: Tensor, ls2: Tensor,
                      s1: Optional[Tensor], s2: Optional[Tensor], eps1: float, eps2: float,
                      compute_dtype: torch.dtype) -> _FWD_RETURNS:
        params = [ln1_w, ln1_b, wa, ba, wdw, bdw, wv, bv, wp, bp, ls1, ln2_w, ln2_b, w1, b1, wpos, bpos, w2, b2, ls2]
        return _block_fwd_impl(x.contiguous(), params, s1, s2, eps1, eps2, compute_dtype)

    @_block_fwd_op.register_fake
    def _(x, ln1_w, ln1_b, wa, ba, wdw, bdw, wv, bv, wp, bp, ls1, ln2_w, ln2_b, w1, b1, wpos, bpos, w2, b2, ls2,
          s1, s2, eps1, eps2, compute_dtype):
        return _fwd_outputs_like(x, ls1, wdw, compute_dtype)

    @torch.library.custom_op('mmconv2former::block_bwd', mutates_args=())
    def _block_bwd_op(gout: Tensor, x: Tensor, av: Tensor, x1: Tensor, h0: Tensor, xn1: Tensor, xn2: Tensor,
                      ga: Tensor, stats: Tensor, wbuf: Tensor, wbuf32: Tensor, params: List[Tensor],
                      s1: Optional[Tensor], s2: Optional[Tensor], compute_dtype: torch.dtype) -> List[Tensor]:
        return _block_bwd_impl(gout, x, av, x1, h0, xn1, xn2, ga, stats, wbuf, wbuf32, params, s1, s2, compute_dtype)

    @_block_bwd_op.register_fake
    def _(gout, x, av, x1, h0, xn1, xn2, ga, stats, wbuf, wbuf32, params, s1, s2, compute_dtype):
        C, K = x.shape[-1], params[4].shape[-1]
        total = _grad_sizes(C, K)[1]
        f32 = torch.float32
        return [torch.empty_like(x), x.new_empty((total,), dtype=f32), x.new_empty((2 * C, C), dtype=f32),
                x.new_empty((4 * C, C), dtype=f32)]

    def _block_setup_context(ctx, inputs, output):
        x = inputs[0]
        params = list(inputs[1:1 + NUM_PARAMS])
        s1, s2, _, _, cd = inputs[1 + NUM_PARAMS:]
        ctx.save_for_backward(x, *output[1:], s1, s2, *params)
        ctx.cd = cd

    def _block_backward(ctx, gout, *unused):
        x, av, x1, h0, xn1, xn2, ga, stats, wbuf, wbuf32, s1, s2, *params = ctx.saved_tensors
        if gout is None:
            return (None,) * (1 + NUM_PARAMS + 5)
        dx, flat, dwav, dw1 = torch.ops.mmconv2former.block_bwd(gout, x, av, x1, h0, xn1, xn2, ga, stats, wbuf,
                                                                wbuf32, params, s1, s2, ctx.cd)
        return (dx, *_unpack_grads(flat, dwav, dw1, params)) + (None,) * 5

    torch.library.register_autograd('mmconv2former::block_fwd', _block_backward, setup_context=_block_setup_context)

    # (a) alone: m = (DWConv_k(GELU(a)) + b) * v on av = [a | v] of shape (N, H, W, 2C)
    @torch.library.custom_op('mmconv2former::convmod_dw', mutates_args=())
    def convmod_dw(av: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        """Fused GELU -> depthwise k x k (+ bias) -> multiply by v, on channels-last `av = [a | v]` (N, H, W, 2C)."""
        N, H, W, C2 = av.shape
        return _dw.convmod_fwd(av.contiguous().view(-1, C2), _dw.conv_weights(weight), bias.detach().float(),
                               (N, H, W))[0].view(N, H, W, C2 // 2)

    @convmod_dw.register_fake
    def _(av, weight, bias):
        return av.new_empty(av.shape[:-1] + (av.shape[-1] // 2,))

    @torch.library.custom_op('mmconv2former::convmod_dw_bwd', mutates_args=())
    def _convmod_dw_bwd(av: Tensor, dm: Tensor, weight: Tensor, bias: Tensor) -> List[Tensor]:
        N, H, W, C2 = av.shape
        C = C2 // 2
        acc = av.new_zeros((C * weight[0].numel() + 3 * C,), dtype=torch.float32)
        dw, db, sum_da, sum_dv = acc.split([C * weight[0].numel(), C, C, C])
        _, dav = _dw.convmod_bwd(av.contiguous().view(-1, C2), dm.contiguous().view(-1, C), _dw.conv_weights(weight),
                                 bias.detach().float(), (N, H, W), dw, db, sum_da, sum_dv)
        return [dav.view(av.shape), dw.view(weight.shape).to(weight.dtype), db.to(bias.dtype).clone()]

    @_convmod_dw_bwd.register_fake
    def _(av, dm, weight, bias):
        return [torch.empty_like(av), torch.empty_like(weight), torch.empty_like(bias)]

    def _convmod_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _convmod_backward(ctx, dm):
        av, weight, bias = ctx.saved_tensors
        return tuple(torch.ops.mmconv2former.convmod_dw_bwd(av, dm, weight, bias))

    torch.library.register_autograd('mmconv2former::convmod_dw', _convmod_backward, setup_context=_convmod_setup)

    # (b) alone: h = g + GELU(DWConv_3(g) + b), g = GELU(h0), on channels-last h0 (N, H, W, 4C)
    @torch.library.custom_op('mmconv2former::mlp_pos', mutates_args=())
    def mlp_pos(h0: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        """Fused g = GELU(h0); g + GELU(depthwise 3x3(g) + bias), on channels-last h0 (N, H, W, 4C)."""
        N, H, W, C4 = h0.shape
        return _dw.mlp_pos_fwd(h0.contiguous().view(-1, C4), _dw.conv_weights(weight), bias.detach().float(),
                               (N, H, W)).view(h0.shape)

    @mlp_pos.register_fake
    def _(h0, weight, bias):
        return torch.empty_like(h0)

    @torch.library.custom_op('mmconv2former::mlp_pos_bwd', mutates_args=())
    def _mlp_pos_bwd(h0: Tensor, dh: Tensor, weight: Tensor, bias: Tensor) -> List[Tensor]:
        N, H, W, C4 = h0.shape
        acc = h0.new_zeros((C4 * weight[0].numel() + 2 * C4,), dtype=torch.float32)
        dw, db, sum_dh0 = acc.split([C4 * weight[0].numel(), C4, C4])
        _, dh0 = _dw.mlp_pos_bwd(h0.contiguous().view(-1, C4), dh.contiguous().view(-1, C4), _dw.conv_weights(weight),
                                 bias.detach().float(), (N, H, W), dw, db, sum_dh0)
        return [dh0.view(h0.shape), dw.view(weight.shape).to(weight.dtype), db.to(bias.dtype).clone()]

    @_mlp_pos_bwd.register_fake
    def _(h0, dh, weight, bias):
        return [torch.empty_like(h0), torch.empty_like(weight), torch.empty_like(bias)]

    def _mlp_pos_backward(ctx, dh):
        h0, weight, bias = ctx.saved_tensors
        return tuple(torch.ops.mmconv2former.mlp_pos_bwd(h0, dh, weight, bias))

    torch.library.register_autograd('mmconv2former::mlp_pos', _mlp_pos_backward, setup_context=_convmod_setup)

else:  # pragma: no cover - torch < 2.4: no custom ops; the eager autograd.Function only

    convmod_dw = None
    mlp_pos = None


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------
def _selftest(device: torch.device) -> bool:
    try:
        x = torch.linspace(-4, 4, 128, device=device).view(8, 16)  # not torch.randn: leaves the global RNG alone
        y = _dw.gelu_blocked(x, 16, 8)  # (2, 8, 8): channel blocks of 8
        ok = bool(torch.allclose(y.permute(1, 0, 2).reshape(8, 16), F.gelu(x), atol=1e-5, rtol=1e-5))
    except Exception as exc:  # pragma: no cover - depends on the machine
        import warnings
        warnings.warn(f'mmconv2former: Triton kernels do not run on {device} ({exc!r}); using the reference path.',
                      stacklevel=3)
        ok = False
    return ok


def fast_path_available(x: Tensor) -> bool:
    """True when `x` is a CUDA tensor and the Triton kernels import and run on its device."""
    if not isinstance(x, Tensor) or not x.is_cuda or not HAS_TRITON or _DISABLED:
        return False
    if torch.compiler.is_compiling():
        return True
    index = x.device.index if x.device.index is not None else torch.cuda.current_device()
    if index not in _SELFTEST:
        _SELFTEST[index] = _selftest(torch.device('cuda', index))
    return _SELFTEST[index]


try:  # torch >= 2.4 takes the device type
    torch.is_autocast_enabled('cuda')
    _AUTOCAST_BY_DEVICE = True
except TypeError:  # pragma: no cover
    _AUTOCAST_BY_DEVICE = False


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype the block's matrix products run in: the autocast dtype when autocast is on, else x's dtype."""
    if _AUTOCAST_BY_DEVICE:
        if torch.is_autocast_enabled(x.device.type):
            return torch.get_autocast_dtype(x.device.type)
        return x.dtype
    if torch.is_autocast_enabled():  # pragma: no cover - torch < 2.4, CUDA autocast
        return torch.get_autocast_gpu_dtype()
    return x.dtype  # pragma: no cover


def _drop_path_scales(block: nn.Module, x: Tensor, cd: torch.dtype):
    """Per-sample multipliers (N,) of the two drop-path calls, drawn like timm's DropPath (or None)."""
    dp = getattr(block, 'drop_path', None)
    prob = float(getattr(dp, 'drop_prob', 0.0) or 0.0)
    if dp is None or isinstance(dp, nn.Identity) or not dp.training or prob <= 0.0:
        return None, None
    keep = 1.0 - prob
    scale_by_keep = getattr(dp, 'scale_by_keep', True)
    dtype = torch.promote_types(cd, block.layer_scale_1.dtype)  # the dtype of the branch timm multiplies
    scales = []
    for _ in range(2):
        s = x.new_empty((x.shape[0], 1, 1, 1), dtype=dtype).bernoulli_(keep)
        if keep > 0.0 and scale_by_keep:
            s.div_(keep)
        scales.append(s.view(-1).float())
    return scales[0], scales[1]


def block_forward_channels_last(block: nn.Module, x: Tensor) -> Tensor:
    """`block.forward` on a channels-last (N, H, W, C) tensor; returns (N, H, W, C).

    Uses the fused Triton path when `fast_path_available(x)`, else the module itself (reference path).
    """
    if not fast_path_available(x):
        return block(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()
    x = x.contiguous()
    cd = compute_dtype(x)
    s1, s2 = _drop_path_scales(block, x, cd)
    params = _block_params(block)
    eps1, eps2 = float(block.attn.norm.eps), float(block.mlp.norm.eps)
    if _HAS_CUSTOM_OP and torch.compiler.is_compiling():
        return torch.ops.mmconv2former.block_fwd(x, *params, s1, s2, eps1, eps2, cd)[0]
    if not torch.is_grad_enabled():  # inference: the forward alone, nothing kept for a backward
        return _block_fwd_impl(x, params, s1, s2, eps1, eps2, cd, for_backward=False)[0]
    return _BlockFunction.apply(x, *params, s1, s2, eps1, eps2, cd)


class _LayerNormFunction(torch.autograd.Function):
    """LayerNorm of contiguous (M, C) rows with the Triton row kernels."""

    @staticmethod
    def forward(ctx, x2d, weight, bias, eps, out_dtype):
        y, mean, rstd = _ln.layer_norm(x2d, weight, bias, eps, out_dtype)
        ctx.save_for_backward(x2d, mean, rstd, weight)
        ctx.bias_dtype = bias.dtype
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        x2d, mean, rstd, weight = ctx.saved_tensors
        dweight, dbias = x2d.new_zeros((2, x2d.shape[1]), dtype=torch.float32)
        dx = _ln.layer_norm_bwd(x2d, mean, rstd, weight, dy.contiguous(), dweight, dbias)
        return dx, dweight.to(weight.dtype), dbias.to(ctx.bias_dtype), None, None


def layer_norm_channels_last(norm: nn.LayerNorm, x: Tensor, out_dtype: torch.dtype) -> Tensor:
    """`norm` over the channels of an (N, C, H, W) map stored channels-last, as one Triton launch each way (PyTorch's
    kernel runs a thread block per pixel of a few dozen channels, and under autocast writes fp32 that the next
    convolution casts again); returns an (N, C, H, W) map stored channels-last, in `out_dtype`. F.layer_norm under
    torch.compile. Less GPU time (ImageNet inference of Conv2Former-T: 1.5 ms less), more host time with autograd
    (H200 machine, 8x8 map: 846 us per forward+backward against 320 us for PyTorch's; most of the difference goes
    with the autograd engine's handoff to its CUDA thread, see `SingleThreadBackwardHook`)."""
    N, C, H, W = x.shape
    rows = x.permute(0, 2, 3, 1).contiguous()  # a view when x is channels-last
    if torch.compiler.is_compiling():
        y = F.layer_norm(rows, (C,), norm.weight, norm.bias, norm.eps).to(out_dtype)
    elif torch.is_grad_enabled() and (rows.requires_grad or norm.weight.requires_grad or norm.bias.requires_grad):
        y = _LayerNormFunction.apply(rows.view(-1, C), norm.weight, norm.bias, float(norm.eps), out_dtype)
    else:
        y = _ln.layer_norm(rows.view(-1, C), norm.weight, norm.bias, float(norm.eps), out_dtype)[0]
    return y.view(N, H, W, C).permute(0, 3, 1, 2)


def convmod_forward_channels_last(attn: nn.Module, x: Tensor) -> Tensor:
    """ConvMod (`block.attn`) on a channels-last tensor with the fused kernel (a) and PyTorch LayerNorm / GEMMs."""
    C = x.shape[-1]
    xn = F.layer_norm(x, (C,), attn.norm.weight, attn.norm.bias, attn.norm.eps)
    w = torch.cat([attn.att[0].weight.reshape(C, C), attn.v.weight.reshape(C, C)])
    av = F.linear(xn, w, torch.cat([attn.att[0].bias, attn.v.bias]))
    m = convmod_dw(av, attn.att[2].weight, attn.att[2].bias)
    return F.linear(m, attn.proj.weight.reshape(C, C), attn.proj.bias)
