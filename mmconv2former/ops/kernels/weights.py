"""One Triton launch that prepares all the derived weights of a Conv2Former block for its fused forward.

From the block's 20 parameters it writes two packed buffers (views of them are handed to the GEMMs and kernels):

    wbuf (compute dtype): [Wa; Wv] (2C, C) | ls1*Wp (C, C) | W1 (4C, C) | ls2*W2 (C, 4C) |
                          [ba; bv] (2C) | ls1*bp (C) | b1 (4C) | ls2*b2 (C)
    wbuf32 (fp32):        k x k taps (k*k, C) | 3 x 3 taps (9, 4C) | b_dw (C) | b_pos (4C)

Products are formed in fp32 and rounded once to the compute dtype, as `(ls[:, None] * w).to(dtype)` does for fp32
parameters. This replaces about fifteen small PyTorch ops (casts, concatenations, scalings, transposes) per block
forward with one launch.
"""
import torch

from .launch import HAS_TRITON, FastLauncher, tl, triton

if HAS_TRITON:

    @triton.jit
    def _ld(P, idx, m):
        return tl.load(P + idx, mask=m, other=0.0).to(tl.float32)

    @triton.jit
    def _prep_kernel(WA, WV, WP, W1, W2, LS1, LS2, BA, BV, BP, B1, B2, WDW, BDW, WPOS, BPOS, OUT, OUT32,
                     C: tl.constexpr, K: tl.constexpr, BLOCK: tl.constexpr):
        seg = tl.program_id(1)
        e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        CC: tl.constexpr = C * C
        KK: tl.constexpr = K * K
        if seg == 0:  # [Wa; Wv]
            m = e < 2 * CC
            lo = e < CC
            x = tl.where(lo, _ld(WA, e, m & lo), _ld(WV, e - CC, m & (e >= CC)))
            tl.store(OUT + e, x.to(OUT.dtype.element_ty), mask=m)
        elif seg == 1:  # ls1[:, None] * Wp
            m = e < CC
            x = _ld(WP, e, m) * _ld(LS1, e // C, m)
            tl.store(OUT + 2 * CC + e, x.to(OUT.dtype.element_ty), mask=m)
        elif seg == 2:  # W1
            m = e < 4 * CC
            tl.store(OUT + 3 * CC + e, _ld(W1, e, m).to(OUT.dtype.element_ty), mask=m)
        elif seg == 3:  # ls2[:, None] * W2
            m = e < 4 * CC
            x = _ld(W2, e, m) * _ld(LS2, e // (4 * C), m)
            tl.store(OUT + 7 * CC + e, x.to(OUT.dtype.element_ty), mask=m)
        elif seg == 4:  # [ba; bv] | ls1*bp | b1 | ls2*b2
            m = e < 8 * C
            s0 = e < C
            s1 = (e >= C) & (e < 2 * C)
            s2 = (e >= 2 * C) & (e < 3 * C)
            s3 = (e >= 3 * C) & (e < 7 * C)
            s4 = (e >= 7 * C) & m
            x = tl.where(s0, _ld(BA, e, s0), 0.0)
            x = tl.where(s1, _ld(BV, e - C, s1), x)
            x = tl.where(s2, _ld(BP, e - 2 * C, s2) * _ld(LS1, e - 2 * C, s2), x)
            x = tl.where(s3, _ld(B1, e - 3 * C, s3), x)
            x = tl.where(s4, _ld(B2, e - 7 * C, s4) * _ld(LS2, e - 7 * C, s4), x)
            tl.store(OUT + 11 * CC + e, x.to(OUT.dtype.element_ty), mask=m)
        elif seg == 5:  # k x k taps: OUT32[t * C + c] = wdw[c, t]
            m = e < KK * C
            tl.store(OUT32 + e, _ld(WDW, (e % C) * KK + e // C, m), mask=m)
        elif seg == 6:  # 3 x 3 taps: OUT32[KK*C + t * 4C + c] = wpos[c, t]
            m = e < 36 * C
            tl.store(OUT32 + KK * C + e, _ld(WPOS, (e % (4 * C)) * 9 + e // (4 * C), m), mask=m)
        else:  # fp32 biases of the two depthwise convs
            m = e < 5 * C
            lo = e < C
            x = tl.where(lo, _ld(BDW, e, m & lo), _ld(BPOS, e - C, m & (e >= C)))
            tl.store(OUT32 + (KK + 36) * C + e, x, mask=m)

    _prep = FastLauncher(_prep_kernel)

_BLOCK = 1024


def prepare_block_weights(p, dtype: torch.dtype):
    """The packed (wbuf, wbuf32) of a block's parameter list `p` (see the module docstring) for compute `dtype`."""
    wa = p[2]
    C, K = wa.shape[0], p[4].shape[-1]
    wbuf = torch.empty(11 * C * C + 8 * C, device=wa.device, dtype=dtype)
    wbuf32 = torch.empty((K * K + 41) * C, device=wa.device, dtype=torch.float32)
    (ln1_w, ln1_b, wa, ba, wdw, bdw, wv, bv, wp, bp, ls1, ln2_w, ln2_b, w1, b1, wpos, bpos, w2, b2, ls2) = [
        t if t.is_contiguous() else t.contiguous() for t in p]
    grid = (-(-max(4 * C * C, K * K * C) // _BLOCK), 8)
    _prep[grid](wa, wv, wp, w1, w2, ls1, ls2, ba, bv, bp, b1, b2, wdw, bdw, wpos, bpos, wbuf, wbuf32, C, K, _BLOCK,
                num_warps=4)
    return wbuf, wbuf32


def unpack_block_weights(wbuf: torch.Tensor, wbuf32: torch.Tensor, C: int, K: int):
    """Views (wav, bav, wps, bps, w1c, b1c, w2s, b2s, taps_dw, taps_pos, bdw32, bpos32) of the packed buffers."""
    CC = C * C
    wav, wps, w1c, w2s, bav, bps, b1c, b2s = wbuf.split([2 * CC, CC, 4 * CC, 4 * CC, 2 * C, C, 4 * C, C])
    taps_dw, taps_pos, bdw32, bpos32 = wbuf32.split([K * K * C, 36 * C, C, 4 * C])
    return (wav.view(2 * C, C), bav, wps.view(C, C), bps, w1c.view(4 * C, C), b1c, w2s.view(C, 4 * C), b2s,
            taps_dw.view(K * K, C), taps_pos.view(9, 4 * C), bdw32, bpos32)
