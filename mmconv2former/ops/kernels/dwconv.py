"""Triton kernels for the two fused depthwise parts of the Conv2Former block, on channels-last (NHWC) maps.

(a) ConvMod:  m = (DWConv_k(GELU(a)) + b) * v          (k = 7 or 11; a, v are the two halves of `av`)
(b) MLP:      h = g + GELU(DWConv_3(g) + b),  g = GELU(h0)

Rows are pixels p = (n*H + y)*W + x of C channels. The input of every depthwise conv (GELU(a), GELU(h0), and in the
backward the gradients dy, ds) is written once, by the kernel before it, in a channel-blocked layout
(C/BL, M, BL): the BL channels one program works on are contiguous for all pixels, so the k*k taps of a tile hit
L1 (with row-major (M, C) rows, one program would use 16 of each 128-byte line). Everything computes in fp32 and
stores in the tensors' dtype.

The backward recomputes the conv output from the saved pre-GELU input instead of saving it:
- ConvMod, given dm:  y = conv(g) + b  ->  m = y*v, dv = dm*y, dy = dm*v          (`_dwconv_kernel` MODE 1)
                      da = conv_flipped(dy) * GELU'(a)                             (MODE 2)
                      dW[c, i, j] = sum_p g[p + (i-P, j-P), c] * dy[p, c]         (`_dw_wgrad_kernel`)
- MLP, given dh:      s = conv(g) + b  ->  h = g + GELU(s), ds = dh*GELU'(s)        (MODE 4)
                      dh0 = (dh + conv_flipped(ds)) * GELU'(h0)                    (MODE 5)
                      dW from (g, ds) as above.
Bias gradients (column sums) and weight gradients are accumulated with fp32 atomics into zeroed buffers.

Two implementations of the convolutions (`IMPL`, per kernel size class 'large' (k > 3) and 'small' (k = 3); the
environment variable `MMCONV2FORMER_DW_IMPL` overrides it, e.g. `v2`, `v3` or `large=v3,small=v2`):
- v2 (`_dwconv_kernel`, `_dw_wgrad_kernel`): a 2D pixel tile per program, one masked L1 load per pixel and tap.
- v3 (`_dwc_kernel`, `_dwc_wgrad_kernel`): register row reuse. A program owns TH output rows x TW pixels x BC
  channels (TW / (32 * num_warps) pixels' BC channels per thread, TH accumulators per pixel; `V3_TILES` sets TH,
  TW and the warps per kernel and size class). For each kernel column j it loads the TH + k - 1 input rows shifted
  by j once each and adds every loaded row into all the output rows it touches (up to k of them), so an input
  value is loaded (TH + k - 1) / TH times per kernel column instead of k times; the k taps of column j are loaded
  once per program. The weight gradient does the same with the roles of the accumulators swapped (one kernel
  column j per program, k accumulators, a reduction over the pixels at the end; or all k columns, k*k
  accumulators). Programs walk the channel blocks fastest, so the row-major (M, C) rows read and written by the
  epilogues are used whole while in L2. The flipped taps of the transposed convolution are indexed in the kernel.
- v3 runs the MLP's forward (MODE 3) on row-major GELU(h0) (`rows_forward`, tile `V3_TILES['conv_rows']`): the 3x3
  conv is memory-bound, and with up to 64 channels per program its loads and stores are whole cache lines, where
  4-channel blocks made them 8 bytes per thread (H200, bf16, GELU + conv of 128x56x56x288: 542 instead of 694 us). The
  backward keeps the blocked layout (its weight gradient needs the blocked GELU(h0) anyway).
- v3 sends ConvMod's forward (MODE 0) on maps at most 16 pixels wide, k = 11, bf16/fp16, to the tensor cores
  (`_dwc_tc_kernel`): there most of v3's 32-pixel rows would be masked. Per channel and kernel row i, a tile of
  TC_TH output rows x TC_TW columns is `A_i @ T_i`, A_i the input rows shifted by i (TC_KW columns: TC_TW + k - 1
  needed), T_i the (TC_KW, TC_TW) Toeplitz matrix of row i's taps in the compute dtype (`_toeplitz_kernel`); the BC
  channels of the blocked layout are the batch of a 3D dot, fp32 accumulation. H200, bf16 (docs/performance.md):
  128x14x14x288 in 141 instead of 254 us; on wider maps v3 is faster (2x200x336x72: 151 vs 315 us).
"""
import functools
import os

import torch
import torch.nn.functional as F

from .launch import HAS_TRITON, FastLauncher, cdiv, next_power_of_2, tl, triton

MODE_A_FWD, MODE_A_BWD, MODE_A_DGRAD, MODE_B_FWD, MODE_B_BWD, MODE_B_DGRAD = range(6)

