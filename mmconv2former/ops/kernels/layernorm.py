"""Triton row kernels of the Conv2Former block on (M, C) channels-last rows: LayerNorm (optionally fused with the
layer-scaled, drop-path-masked residual add that precedes it), the residual add alone, its LayerNorm backward
(optionally producing the masked, cast gradient of the next residual branch) and the masked cast of an incoming
gradient. `scale` is the per-sample drop-path multiplier (N,) or None; the sample of row r is r // HW.
Column sums (LayerNorm weight/bias gradients, bias gradients of the 1x1 convs) are added with fp32 atomics into
zeroed buffers the caller provides. `_lsgrad2_kernel` turns G = D^T m into the gradients of the block's two 1x1 convs
whose weight and bias were scaled by a layer scale.
"""
import functools

import torch

from .launch import HAS_TRITON, FastLauncher, cdiv, next_power_of_2, tl, triton

if HAS_TRITON:

    @triton.jit(do_not_specialize=['M', 'HW', 'eps'])
    def _ln_fwd_kernel(X, R, S, XO, Y, MEAN, RSTD, LW, LB, M, HW, eps,
                       C: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_M: tl.constexpr,
                       HAS_RES: tl.constexpr, HAS_SCALE: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.arange(0, BLOCK_C)
        rmask = rows < M
        cmask = cols < C
        msk = rmask[:, None] & cmask[None, :]
        off = rows.to(tl.int64)[:, None] * C + cols[None, :]
        x = tl.load(X + off, mask=msk, other=0.0).to(tl.float32)
        if HAS_RES:
            r = tl.load(R + off, mask=msk, other=0.0).to(tl.float32)
            if HAS_SCALE:
                s = tl.load(S + rows // HW, mask=rmask, other=0.0)
                r = r * s[:, None]
            x = (x + r).to(XO.dtype.element_ty)
            tl.store(XO + off, x, mask=msk)
            x = x.to(tl.float32)
        mean = tl.sum(x, axis=1) / C
        xc = tl.where(msk, x - mean[:, None], 0.0)
        var = tl.sum(xc * xc, axis=1) / C
        rstd = 1.0 / tl.sqrt(var + eps)
        lw = tl.load(LW + cols, mask=cmask, other=0.0).to(tl.float32)
        lb = tl.load(LB + cols, mask=cmask, other=0.0).to(tl.float32)
        y = xc * rstd[:, None] * lw[None, :] + lb[None, :]
        tl.store(Y + off, y.to(Y.dtype.element_ty), mask=msk)
        tl.store(MEAN + rows, mean, mask=rmask)
        tl.store(RSTD + rows, rstd, mask=rmask)

    @triton.jit(do_not_specialize=['M', 'HW'])
    def _residual_kernel(X, R, S, OUT, M, HW, C: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_M: tl.constexpr,
                         HAS_SCALE: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.arange(0, BLOCK_C)
        rmask = rows < M
        msk = rmask[:, None] & (cols < C)[None, :]
        off = rows.to(tl.int64)[:, None] * C + cols[None, :]
        x = tl.load(X + off, mask=msk, other=0.0).to(tl.float32)
        r = tl.load(R + off, mask=msk, other=0.0).to(tl.float32)
        if HAS_SCALE:
            s = tl.load(S + rows // HW, mask=rmask, other=0.0)
            r = r * s[:, None]
        tl.store(OUT + off, (x + r).to(OUT.dtype.element_ty), mask=msk)

    @triton.jit(do_not_specialize=['M', 'HW'])
    def _scale_cast_kernel(G, S, OUT, PART, M, HW, C: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_M: tl.constexpr,
                           HAS_SCALE: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.arange(0, BLOCK_C)
        rmask = rows < M
        cmask = cols < C
        msk = rmask[:, None] & cmask[None, :]
        off = rows.to(tl.int64)[:, None] * C + cols[None, :]
        g = tl.load(G + off, mask=msk, other=0.0).to(tl.float32)
        if HAS_SCALE:
            s = tl.load(S + rows // HW, mask=rmask, other=0.0)
            g = g * s[:, None]
        tl.store(OUT + off, g.to(OUT.dtype.element_ty), mask=msk)
        tl.atomic_add(PART + cols, tl.sum(g, axis=0), mask=cmask)

    @triton.jit(do_not_specialize=['M', 'HW'])
    def _ln_bwd_kernel(X, MEAN, RSTD, LW, DY, DRES, DX, S, DS, PW, PB, PS, M, HW,
                       C: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_M: tl.constexpr,
                       HAS_DRES: tl.constexpr, STORE_DS: tl.constexpr, HAS_SCALE: tl.constexpr):
        pid = tl.program_id(0)
        rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.arange(0, BLOCK_C)
        rmask = rows < M
        cmask = cols < C
        msk = rmask[:, None] & cmask[None, :]
        off = rows.to(tl.int64)[:, None] * C + cols[None, :]
        x = tl.load(X + off, mask=msk, other=0.0).to(tl.float32)
        dy = tl.load(DY + off, mask=msk, other=0.0).to(tl.float32)
        mean = tl.load(MEAN + rows, mask=rmask, other=0.0)
        rstd = tl.load(RSTD + rows, mask=rmask, other=0.0)
        lw = tl.load(LW + cols, mask=cmask, other=0.0).to(tl.float32)
        xhat = tl.where(msk, (x - mean[:, None]) * rstd[:, None], 0.0)
        wdy = dy * lw[None, :]
        c1 = tl.sum(xhat * wdy, axis=1) / C
        c2 = tl.sum(wdy, axis=1) / C
        dx = (wdy - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
        if HAS_DRES:
            dx += tl.load(DRES + off, mask=msk, other=0.0).to(tl.float32)
        dx = tl.where(msk, dx, 0.0)
        tl.store(DX + off, dx.to(DX.dtype.element_ty), mask=msk)
        tl.atomic_add(PW + cols, tl.sum(dy * xhat, axis=0), mask=cmask)
        tl.atomic_add(PB + cols, tl.sum(dy, axis=0), mask=cmask)
        if STORE_DS:
            d = dx
            if HAS_SCALE:
                s = tl.load(S + rows // HW, mask=rmask, other=0.0)
                d = d * s[:, None]
            tl.store(DS + off, d.to(DS.dtype.element_ty), mask=msk)
            tl.atomic_add(PS + cols, tl.sum(d, axis=0), mask=cmask)

    @triton.jit(do_not_specialize=['C'])
    def _lsgrad2_kernel(G1, W1, B1, LS1, SUMD1, DW1, DB1, DLS1, G2, W2, B2, LS2, SUMD2, DW2, DB2, DLS2, C,
                        BLOCK_K: tl.constexpr):
        """Gradients of the block's two layer-scaled 1x1 convs in one launch: rows 0..C-1 of (G1: (C, C)), then rows
        of (G2: (C, 4C)); see `_lsgrad_row`."""
        pid = tl.program_id(0)
        if pid < C:
            _lsgrad_row(G1, W1, B1, LS1, SUMD1, DW1, DB1, DLS1, pid, C, BLOCK_K)
        else:
            _lsgrad_row(G2, W2, B2, LS2, SUMD2, DW2, DB2, DLS2, pid - C, 4 * C, BLOCK_K)

    @triton.jit
    def _lsgrad_row(G, W, B, LS, SUMD, DW, DB, DLS, c, K, BLOCK_K: tl.constexpr):
        """Row c of a 1x1 conv r = m @ (ls W)^T + ls b: from G = D^T m and SUMD = colsum(D), dW = ls * G,
        db = ls * SUMD, dls = sum_k W * G + b * SUMD."""
        k = tl.arange(0, BLOCK_K)
        kmask = k < K
        off = c.to(tl.int64) * K + k
        g = tl.load(G + off, mask=kmask, other=0.0).to(tl.float32)
        w = tl.load(W + off, mask=kmask, other=0.0).to(tl.float32)
        ls = tl.load(LS + c).to(tl.float32)
        sd = tl.load(SUMD + c)
        tl.store(DW + off, ls * g, mask=kmask)
        tl.store(DB + c, ls * sd)
        tl.store(DLS + c, tl.sum(w * g, axis=0) + tl.load(B + c).to(tl.float32) * sd)

    _lsgrad2 = FastLauncher(_lsgrad2_kernel)
    _ln_fwd = FastLauncher(_ln_fwd_kernel)
    _residual = FastLauncher(_residual_kernel)
    _scale_cast = FastLauncher(_scale_cast_kernel)
    _ln_bwd = FastLauncher(_ln_bwd_kernel)


@functools.cache
def _row_blocks(C: int):
    block_c = next_power_of_2(C)
    block_m = max(1, min(64, 4096 // block_c))
    warps = 4 if block_c * block_m <= 4096 else 8
    return block_c, block_m, warps


def layer_norm(x: torch.Tensor, weight, bias, eps: float, out_dtype, res=None, scale=None, hw: int = 1,
               res_out_dtype=None, mean=None, rstd=None):
    """LayerNorm over the last dim of contiguous (M, C) rows, in fp32, output `out_dtype`.

    With `res`: first x <- x + scale[n] * res (stored, dtype `res_out_dtype`) and normalise that.
    `mean`, `rstd`: fp32 (M,) buffers for the row statistics (allocated when not given).
    Returns (y, mean, rstd) or (x_new, y, mean, rstd) with `res`.
    """
    M, C = x.shape
    block_c, block_m, warps = _row_blocks(C)
    y = torch.empty((M, C), device=x.device, dtype=out_dtype)
    if mean is None:
        mean, rstd = torch.empty((2, M), device=x.device, dtype=torch.float32).unbind(0)
    xo = torch.empty((M, C), device=x.device, dtype=res_out_dtype or x.dtype) if res is not None else y
    if M:
        _ln_fwd[(cdiv(M, block_m),)](x, res if res is not None else x, scale if scale is not None else mean,
                                     xo, y, mean, rstd, weight, bias, M, hw, eps, C, block_c, block_m,
                                     res is not None, scale is not None, num_warps=warps)
    if res is not None:
        return xo, y, mean, rstd
    return y, mean, rstd


def residual_add(x: torch.Tensor, r: torch.Tensor, scale, hw: int, out_dtype) -> torch.Tensor:
    M, C = x.shape
    block_c, block_m, warps = _row_blocks(C)
    out = torch.empty((M, C), device=x.device, dtype=out_dtype)
    if M:
        _residual[(cdiv(M, block_m),)](x, r, scale if scale is not None else x, out, M, hw, C, block_c,
                                       block_m, scale is not None, num_warps=warps)
    return out


def scale_cast(g: torch.Tensor, scale, hw: int, out_dtype, colsum: torch.Tensor) -> torch.Tensor:
    """(g * scale[n]) cast to out_dtype; its column sum is added to the fp32 buffer `colsum`."""
    M, C = g.shape
    block_c, block_m, warps = _row_blocks(C)
    out = torch.empty((M, C), device=g.device, dtype=out_dtype)
    if M:
        _scale_cast[(cdiv(M, block_m),)](g, scale if scale is not None else colsum, out, colsum, M, hw, C,
                                         block_c, block_m, scale is not None, num_warps=warps)
    return out


def layer_norm_bwd(x, mean, rstd, weight, dy, dweight, dbias, dres=None, dx_dtype=None, scale=None, hw: int = 1,
                   ds_dtype=None, ds_colsum=None):
    """LayerNorm backward on (M, C) rows: returns dx (+ dres); adds the weight / bias gradients into the fp32
    buffers `dweight`, `dbias`. With `ds_dtype`, also returns ds = dx * scale[n] cast to ds_dtype (the gradient of
    the residual branch that produced x) and adds its column sum into `ds_colsum`."""
    M, C = x.shape
    block_c, block_m, warps = _row_blocks(C)
    dx = torch.empty((M, C), device=x.device, dtype=dx_dtype or x.dtype)
    store_ds = ds_dtype is not None
    ds = torch.empty((M, C), device=x.device, dtype=ds_dtype) if store_ds else dx
    if M:
        _ln_bwd[(cdiv(M, block_m),)](x, mean, rstd, weight, dy, dres if dres is not None else dy, dx,
                                     scale if scale is not None else mean, ds, dweight, dbias,
                                     ds_colsum if store_ds else dweight, M, hw, C, block_c, block_m,
                                     dres is not None, store_ds, scale is not None, num_warps=warps)
    return (dx, ds) if store_ds else dx


def layer_scale_grads2(gm1, w1, b1, ls1, sum_d1, dw1, db1, dls1, gm2, w2, b2, ls2, sum_d2, dw2, db2, dls2):
    """Gradients of the block's two layer-scaled 1x1 convs r = m @ (ls W)^T + ls b from G = D^T m (G1: (C, C),
    G2: (C, 4C)) and colsum(D), in one launch: writes dW (C*K), db (C), dls (C) into fp32 buffers."""
    C = gm1.shape[0]
    _lsgrad2[(2 * C,)](gm1, w1, b1, ls1, sum_d1, dw1, db1, dls1, gm2, w2, b2, ls2, sum_d2, dw2, db2, dls2, C,
                       next_power_of_2(4 * C), num_warps=4)