if HAS_TRITON:

    @triton.jit
    def _gelu(x):
        return 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))

    @triton.jit
    def _gelu_grad(x):
        cdf = 0.5 * (1.0 + tl.math.erf(x * 0.7071067811865476))
        return cdf + x * tl.exp(-0.5 * x * x) * 0.3989422804014327

    @triton.jit(do_not_specialize=['s_x', 'M'])
    def _gelu_blocked_kernel(X, s_x, Y, M, C: tl.constexpr, BM: tl.constexpr, BCOL: tl.constexpr,
                             BL: tl.constexpr, VEC: tl.constexpr):
        """Y (C/BL, M, BL) = GELU(X[:, :C]) for row-major X of row stride s_x; a program reads BCOL columns of BM
        rows (whole 32-byte sectors) and writes them into their BCOL / BL channel blocks."""
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        cols = tl.program_id(1) * BCOL + tl.arange(0, BCOL)
        msk = (rows < M)[:, None] & (cols < C)[None, :]
        r64 = rows.to(tl.int64)
        x = tl.load(X + tl.multiple_of(r64 * s_x, VEC)[:, None] + cols[None, :], mask=msk, other=0.0)
        y = _gelu(x.to(tl.float32))
        off = (cols // BL).to(tl.int64)[None, :] * M * BL + (r64 * BL)[:, None] + (cols % BL)[None, :]
        tl.store(Y + off, y.to(Y.dtype.element_ty), mask=msk)

    @triton.jit(do_not_specialize=['s_x1', 's_x2', 's_o1', 's_o2', 's_o3', 'M', 'H', 'W', 'C', 'tiles_w',
                                   'tiles_img'])
    def _dwconv_kernel(IN, WT, BIAS,
                       X1, s_x1, X2, s_x2,
                       O1, s_o1, O2, s_o2, O3, s_o3,
                       P1, P2,
                       M, H, W, C, tiles_w, tiles_img,
                       MODE: tl.constexpr, K: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr,
                       BC: tl.constexpr, VEC: tl.constexpr):
        """Depthwise KxK conv of the channel-blocked IN (C/BC, M, BC) over a TH x TW pixel tile and BC channels, then
        the epilogue of MODE. X*/O* are row-major (M, C) views with row strides s_*, except the blocked dy (MODE 1,
        O3) and ds (MODE 4, O2). P1/P2 receive column sums (atomic adds)."""
        BP: tl.constexpr = TH * TW
        PAD: tl.constexpr = K // 2
        pid = tl.program_id(0)
        pid_c = tl.program_id(1)
        n = pid // tiles_img
        t = pid % tiles_img
        idx = tl.arange(0, BP)
        h = (t // tiles_w) * TH + idx // TW
        w = (t % tiles_w) * TW + idx % TW
        lane = tl.arange(0, BC)
        c = pid_c * BC + lane
        blk = pid_c.to(tl.int64) * M * BC
        pok = (h < H) & (w < W)

        acc = tl.zeros([BP, BC], dtype=tl.float32)
        for i in range(K):
            hh = h + (i - PAD)
            rok = pok & (hh >= 0) & (hh < H)
            rbase = blk + (n * H + hh).to(tl.int64) * W * BC
            for j in tl.static_range(K):
                ww = w + (j - PAD)
                ok = rok & (ww >= 0) & (ww < W)
                off = tl.multiple_of(rbase + ww * BC, BC)
                xv = tl.load(IN + off[:, None] + lane[None, :], mask=ok[:, None], other=0.0)
                wv = tl.load(WT + (i * K + j) * C + c)
                acc += xv.to(tl.float32) * wv[None, :]

        pix = (n * H + h).to(tl.int64) * W + w
        bpix = tl.multiple_of(blk + pix * BC, BC)[:, None] + lane[None, :]
        m2 = pok[:, None]
        if MODE == 0:  # ConvMod forward: O1 = m = (conv + b) * v, X1 = v
            y = acc + tl.load(BIAS + c)[None, :]
            v = tl.load(X1 + tl.multiple_of(pix * s_x1, VEC)[:, None] + c[None, :], mask=m2, other=0.0)
            out = y * v.to(tl.float32)
            tl.store(O1 + tl.multiple_of(pix * s_o1, VEC)[:, None] + c[None, :], out.to(O1.dtype.element_ty), mask=m2)
        elif MODE == 1:  # ConvMod backward 1: X1 = v, X2 = dm; O1 = m, O2 = dv, O3 = dy (blocked); P1 += dy, P2 += dv
            y = acc + tl.load(BIAS + c)[None, :]
            v = tl.load(X1 + tl.multiple_of(pix * s_x1, VEC)[:, None] + c[None, :], mask=m2, other=0.0)
            dm = tl.load(X2 + tl.multiple_of(pix * s_x2, VEC)[:, None] + c[None, :], mask=m2, other=0.0)
            v = v.to(tl.float32)
            dm = dm.to(tl.float32)
            dv = tl.where(m2, dm * y, 0.0)
            dy = dm * v
            tl.store(O1 + tl.multiple_of(pix * s_o1, VEC)[:, None] + c[None, :], (y * v).to(O1.dtype.element_ty),
                     mask=m2)
            tl.store(O2 + tl.multiple_of(pix * s_o2, VEC)[:, None] + c[None, :], dv.to(O2.dtype.element_ty), mask=m2)
            tl.store(O3 + bpix, dy.to(O3.dtype.element_ty), mask=m2)
            tl.atomic_add(P1 + c, tl.sum(dy, axis=0))
            tl.atomic_add(P2 + c, tl.sum(dv, axis=0))
        elif MODE == 2:  # ConvMod backward 2 (IN = dy, flipped weights): X1 = a; O1 = da; P1 += da
            a = tl.load(X1 + tl.multiple_of(pix * s_x1, VEC)[:, None] + c[None, :], mask=m2, other=0.0)
            da = acc * _gelu_grad(a.to(tl.float32))
            tl.store(O1 + tl.multiple_of(pix * s_o1, VEC)[:, None] + c[None, :], da.to(O1.dtype.element_ty), mask=m2)
            tl.atomic_add(P1 + c, tl.sum(da, axis=0))
        elif MODE == 3:  # MLP forward: O1 = h = g + GELU(conv(g) + b), IN = g
            s = acc + tl.load(BIAS + c)[None, :]
            g = tl.load(IN + bpix, mask=m2, other=0.0)
            out = g.to(tl.float32) + _gelu(s)
            tl.store(O1 + tl.multiple_of(pix * s_o1, VEC)[:, None] + c[None, :], out.to(O1.dtype.element_ty), mask=m2)
        elif MODE == 4:  # MLP backward 1: X1 = dh; O1 = h, O2 = ds (blocked); P1 += ds
            s = acc + tl.load(BIAS + c)[None, :]
            g = tl.load(IN + bpix, mask=m2, other=0.0)
            dh = tl.load(X1 + tl.multiple_of(pix * s_x1, VEC)[:, None] + c[None, :], mask=m2, other=0.0)
            out = g.to(tl.float32) + _gelu(s)
            ds = dh.to(tl.float32) * _gelu_grad(s)
            tl.store(O1 + tl.multiple_of(pix * s_o1, VEC)[:, None] + c[None, :], out.to(O1.dtype.element_ty), mask=m2)
            tl.store(O2 + bpix, ds.to(O2.dtype.element_ty), mask=m2)
            tl.atomic_add(P1 + c, tl.sum(ds, axis=0))
        else:  # MODE 5, MLP backward 2 (IN = ds, flipped weights): X1 = dh, X2 = h0; O1 = dh0; P1 += dh0
            dh = tl.load(X1 + tl.multiple_of(pix * s_x1, VEC)[:, None] + c[None, :], mask=m2, other=0.0)
            h0 = tl.load(X2 + tl.multiple_of(pix * s_x2, VEC)[:, None] + c[None, :], mask=m2, other=0.0)
            dh0 = (dh.to(tl.float32) + acc) * _gelu_grad(h0.to(tl.float32))
            tl.store(O1 + tl.multiple_of(pix * s_o1, VEC)[:, None] + c[None, :], dh0.to(O1.dtype.element_ty), mask=m2)
            tl.atomic_add(P1 + c, tl.sum(dh0, axis=0))

    @triton.jit(do_not_specialize=['M', 'H', 'W', 'C', 'tiles_w', 'tiles_img', 'n_tiles', 'tiles_per_prog'])
    def _dw_wgrad_kernel(G, DY, DW, M, H, W, C, tiles_w, tiles_img, n_tiles, tiles_per_prog,
                         K: tl.constexpr, KP: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr,
                         BL: tl.constexpr, BCW: tl.constexpr):
        """DW[c, i, j] += sum over the tiles of split s of g[p + (i - P, j - P), c] * dy[p, c], g and dy blocked
        (C/BL, M, BL). One kernel row i per program (grid: K x C/BCW x splits), its K taps held in a
        [pixels, KP, BCW] accumulator."""
        BP: tl.constexpr = TH * TW
        PAD: tl.constexpr = K // 2
        i = tl.program_id(0)
        pid_c = tl.program_id(1)
        pid_s = tl.program_id(2)
        c = pid_c * BCW + tl.arange(0, BCW)
        blk = ((pid_c * BCW) // BL).to(tl.int64) * M * BL
        lane = (pid_c * BCW) % BL + tl.arange(0, BCW)
        j = tl.arange(0, KP)
        idx = tl.arange(0, BP)
        acc = tl.zeros([BP, KP, BCW], dtype=tl.float32)
        t_start = pid_s * tiles_per_prog
        t_end = tl.minimum(t_start + tiles_per_prog, n_tiles)
        for tt in range(t_start, t_end):
            n = tt // tiles_img
            t = tt % tiles_img
            h = (t // tiles_w) * TH + idx // TW
            w = (t % tiles_w) * TW + idx % TW
            pok = (h < H) & (w < W)
            pix = (n * H + h).to(tl.int64) * W + w
            dy = tl.load(DY + tl.multiple_of(blk + pix * BL, BL)[:, None] + lane[None, :], mask=pok[:, None],
                         other=0.0)
            hh = h + (i - PAD)
            rok = pok & (hh >= 0) & (hh < H)
            ww = w[:, None] + j[None, :] - PAD
            ok = rok[:, None] & (ww >= 0) & (ww < W) & (j[None, :] < K)
            off = tl.multiple_of((blk + (n * H + hh).to(tl.int64) * W * BL)[:, None] + ww * BL, (BL, BL))
            gv = tl.load(G + off[:, :, None] + lane[None, None, :], mask=ok[:, :, None], other=0.0)
            acc += gv.to(tl.float32) * dy.to(tl.float32)[:, None, :]
        part = tl.sum(acc, axis=0)
        tl.atomic_add(DW + c[None, :] * (K * K) + i * K + j[:, None], part, mask=(j[:, None] < K))

    @triton.jit
    def _tset(t, i: tl.constexpr, v):
        """The tuple t with element i replaced by v (register accumulators indexed at compile time)."""
        return t[:i] + (v,) + t[i + 1:]

    @triton.jit
    def _program_tile(n_cb, tiles_w, tiles_h):
        """(channel block, tile column, tile row, image) of this program; channel blocks vary fastest, so the
        row-major (M, C) rows the epilogues read and write are used whole while in L2."""
        pid = tl.program_id(0)
        t = pid // n_cb
        return pid % n_cb, t % tiles_w, (t // tiles_w) % tiles_h, t // tiles_w // tiles_h

    @triton.jit
    def _tap(i, j, K: tl.constexpr, FLIP: tl.constexpr):
        if FLIP:
            return (K - 1 - i) * K + (K - 1 - j)
        else:
            return i * K + j

    @triton.jit(do_not_specialize=['s_x1', 's_x2', 's_o1', 's_o2', 'M', 'H', 'W', 'C', 'tiles_w', 'tiles_h', 'n_cb'])
    def _dwc_kernel(IN, WT, BIAS,
                    X1, s_x1, X2, s_x2,
                    O1, s_o1, O2, s_o2, O3,
                    P1, P2,
                    M, H, W, C, tiles_w, tiles_h, n_cb,
                    MODE: tl.constexpr, K: tl.constexpr, FLIP: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr,
                    UNROLL: tl.constexpr, BC: tl.constexpr, VEC: tl.constexpr, IN_PX: tl.constexpr):
        """v3 depthwise KxK conv of the channel-blocked IN (C/BC, M, BC) for TH output rows x TW pixels x BC
        channels, then the epilogue of MODE (same modes and operands as `_dwconv_kernel`; the blocked outputs are
        O3 in MODE 1 and O2 in MODE 4). FLIP: use the taps of the transposed convolution. UNROLL: unroll the loop
        over the kernel columns at compile time. IN_PX: IN's pixel stride, BC for the blocked layout, C for row-major
        (M, C) rows (MODE 3 only, with a wide BC)."""
        PAD: tl.constexpr = K // 2
        pid_c, tx, ty, n = _program_tile(n_cb, tiles_w, tiles_h)
        y0 = ty * TH
        xs = tx * TW + tl.arange(0, TW)
        lane = tl.arange(0, BC)
        c = pid_c * BC + lane
        img = (pid_c.to(tl.int64) * M + n.to(tl.int64) * H * W) * BC  # (channel block, image n, pixel 0)
        if IN_PX == BC:  # IN's offset of (image n, pixel 0, this channel block)
            in_img = img
        else:
            in_img = n.to(tl.int64) * H * W * IN_PX + pid_c * BC
        zero = tl.zeros([TW, BC], dtype=tl.float32)
        acc = (zero,)
        for _y in tl.static_range(TH - 1):
            acc = acc + (zero,)
        # taps and bias are loaded as whole [TW, BC] tiles, in the layout of the input rows: a [BC] vector would be
        # redistributed through shared memory (a barrier per tap) when BC spans several threads (the row-major forward)
        lanes = tl.zeros([TW, BC], dtype=tl.int32) + lane[None, :]
        for j in (tl.static_range if UNROLL else range)(K):
            xx = xs + (j - PAD)
            cok = (xx >= 0) & (xx < W)
            ptr = IN + in_img + (xx * IN_PX)[:, None] + lane[None, :]
            # the taps of column j, loaded when first needed (tap i is used by input rows i .. i + TH - 1)
            wj = (tl.load(WT + tl.multiple_of(_tap(0, j, K, FLIP) * C + pid_c * BC, BC) + lanes),)
            for r in tl.static_range(TH + K - 1):
                if r > 0 and r < K:
                    wj = wj + (tl.load(WT + tl.multiple_of(_tap(r, j, K, FLIP) * C + pid_c * BC, BC) + lanes),)
                hh = y0 + (r - PAD)
                ok = cok & (hh >= 0) & (hh < H)
                v = tl.load(ptr + hh * (W * IN_PX), mask=ok[:, None], other=0.0).to(tl.float32)
                for y in tl.static_range(TH):
                    if r - y >= 0 and r - y < K:
                        acc = _tset(acc, y, acc[y] + v * wj[r - y])

        if MODE == 0 or MODE == 1 or MODE == 3 or MODE == 4:
            bias = tl.load(BIAS + tl.multiple_of(pid_c * BC, BC) + lanes)
        ps1 = zero  # per-thread partial column sums, reduced across the program once at the end
        ps2 = zero
        xok = xs < W
        for y in tl.static_range(TH):
            yy = y0 + y
            m2 = (xok & (yy < H))[:, None]
            pix = (n * H + yy).to(tl.int64) * W + xs
            bl = img + ((yy * W + xs) * BC)[:, None] + lane[None, :]  # blocked offsets of these pixels
            a = acc[y]
            if MODE == 0:  # ConvMod forward: O1 = m = (conv + b) * v, X1 = v
                v = tl.load(X1 + tl.multiple_of(pix * s_x1, VEC)[:, None] + c[None, :], mask=m2, other=0.0)
                out = (a + bias) * v.to(tl.float32)
                tl.store(O1 + tl.multiple_of(pix * s_o1, VEC)[:, None] + c[None, :], out.to(O1.dtype.element_ty),
                         mask=m2)
            elif MODE == 1:  # X1 = v, X2 = dm; O1 = m, O2 = dv, O3 = dy (blocked); P1 += dy, P2 += dv
                s = a + bias
                v = tl.load(X1 + tl.multiple_of(pix * s_x1, VEC)[:, None] + c[None, :], mask=m2, other=0.0)
                dm = tl.load(X2 + tl.multiple_of(pix * s_x2, VEC)[:, None] + c[None, :], mask=m2, other=0.0)
                v = v.to(tl.float32)
                dm = dm.to(tl.float32)
                dv = dm * s
                dy = dm * v
                tl.store(O1 + tl.multiple_of(pix * s_o1, VEC)[:, None] + c[None, :], (s * v).to(O1.dtype.element_ty),
                         mask=m2)
                tl.store(O2 + tl.multiple_of(pix * s_o2, VEC)[:, None] + c[None, :], dv.to(O2.dtype.element_ty),
                         mask=m2)
                tl.store(O3 + bl, dy.to(O3.dtype.element_ty), mask=m2)
                ps1 += dy
                ps2 += dv
            elif MODE == 2:  # IN = dy (blocked), flipped taps: X1 = a; O1 = da; P1 += da
                av = tl.load(X1 + tl.multiple_of(pix * s_x1, VEC)[:, None] + c[None, :], mask=m2, other=0.0)
                da = tl.where(m2, a * _gelu_grad(av.to(tl.float32)), 0.0)
                tl.store(O1 + tl.multiple_of(pix * s_o1, VEC)[:, None] + c[None, :], da.to(O1.dtype.element_ty),
                         mask=m2)
                ps1 += da
            elif MODE == 3:  # MLP forward, IN = g: O1 = h = g + GELU(conv + b)
                g = tl.load(IN + in_img + ((yy * W + xs) * IN_PX)[:, None] + lane[None, :], mask=m2, other=0.0)
                out = g.to(tl.float32) + _gelu(a + bias)
                tl.store(O1 + tl.multiple_of(pix * s_o1, VEC)[:, None] + c[None, :], out.to(O1.dtype.element_ty),
                         mask=m2)
            elif MODE == 4:  # X1 = dh; O1 = h, O2 = ds (blocked); P1 += ds
                s = a + bias
                g = tl.load(IN + bl, mask=m2, other=0.0)
                dh = tl.load(X1 + tl.multiple_of(pix * s_x1, VEC)[:, None] + c[None, :], mask=m2, other=0.0)
                out = g.to(tl.float32) + _gelu(s)
                ds = dh.to(tl.float32) * _gelu_grad(s)
                tl.store(O1 + tl.multiple_of(pix * s_o1, VEC)[:, None] + c[None, :], out.to(O1.dtype.element_ty),
                         mask=m2)
                tl.store(O2 + bl, ds.to(O2.dtype.element_ty), mask=m2)
                ps1 += ds
            else:  # MODE 5, IN = ds (blocked), flipped taps: X1 = dh, X2 = h0; O1 = dh0; P1 += dh0
                dh = tl.load(X1 + tl.multiple_of(pix * s_x1, VEC)[:, None] + c[None, :], mask=m2, other=0.0)
                h0 = tl.load(X2 + tl.multiple_of(pix * s_x2, VEC)[:, None] + c[None, :], mask=m2, other=0.0)
                dh0 = tl.where(m2, (dh.to(tl.float32) + a) * _gelu_grad(h0.to(tl.float32)), 0.0)
                tl.store(O1 + tl.multiple_of(pix * s_o1, VEC)[:, None] + c[None, :], dh0.to(O1.dtype.element_ty),
                         mask=m2)
                ps1 += dh0
        if MODE == 1 or MODE == 2 or MODE == 4 or MODE == 5:
            tl.atomic_add(P1 + c, tl.sum(ps1, axis=0))
        if MODE == 1:
            tl.atomic_add(P2 + c, tl.sum(ps2, axis=0))

    @triton.jit(do_not_specialize=['M', 'H', 'W', 'C', 'tiles_w', 'tiles_h', 'n_tiles', 'tiles_per_prog'])
    def _dwc_wgrad_kernel(G, DY, DW, M, H, W, C, tiles_w, tiles_h, n_tiles, tiles_per_prog,
                          K: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr, UNROLL: tl.constexpr,
                          BC: tl.constexpr):
        """v3 weight gradient: DW[c, i, j] += sum_p g[p + (i - P, j - P), c] * dy[p, c] over the tiles of split s,
        for the kernel column j of this program (grid: K x C/BC x splits), or for all K columns if UNROLL (grid:
        1 x C/BC x splits; K*K accumulators, the dy rows loaded once for all columns); g, dy blocked (C/BC, M, BC).
        Each loaded row of g is added into the accumulators of all the kernel rows i it meets."""
        PAD: tl.constexpr = K // 2
        KJ: tl.constexpr = K if UNROLL else 1  # kernel columns per program
        j0 = tl.program_id(0)
        pid_c = tl.program_id(1)
        pid_s = tl.program_id(2)
        lane = tl.arange(0, BC)
        c = pid_c * BC + lane
        cb = pid_c.to(tl.int64) * M * BC
        zero = tl.zeros([TW, BC], dtype=tl.float32)
        acc = (zero,)
        for _i in tl.static_range(KJ * K - 1):
            acc = acc + (zero,)
        t_start = pid_s * tiles_per_prog
        t_end = tl.minimum(t_start + tiles_per_prog, n_tiles)
        for tt in range(t_start, t_end):
            tx = tt % tiles_w
            t = tt // tiles_w
            ty = t % tiles_h
            n = t // tiles_h
            y0 = ty * TH
            xs = tx * TW + tl.arange(0, TW)
            img = cb + n.to(tl.int64) * H * W * BC
            xok = xs < W
            dptr = DY + img + (xs * BC)[:, None] + lane[None, :]
            dys = (tl.load(dptr + y0 * (W * BC), mask=(xok & (y0 < H))[:, None], other=0.0).to(tl.float32),)
            for y in tl.static_range(1, TH):
                dys = dys + (tl.load(dptr + (y0 + y) * (W * BC), mask=(xok & (y0 + y < H))[:, None],
                                     other=0.0).to(tl.float32),)
            for jj in tl.static_range(KJ):  # column j0 + jj, accumulators jj*K .. jj*K + K - 1
                xx = xs + (j0 + jj - PAD)
                cok = (xx >= 0) & (xx < W)
                gptr = G + img + (xx * BC)[:, None] + lane[None, :]
                for r in tl.static_range(TH + K - 1):
                    hh = y0 + (r - PAD)
                    ok = cok & (hh >= 0) & (hh < H)
                    v = tl.load(gptr + hh * (W * BC), mask=ok[:, None], other=0.0).to(tl.float32)
                    for y in tl.static_range(TH):
                        if r - y >= 0 and r - y < K:
                            acc = _tset(acc, jj * K + r - y, acc[jj * K + r - y] + v * dys[y])
        for jj in tl.static_range(KJ):
            for i in tl.static_range(K):
                tl.atomic_add(DW + c * (K * K) + i * K + j0 + jj, tl.sum(acc[jj * K + i], axis=0))

    @triton.jit
    def _toeplitz_kernel(WT, T, C, K: tl.constexpr, BC: tl.constexpr, KW: tl.constexpr, TW: tl.constexpr):
        """T (C/BC, K, BC, KW, TW)[cb, i, c, m, w] = WT[(i*K + m - w), cb*BC + c] (0 outside 0 <= m - w < K), in T's
        dtype; WT (K*K, C) fp32 taps. Grid: C/BC x K."""
        cb = tl.program_id(0)
        i = tl.program_id(1)
        cc = tl.arange(0, BC)[:, None, None]
        d = (tl.arange(0, KW)[:, None] - tl.arange(0, TW)[None, :])[None, :, :]
        w = tl.load(WT + (i * K + d) * C + cb * BC + cc, mask=(d >= 0) & (d < K), other=0.0)
        off = (((cb * K + i) * BC + cc) * KW + tl.arange(0, KW)[None, :, None]) * TW + tl.arange(0, TW)[None, None, :]
        tl.store(T + off, w.to(T.dtype.element_ty))

    @triton.jit(do_not_specialize=['s_x1', 's_o1', 'M', 'H', 'W', 'C', 'tiles_w', 'tiles_h', 'n_cb'])
    def _dwc_tc_kernel(IN, T, BIAS, X1, s_x1, O1, s_o1, M, H, W, C, tiles_w, tiles_h, n_cb,
                       K: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr, KW: tl.constexpr, BC: tl.constexpr):
        """ConvMod forward (MODE 0: O1 = (conv(IN) + b) * X1) on the tensor cores: TH x TW output pixels x BC
        channels of the blocked IN (C/BC, M, BC), the conv as K GEMMs with the Toeplitz matrices T (see the module
        docstring)."""
        PAD: tl.constexpr = K // 2
        pid_c, tx, ty, n = _program_tile(n_cb, tiles_w, tiles_h)
        y0 = ty * TH
        cc = tl.arange(0, BC)
        rr = tl.arange(0, TH)
        mm = tl.arange(0, KW)
        ww = tl.arange(0, TW)
        img = (pid_c.to(tl.int64) * M + n.to(tl.int64) * H * W) * BC
        xin = tx * TW - PAD + mm
        cok = (xin >= 0) & (xin < W) & (mm < TW + K - 1)
        toep = T + (pid_c * K * BC + cc).to(tl.int64)[:, None, None] * (KW * TW) + (mm[:, None] * TW + ww[None, :])
        acc = tl.zeros([BC, TH, TW], dtype=tl.float32)
        for i in range(K):
            yin = y0 + rr + (i - PAD)
            rok = (yin >= 0) & (yin < H)
            a = tl.load(IN + img + (((yin * W)[:, None] + xin[None, :]) * BC)[None, :, :] + cc[:, None, None],
                        mask=rok[None, :, None] & cok[None, None, :], other=0.0)
            acc = tl.dot(a, tl.load(toep + i * (BC * KW * TW)), acc)
        xx = tx * TW + ww
        ok = ((y0 + rr) < H)[None, :, None] & (xx < W)[None, None, :]
        pix = ((n * H + y0 + rr).to(tl.int64) * W)[None, :, None] + xx[None, None, :]
        c = pid_c * BC + cc[:, None, None]
        v = tl.load(X1 + pix * s_x1 + c, mask=ok, other=0.0)
        out = (acc + tl.load(BIAS + c)) * v.to(tl.float32)
        tl.store(O1 + pix * s_o1 + c, out.to(O1.dtype.element_ty), mask=ok)

    _gelu_blocked = FastLauncher(_gelu_blocked_kernel)
    _toeplitz = FastLauncher(_toeplitz_kernel)
    _dwc_tc = FastLauncher(_dwc_tc_kernel)
    _dwc = FastLauncher(_dwc_kernel)
    _dwc_wgrad = FastLauncher(_dwc_wgrad_kernel)
    _dwconv = FastLauncher(_dwconv_kernel)
    _dw_wgrad = FastLauncher(_dw_wgrad_kernel)


def _pow2_divisor(n: int, cap: int) -> int:
    d = 1
    while d < cap and n % (2 * d) == 0:
        d *= 2
    return d


@functools.cache
def _vec(*strides: int, cap: int = 8) -> int:
    v = cap
    for s in strides:
        v = min(v, _pow2_divisor(s, cap))
    return v


def _parse_impl(spec: str):
    impl = {'large': 'v3', 'small': 'v3'}
    for part in filter(None, (p.strip() for p in spec.lower().split(','))):
        key, _, val = part.rpartition('=')
        for k in ((key,) if key else ('large', 'small')):
            if k in impl and val in ('v2', 'v3'):
                impl[k] = val
    return impl


# which convolution kernels run, per kernel-size class (see the module docstring)
IMPL = _parse_impl(os.environ.get('MMCONV2FORMER_DW_IMPL', ''))


def _impl(K: int) -> str:
    return IMPL['large' if K > 3 else 'small']


_SMS = {}


def _num_sms(device: torch.device) -> int:
    if device.type != 'cuda':
        return 4
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SMS:
        _SMS[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SMS[index]


def block_width(C: int, K: int) -> int:
    """Channels per program and of the blocked layout. v3: 4 (an 8-byte bf16 vector per pixel and thread, which
    keeps the TH row accumulators and the taps of a kernel column in registers); v2: 8, and 32 for the 3x3 conv."""
    if _impl(K) == 'v3':
        return _pow2_divisor(C, 4)
    return _pow2_divisor(C, 8 if K > 3 else 32)


def _conv_tiles(BC: int, H: int, W: int):
    bp = max(64, 4096 // BC)
    tw = 16 if W > 8 else 8
    th = bp // tw
    while th > 1 and th >= 2 * H:
        th //= 2
    return th, tw


_TILES_FORM = ('KIND_CLASS=THxTWxWARPSxUNROLL[,...] with KIND_CLASS one of conv_large, conv_small, dgrad_large, '
               'dgrad_small, wgrad_large, wgrad_small (TH >= 1; WARPS 1, 2, 4 or 8; TW a power of 2, at least '
               '32*WARPS; UNROLL 0 or 1), or '
               'conv_rows=THxTWxWARPSxCHANNELS (TW a power of 2; CHANNELS a power of 2 from 4 to 256)')


def _pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _parse_tiles(spec: str, tiles: dict) -> dict:
    """A copy of `tiles` with the entries of `spec` (the form of `MMCONV2FORMER_DW_TILES`) replaced."""
    tiles = dict(tiles)
    for part in filter(None, (p.strip() for p in spec.lower().split(','))):
        key, _, val = part.rpartition('=')
        try:
            th, tw, warps, last = (int(v) for v in val.split('x'))
            ok = key in tiles and th >= 1 and warps in (1, 2, 4, 8) and _pow2(tw)
            if key == 'conv_rows':  # last: most channels per program
                ok = ok and _pow2(last) and 4 <= last <= 256
            else:  # last: UNROLL
                ok = ok and tw >= 32 * warps and last in (0, 1)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f'MMCONV2FORMER_DW_TILES: bad entry {part!r}, expected {_TILES_FORM}')
        tiles[key] = (th, tw, warps, last)
    return tiles


# v3 tiles per kernel ('conv': `_dwc_kernel`'s forward and recompute modes, 'dgrad': its input-gradient modes (the
# transposed conv, MODE 2 and 5), 'wgrad': `_dwc_wgrad_kernel`) and kernel-size class: (TH output rows
# (register accumulators per thread), TW pixels of a row, num_warps, UNROLL: the loop over the kernel columns
# unrolled (conv) or all of them in one program (wgrad); at k = 11 both spill and take ~1 min to compile). TW is a
# multiple of 32 * num_warps: a thread holds TW / (32 * num_warps) pixels of BC channels. The defaults won a sweep of
# the spill-free configs over the COCO and ADE stage sizes of Conv2Former-T on an H200 (docs/performance.md): 4 rows
# halve the registers of the 11x11 conv (188 -> 94: twice the resident warps), the 3x3 weight gradient gains most
# from doing all columns in one program. The input gradient's epilogue (GELU'(a): erf and exp) takes more
# registers than the other modes', hence its own entries; at k = 11 it is fastest with 3 rows (round 9's sweep:
# 1.15x / 1.34x / 1.12x over 4 rows in the COCO / ADE / ImageNet stage sizes). conv_small is the MLP's backward
# recompute; its forward (`rows_forward`) reads row-major input with the conv_rows tile: (TH output rows, TW pixels
# of a row, num_warps, most channels per program), re-swept in round 9 after its taps stopped going through shared
# memory: 4x16x2x64 is the best of 13 in the COCO and ImageNet settings and within 0.3% of the best in ADE's (COCO
# -9%, ADE -10%, ImageNet -3% against round 7's 2x8x2x64; docs/performance.md).
# `MMCONV2FORMER_DW_TILES` overrides entries, e.g. `conv_large=8x32x1x0,conv_rows=4x16x4x64`.
V3_TILES = _parse_tiles(os.environ.get('MMCONV2FORMER_DW_TILES', ''),
                        dict(conv_large=(4, 32, 1, 0), conv_small=(8, 32, 1, 0), dgrad_large=(3, 32, 1, 0),
                             dgrad_small=(8, 32, 1, 0), wgrad_large=(12, 64, 2, 0), wgrad_small=(8, 64, 2, 1),
                             conv_rows=(4, 16, 2, 64)))


def _v3_tiles(kind: str, K: int):
    """(TH, TW, num_warps, UNROLL) of the v3 `kind` ('conv', 'dgrad' or 'wgrad') kernel for kernel size K."""
    return V3_TILES[f'{kind}_{"large" if K > 3 else "small"}']


def gelu_blocked(x: torch.Tensor, C: int, BL: int) -> torch.Tensor:
    """GELU of the first C columns of a row-major 2D view (any row stride), as a blocked (C/BL, M, BL) tensor."""
    M = x.shape[0]
    out = torch.empty((C // BL, M, BL), device=x.device, dtype=x.dtype)
    if M:
        bcol = max(BL, 32)
        bm = 4096 // bcol
        vec = _vec(x.stride(0), BL)
        _gelu_blocked[(cdiv(M, bm), cdiv(C, bcol))](x, x.stride(0), out, M, C, bm, bcol, BL, vec, num_warps=4)
    return out


# tiles of the tensor-core ConvMod forward: output rows, columns, Toeplitz rows (>= TC_TW + K - 1), warps
TC_TH, TC_TW, TC_KW, TC_WARPS = 16, 16, 32, 2


def use_tensor_cores(mode: int, K: int, W: int, dtype: torch.dtype) -> bool:
    """Whether ConvMod's forward goes to `_dwc_tc_kernel` (narrow maps, k = 11, bf16/fp16; see the docstring)."""
    return (mode == MODE_A_FWD and K == 11 and W <= TC_TW and dtype in (torch.bfloat16, torch.float16)
            and _impl(K) == 'v3')


def _launch_conv_tc(inp, wt, bias, shape, C, K, x1, o1):
    N, H, W = shape
    BC = inp.shape[-1]
    toep = torch.empty((C // BC, K, BC, TC_KW, TC_TW), device=inp.device, dtype=inp.dtype)
    _toeplitz[(C // BC, K)](wt, toep, C, K, BC, TC_KW, TC_TW, num_warps=4)
    tiles_w, tiles_h, n_cb = cdiv(W, TC_TW), cdiv(H, TC_TH), C // BC
    _dwc_tc[(N * tiles_h * tiles_w * n_cb,)](inp, toep, bias, x1, x1.stride(0), o1, o1.stride(0), N * H * W, H, W, C,
                                             tiles_w, tiles_h, n_cb, K, TC_TH, TC_TW, TC_KW, BC, num_warps=TC_WARPS)


def _launch_conv(mode, inp, wt, bias, shape, C, K, x1=None, x2=None, o1=None, o2=None, o3=None, p1=None, p2=None,
                 flip=False):
    """One conv kernel launch (v2 or v3 as `IMPL` says for K). `flip`: the transposed conv (taps reversed). `inp`
    is blocked (C/BC, M, BC), or row-major (M, C) for the MLP forward when `rows_forward(K)`."""
    N, H, W = shape
    M = N * H * W
    if not M:
        return
    if use_tensor_cores(mode, K, W, inp.dtype):
        _launch_conv_tc(inp, wt, bias, shape, C, K, x1, o1)
        return
    rows = inp.dim() == 2  # row-major (M, C) input: the MLP forward of `rows_forward`, on v3's kernel
    if rows and mode != MODE_B_FWD:
        raise ValueError(f'row-major conv input is for the MLP forward only, got mode {mode}')
    BC = inp.shape[-1]
    dummy = o1
    x1 = dummy if x1 is None else x1
    x2 = dummy if x2 is None else x2
    o2 = dummy if o2 is None else o2
    o3 = dummy if o3 is None else o3
    p1 = wt if p1 is None else p1
    p2 = wt if p2 is None else p2
    if _impl(K) == 'v2' and not rows:
        if flip:
            wt = wt.flip(0)
        th, tw = _conv_tiles(BC, H, W)
        tiles_w = cdiv(W, tw)
        tiles_img = cdiv(H, th) * tiles_w
        vec = _vec(x1.stride(0), x2.stride(0), o1.stride(0), o2.stride(0), o3.stride(0), BC)
        _dwconv[(N * tiles_img, C // BC)](inp, wt, bias, x1, x1.stride(0), x2, x2.stride(0), o1, o1.stride(0),
                                          o2, o2.stride(0), o3, o3.stride(0), p1, p2, M, H, W, C, tiles_w, tiles_img,
                                          mode, K, th, tw, BC, vec, num_warps=4)
        return
    if rows:
        th, tw, warps, bc = V3_TILES['conv_rows']
        unroll, BC = 0, _pow2_divisor(C, bc)
    else:
        th, tw, warps, unroll = _v3_tiles('dgrad' if mode in (MODE_A_DGRAD, MODE_B_DGRAD) else 'conv', K)
    tiles_w, tiles_h, n_cb = cdiv(W, tw), cdiv(H, th), C // BC
    vec = _vec(x1.stride(0), x2.stride(0), o1.stride(0), o2.stride(0), BC)
    _dwc[(N * tiles_h * tiles_w * n_cb,)](inp, wt, bias, x1, x1.stride(0), x2, x2.stride(0), o1, o1.stride(0),
                                          o2, o2.stride(0), o3, p1, p2, M, H, W, C, tiles_w, tiles_h, n_cb,
                                          mode, K, flip, th, tw, unroll, BC, vec, C if rows else BC, num_warps=warps)


def rows_forward(K: int) -> bool:
    """Whether the MLP forward (MODE 3) reads GELU(h0) as row-major rows: v3 at k = 3. The conv is memory-bound
    there, and v3's 4-channel blocks made each thread's loads and stores 8 bytes wide (128 bytes per pixel and
    program are whole cache lines); the backward keeps the blocked layout."""
    return K == 3 and _impl(K) == 'v3'


# programs per SM a weight-gradient launch aims at (their tiles' partial sums meet in fp32 atomics). The kernels hold
# 128-146 registers, so 4 per SM left them at about 11% occupancy (Nsight Compute, round 9); 12 won a sweep of 2-32
# over the stage sizes (both kernels, blocks-weighted: COCO -8%, ADE +1%, ImageNet -12%; more starves small maps).
WGRAD_PROGRAMS_PER_SM = 12


def _split_tiles(n_tiles: int, per_split: int, sms: int):
    """(splits, tiles per program) of a weight-gradient launch: the image tiles spread over enough programs for about
    `WGRAD_PROGRAMS_PER_SM` per SM, `per_split` programs (kernel columns x channel blocks) per split, no split left
    empty."""
    splits = max(1, min(n_tiles, cdiv(WGRAD_PROGRAMS_PER_SM * sms, per_split)))
    tiles_per_prog = cdiv(n_tiles, splits)
    return cdiv(n_tiles, tiles_per_prog), tiles_per_prog


def dw_wgrad(g: torch.Tensor, dy: torch.Tensor, shape, C: int, K: int, out: torch.Tensor):
    """Adds the depthwise weight gradient (C, K, K) to the fp32 buffer `out`; g, dy blocked (C/BL, M, BL)."""
    N, H, W = shape
    M = N * H * W
    if not M:
        return
    BL = g.shape[-1]
    sms = _num_sms(g.device)
    if _impl(K) == 'v3':
        th, tw, warps, unroll = _v3_tiles('wgrad', K)
        tiles_w, tiles_h = cdiv(W, tw), cdiv(H, th)
        n_tiles = N * tiles_h * tiles_w
        cols = 1 if unroll else K  # programs per channel block and split, one per kernel column unless UNROLL
        splits, tiles_per_prog = _split_tiles(n_tiles, cols * (C // BL), sms)
        _dwc_wgrad[(cols, C // BL, splits)](g, dy, out, M, H, W, C, tiles_w, tiles_h, n_tiles, tiles_per_prog,
                                            K, th, tw, unroll, BL, num_warps=warps)
        return
    KP = next_power_of_2(K)
    bcw = min(BL, 8 if K > 3 else 32)
    bp = max(16, 4096 // (KP * bcw))
    tw = 16 if W > 8 else 8
    th = max(1, bp // tw)
    tiles_w = cdiv(W, tw)
    tiles_img = cdiv(H, th) * tiles_w
    n_tiles = N * tiles_img
    splits, tiles_per_prog = _split_tiles(n_tiles, K * (C // bcw), sms)
    _dw_wgrad[(K, C // bcw, splits)](g, dy, out, M, H, W, C, tiles_w, tiles_img, n_tiles, tiles_per_prog,
                                     K, KP, th, tw, BL, bcw, num_warps=4)


def conv_weights(weight: torch.Tensor) -> torch.Tensor:
    """(C, 1, K, K) depthwise weight -> (K*K, C) fp32 taps (tap t = i*K + j; the transposed conv uses K*K-1-t)."""
    C, K = weight.shape[0], weight.shape[-1]
    out = torch.empty((K * K, C), device=weight.device, dtype=torch.float32)
    return out.copy_(weight.detach().reshape(C, K * K).t())


# ---------------------------------------------------------------------------------------------------------------
# (a) ConvMod: m = (DWConv_k(GELU(a)) + b) * v, with av = [a | v] of shape (M, 2C)
# ---------------------------------------------------------------------------------------------------------------
def _ksize(wt: torch.Tensor) -> int:
    return int(round(wt.shape[0] ** 0.5))


def convmod_fwd(av: torch.Tensor, wt: torch.Tensor, bias: torch.Tensor, shape):
    """Returns (m (M, C), g): g = GELU(a) in the blocked layout, which `convmod_bwd` can reuse."""
    C = av.shape[1] // 2
    K = _ksize(wt)
    g = gelu_blocked(av, C, block_width(C, K))
    m = torch.empty((av.shape[0], C), device=av.device, dtype=av.dtype)
    _launch_conv(MODE_A_FWD, g, wt, bias, shape, C, K, x1=av[:, C:], o1=m)
    return m, g


def convmod_bwd(av: torch.Tensor, dm: torch.Tensor, wt: torch.Tensor, bias: torch.Tensor, shape,
                dweight: torch.Tensor, dbias: torch.Tensor, sum_da: torch.Tensor, sum_dv: torch.Tensor, g=None):
    """Returns (m, dav (M, 2C)); adds dweight (C*K*K), dbias, colsum(da), colsum(dv) into the given fp32 buffers.
    `g`: the forward's blocked GELU(a), recomputed when None."""
    C = av.shape[1] // 2
    K = _ksize(wt)
    M = av.shape[0]
    BL = block_width(C, K)
    if g is None:
        g = gelu_blocked(av, C, BL)
    dav = torch.empty((M, 2 * C), device=av.device, dtype=av.dtype)
    dy = torch.empty((C // BL, M, BL), device=av.device, dtype=av.dtype)
    m = torch.empty((M, C), device=av.device, dtype=av.dtype)
    _launch_conv(MODE_A_BWD, g, wt, bias, shape, C, K, x1=av[:, C:], x2=dm, o1=m, o2=dav[:, C:], o3=dy, p1=dbias,
                 p2=sum_dv)
    _launch_conv(MODE_A_DGRAD, dy, wt, bias, shape, C, K, x1=av, o1=dav, p1=sum_da, flip=True)
    dw_wgrad(g, dy, shape, C, K, dweight)
    return m, dav


# ---------------------------------------------------------------------------------------------------------------
# (b) MLP: h = g + GELU(DWConv_3(g) + b), g = GELU(h0)
# ---------------------------------------------------------------------------------------------------------------
def mlp_pos_fwd(h0: torch.Tensor, wt: torch.Tensor, bias: torch.Tensor, shape) -> torch.Tensor:
    C4 = h0.shape[1]
    K = _ksize(wt)
    g = F.gelu(h0).contiguous() if rows_forward(K) else gelu_blocked(h0, C4, block_width(C4, K))
    h = torch.empty_like(h0)
    _launch_conv(MODE_B_FWD, g, wt, bias, shape, C4, K, o1=h)
    return h


def mlp_pos_bwd(h0: torch.Tensor, dh: torch.Tensor, wt: torch.Tensor, bias: torch.Tensor, shape,
                dweight: torch.Tensor, dbias: torch.Tensor, sum_dh0: torch.Tensor):
    """Returns (h, dh0); adds dweight (4C*K*K), dbias and colsum(dh0) into the given fp32 buffers."""
    C4 = h0.shape[1]
    K = _ksize(wt)
    BL = block_width(C4, K)
    g = gelu_blocked(h0, C4, BL)
    h = torch.empty_like(h0)
    ds = torch.empty_like(g)
    _launch_conv(MODE_B_BWD, g, wt, bias, shape, C4, K, x1=dh, o1=h, o2=ds, p1=dbias)
    dw_wgrad(g, ds, shape, C4, K, dweight)
    del g
    dh0 = torch.empty_like(h0)
    _launch_conv(MODE_B_DGRAD, ds, wt, bias, shape, C4, K, x1=dh, x2=h0, o1=dh0, p1=sum_dh0, flip=True)
    return h, dh0
