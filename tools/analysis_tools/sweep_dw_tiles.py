"""Sweep of the depthwise-conv tile configs (`mmconv2former.ops.kernels.dwconv.V3_TILES`) on a GPU.

    python tools/analysis_tools/sweep_dw_tiles.py --out work_dirs/sweep_dw_tiles.json [--reps 20] [--jobs 16]

For every kernel (the ConvMod conv in its three modes and its weight gradient, K = 11, on C channels; the MLP's 3x3
conv in its three modes, the forward on row-major input, and its weight gradient on 4C channels), every stage size of
Conv2Former-T in the COCO-train (2x800x1344), ADE-train (4x512x512) and ImageNet (128x224x224) settings and every
candidate (TH, TW, num_warps, UNROLL; for `conv_rows`, the MLP forward's entry, TH, TW, num_warps, most channels per
program) of its `V3_TILES` entry: checks the outputs against the shipped default config, then times the kernel (CUDA
events, median of --reps after warm-up, queued behind a GPU sleep so that host launch time does not count). Configs
that fail to compile or differ are skipped and recorded. The candidates are spill-free on sm_90 (ptxas); they are
compiled first in --jobs processes, which fill Triton's on-disk cache, since compiling dominates the run (about a
minute on an H200). The conv modes of one entry share its config, so configs are ranked by the time summed over the
entry's kernels.
Writes JSON and prints, per entry and stage (and per setting: summed over the stages, each weighted by its number of
blocks in Conv2Former-T), the best config and its speedup over the
default; put a winner in `V3_TILES` or try it with `MMCONV2FORMER_DW_TILES`. `--wgrad-programs 2,4,8,12` times the
weight gradients with each number of programs per SM instead (`dwconv.WGRAD_PROGRAMS_PER_SM`).
"""
import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from mmconv2former.ops.kernels import dwconv  # noqa: E402

dwconv.IMPL.update(large='v3', small='v3')  # the tiles are the v3 kernels' (in the spawned workers too)
DEFAULT = dict(dwconv.V3_TILES)  # the shipped config of each entry: the baseline, always a candidate
# (TH, TW, num_warps, UNROLL), besides the shipped one; all without spills in ptxas on sm_90 (unrolled K = 11
# always spills)
_CANDIDATES = {
    'conv_large': [(8, 32, 1, 0), (4, 32, 1, 0), (6, 32, 1, 0), (4, 64, 2, 0), (6, 64, 2, 0), (8, 64, 2, 0),
                   (4, 128, 4, 0), (8, 128, 4, 0), (4, 64, 1, 0), (8, 64, 1, 0)],
    'wgrad_large': [(8, 32, 1, 0), (4, 32, 1, 0), (6, 32, 1, 0), (12, 32, 1, 0), (4, 64, 2, 0), (8, 64, 2, 0),
                    (12, 64, 2, 0), (8, 128, 4, 0), (6, 64, 1, 0), (8, 64, 1, 0), (12, 64, 1, 0)],
    'conv_small': [(8, 32, 1, 0), (4, 32, 1, 0), (12, 32, 1, 0), (16, 32, 1, 0), (8, 64, 2, 0), (16, 64, 2, 0),
                   (8, 128, 4, 0), (4, 64, 1, 0), (8, 64, 1, 0),
                   (4, 32, 1, 1), (8, 32, 1, 1), (12, 32, 1, 1), (8, 64, 2, 1), (16, 64, 2, 1), (8, 64, 1, 1)],
    'wgrad_small': [(8, 32, 1, 0), (4, 32, 1, 0), (16, 32, 1, 0), (8, 64, 2, 0), (16, 64, 2, 0), (8, 64, 1, 0),
                    (12, 64, 1, 0), (16, 64, 1, 0),
                    (4, 32, 1, 1), (8, 32, 1, 1), (12, 32, 1, 1), (8, 64, 2, 1), (16, 64, 2, 1), (4, 64, 1, 1)],
    'dgrad_large': [(2, 32, 1, 0), (3, 32, 1, 0), (4, 32, 1, 0), (6, 32, 1, 0), (8, 32, 1, 0), (2, 64, 2, 0),
                    (3, 64, 2, 0), (4, 64, 2, 0), (2, 64, 1, 0), (4, 128, 4, 0)],
    'dgrad_small': [(8, 32, 1, 0), (4, 32, 1, 0), (12, 32, 1, 0), (16, 32, 1, 0), (8, 64, 2, 0), (4, 64, 2, 0),
                    (8, 64, 1, 0), (4, 32, 1, 1), (8, 32, 1, 1), (8, 64, 2, 1)],
    'conv_rows': [(4, 16, 4, 64), (2, 16, 4, 64), (8, 16, 4, 64), (4, 32, 4, 64), (2, 8, 2, 64), (4, 8, 4, 64),
                  (2, 32, 4, 32), (4, 32, 8, 64), (1, 32, 4, 64), (4, 16, 4, 32), (8, 8, 4, 64), (2, 8, 4, 128)],
}
CANDIDATES = {e: [DEFAULT[e]] + [c for c in cs if c != DEFAULT[e]] for e, cs in _CANDIDATES.items()}
# kernel -> its V3_TILES entry
KERNELS = {'m0': 'conv_large', 'm1': 'conv_large', 'm2': 'dgrad_large', 'wgrad11': 'wgrad_large',
           'm3': 'conv_rows', 'm4': 'conv_small', 'm5': 'dgrad_small', 'wgrad3': 'wgrad_small'}
STAGES = [('coco', i + 1, 2, h, w, c) for i, (h, w, c) in enumerate([(200, 336, 72), (100, 168, 144), (50, 84, 288),
                                                                     (25, 42, 576)])]
STAGES += [('ade', i + 1, 4, h, w, c) for i, (h, w, c) in enumerate([(128, 128, 72), (64, 64, 144), (32, 32, 288),
                                                                    (16, 16, 576)])]
STAGES += [('in', i + 1, 128, h, w, c) for i, (h, w, c) in enumerate([(56, 56, 72), (28, 28, 144), (14, 14, 288),
                                                                     (7, 7, 576)])]
DATASETS = ('coco', 'ade', 'in')
BLOCKS = (3, 3, 12, 3)  # Conv2Former-T's blocks per stage: the weights of the stages in a setting's total


def _stage_index(label: str) -> int:
    """0-based stage of a label such as 'coco3 2x50x84x288'."""
    return int(label.split()[0][-1]) - 1
SEC_PER_COMPILE = 2.0  # Triton + ptxas, one kernel (1-3 s measured on a 2-core CPU machine)
TOL_BF16, TOL_F32 = 2e-2, 1e-3  # relative to max |default output|: a few bf16 ulps; fp32 sums in another order


def cfg_str(cfg):
    return 'x'.join(map(str, cfg))


def make_kernels(N, H, W, C, only=None):
    """name -> (launch(), outputs compared, accumulators zeroed before the check) on bf16 inputs of one stage,
    shaped as convmod_bwd / mlp_pos_bwd shape them."""
    shape, M, C4, BC, dev, bf = (N, H, W), N * H * W, 4 * C, 4, 'cuda', torch.bfloat16

    def rnd(*s):
        return torch.randn(*s, device=dev, dtype=bf)

    def zeros(*s):
        return torch.zeros(*s, device=dev, dtype=torch.float32)

    conv, wgrad = dwconv._launch_conv, dwconv.dw_wgrad
    ks = {}
    if only is None or any(KERNELS[k].endswith('large') for k in only):
        av, dm, dyb = rnd(M, 2 * C), rnd(M, C), rnd(C // BC, M, BC)
        wt, b = dwconv.conv_weights(torch.randn(C, 1, 11, 11, device=dev) / 11), torch.randn(C, device=dev) * 0.1
        g = dwconv.gelu_blocked(av, C, BC)
        m0, m1, dav, da, dy = rnd(M, C), rnd(M, C), rnd(M, 2 * C), rnd(M, 2 * C), rnd(C // BC, M, BC)
        dw = zeros(C * 121)
        p1, p2, p3 = zeros(C), zeros(C), zeros(C)
        ks['m0'] = (lambda: conv(0, g, wt, b, shape, C, 11, x1=av[:, C:], o1=m0), [m0], [])
        ks['m1'] = (lambda: conv(1, g, wt, b, shape, C, 11, x1=av[:, C:], x2=dm, o1=m1, o2=dav[:, C:], o3=dy,
                                 p1=p1, p2=p2), [m1, dav[:, C:], dy, p1, p2], [p1, p2])
        ks['m2'] = (lambda: conv(2, dyb, wt, b, shape, C, 11, x1=av, o1=da, p1=p3, flip=True),
                    [da[:, :C], p3], [p3])
        ks['wgrad11'] = (lambda: wgrad(g, dyb, shape, C, 11, dw), [dw], [dw])
    if only is None or any(not KERNELS[k].endswith('large') for k in only):  # the MLP's 3x3 kernels
        h0, dh, dsb = rnd(M, C4), rnd(M, C4), rnd(C4 // BC, M, BC)
        wt3, b4 = dwconv.conv_weights(torch.randn(C4, 1, 3, 3, device=dev) / 3), torch.randn(C4, device=dev) * 0.1
        g4 = dwconv.gelu_blocked(h0, C4, BC)
        h3, h4, ds, dh0, dw3 = rnd(M, C4), rnd(M, C4), rnd(C4 // BC, M, BC), rnd(M, C4), zeros(C4 * 9)
        q1, q2 = zeros(C4), zeros(C4)
        g4_rows = F.gelu(h0)  # the forward reads row-major GELU(h0) (dwconv.rows_forward)
        ks['m3'] = (lambda: conv(3, g4_rows, wt3, b4, shape, C4, 3, o1=h3), [h3], [])
        ks['m4'] = (lambda: conv(4, g4, wt3, b4, shape, C4, 3, x1=dh, o1=h4, o2=ds, p1=q1),
                    [h4, ds, q1], [q1])
        ks['m5'] = (lambda: conv(5, dsb, wt3, b4, shape, C4, 3, x1=dh, x2=h0, o1=dh0, p1=q2, flip=True),
                    [dh0, q2], [q2])
        ks['wgrad3'] = (lambda: wgrad(g4, dsb, shape, C4, 3, dw3), [dw3], [dw3])
    return {k: v for k, v in ks.items() if only is None or k in only}


def precompile(task):
    """Worker: compile every kernel of one V3_TILES entry and config (launch on small inputs: the same
    specializations as the stage sizes: all C are multiples of 8, and the row-major forward's channel blocks are 32
    at C = 72 and up to 64 from C = 144) -> (entry, cfg, error or None, seconds)."""
    entry, cfg = task
    t = time.time()
    try:
        dwconv.V3_TILES[entry] = cfg
        names = [k for k, e in KERNELS.items() if e == entry]
        for C in ((72, 144, 288) if entry == 'conv_rows' else (72,)):
            for launch, _, _ in make_kernels(1, 13, 40, C, names).values():
                launch()
        torch.cuda.synchronize()
        err = None
    except Exception as e:  # noqa: BLE001
        err = f'{type(e).__name__}: {str(e)[:300]}'
    return entry, cfg, err, time.time() - t


def time_ms(fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    torch.cuda._sleep(10_000_000)  # ~5 ms: the launches queue up behind it, so host gaps do not count
    for s, e in ev:
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in ev)


def snapshot(launch, outs, accs):
    for a in accs:
        a.zero_()
    launch()
    torch.cuda.synchronize()
    return [o.float().clone() for o in outs]


def rel_diff(outs, refs, tols):
    """(max over the outputs of max |out - ref| / max |ref|, all within tols); nan counts as a mismatch."""
    worst, ok = 0.0, True
    for o, r, t in zip(outs, refs, tols):
        d = ((o - r).abs().max() / r.abs().max().clamp_min(1e-30)).item()
        worst = max(worst, d) if d == d else float('inf')
        ok &= d <= t
    return worst, ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default='sweep.json')
    ap.add_argument('--reps', type=int, default=20)
    ap.add_argument('--jobs', type=int, default=min(16, os.cpu_count() or 1),
                    help='processes compiling ahead (0: compile in this process, serially)')
    ap.add_argument('--entries', default=','.join(CANDIDATES), help='V3_TILES entries to sweep')
    ap.add_argument('--wgrad-programs', default=None, metavar='N,N,...',
                    help='instead of the tiles: time the weight gradients with each of these '
                         'dwconv.WGRAD_PROGRAMS_PER_SM (programs per SM a launch aims at), e.g. 2,4,8,12,16,24,32')
    args = ap.parse_args()
    t0 = time.time()
    if args.wgrad_programs is not None:
        try:
            values = [int(v) for v in args.wgrad_programs.split(',')]
        except ValueError:
            values = []
        if not values or min(values) < 1:
            ap.error(f'--wgrad-programs: expected positive integers separated by commas, got {args.wgrad_programs!r}')
        return sweep_wgrad_programs(args, values, t0)
    entries = args.entries.split(',')
    for e in entries:
        if e not in CANDIDATES:
            ap.error(f"--entries: unknown V3_TILES entry {e!r}: one of {', '.join(CANDIDATES)}")
    n_modes = {e: sum(v == e for v in KERNELS.values()) for e in entries}
    n_comp = sum(len(CANDIDATES[e]) * n_modes[e] for e in entries)
    est = n_comp * SEC_PER_COMPILE / max(args.jobs, 1) + (20 if args.jobs else 0)  # + the workers' start
    print(f'{n_comp} kernel compiles: ~{est:.0f} s with {args.jobs} jobs ({n_comp * SEC_PER_COMPILE:.0f} s '
          f'serially); timing ~{len(STAGES) * n_comp * 0.02:.0f} s', flush=True)
    if args.jobs > 0:  # a config that fails here is tried again (and recorded) below
        tasks = [(e, cfg) for e in entries for cfg in CANDIDATES[e]]
        busy = 0.0
        with mp.get_context('spawn').Pool(args.jobs) as pool:
            for entry, cfg, err, secs in pool.imap_unordered(precompile, tasks):
                busy += secs
                if err:
                    print(f'  precompile failed: {entry} {cfg_str(cfg)}: {err}', flush=True)
        print(f'compiled in {time.time() - t0:.0f} s ({busy / n_comp:.1f} s per kernel in a worker)', flush=True)

    failed = {}  # (entry, cfg) -> error

    res = {}  # kernel -> stage -> {'ms': {cfg: ms}, 'skipped': {cfg: why}, 'diff': {cfg: rel diff}}
    for ds, si, N, H, W, C in STAGES:
        stage = f'{ds}{si} {N}x{H}x{W}x{C}'
        kernels = make_kernels(N, H, W, C, [k for k in KERNELS if KERNELS[k] in entries])
        for name, (launch, outs, accs) in kernels.items():
            entry = KERNELS[name]
            r = res.setdefault(name, {}).setdefault(stage, {'ms': {}, 'skipped': {}, 'diff': {}})
            dwconv.V3_TILES[entry] = DEFAULT[entry]
            refs = snapshot(launch, outs, accs)
            tols = [TOL_BF16 if o.dtype == torch.bfloat16 else TOL_F32 for o in outs]
            for cfg in CANDIDATES[entry]:
                key = cfg_str(cfg)
                if (entry, cfg) in failed:
                    r['skipped'][key] = 'compile: ' + failed[(entry, cfg)]
                    continue
                dwconv.V3_TILES[entry] = cfg
                try:
                    d, ok = rel_diff(snapshot(launch, outs, accs), refs, tols)
                except Exception as e:  # noqa: BLE001
                    failed[(entry, cfg)] = f'{type(e).__name__}: {str(e)[:300]}'
                    r['skipped'][key] = 'compile/launch: ' + failed[(entry, cfg)]
                    continue
                r['diff'][key] = d
                if not ok:
                    r['skipped'][key] = f'differs from the default: rel diff {d:.3g}'
                    continue
                r['ms'][key] = time_ms(launch, args.reps)
            dwconv.V3_TILES[entry] = DEFAULT[entry]
            if r['ms']:
                best = min(r['ms'], key=r['ms'].get)
                r.update(best=best, best_ms=r['ms'][best], default_ms=r['ms'].get(cfg_str(DEFAULT[entry])))
        del kernels
        torch.cuda.empty_cache()
        print(f'{stage}: done at {time.time() - t0:.0f} s', flush=True)
        write(args, entries, res, None, t0)  # what there is so far, in case the run is cut short
    write(args, entries, res, summarize(res, entries), t0)


def sweep_wgrad_programs(args, values, t0):
    """Times both weight-gradient kernels at every stage size with each `WGRAD_PROGRAMS_PER_SM` in `values` (their
    results checked against the shipped value's), prints per setting the totals with the stages weighted by their
    blocks, and writes them with the per-stage times to --out."""
    shipped = dwconv.WGRAD_PROGRAMS_PER_SM
    res = {}  # kernel -> stage -> {value: ms}
    try:
        for ds, si, N, H, W, C in STAGES:
            stage = f'{ds}{si} {N}x{H}x{W}x{C}'
            for name, (launch, outs, accs) in make_kernels(N, H, W, C, ['wgrad11', 'wgrad3']).items():
                dwconv.WGRAD_PROGRAMS_PER_SM = shipped
                refs = snapshot(launch, outs, accs)
                row = res.setdefault(name, {}).setdefault(stage, {})
                for v in values:
                    dwconv.WGRAD_PROGRAMS_PER_SM = v
                    d, ok = rel_diff(snapshot(launch, outs, accs), refs, [TOL_F32] * len(outs))
                    if ok:
                        row[str(v)] = time_ms(launch, args.reps)
                    else:
                        print(f'  {stage} {name} {v}: differs from {shipped} (rel diff {d:.3g}), skipped', flush=True)
                print(f'{stage} {name:8s} ' + ' '.join(f'{v}: {ms * 1e3:6.1f} us' for v, ms in row.items()),
                      flush=True)
            torch.cuda.empty_cache()
    finally:
        dwconv.WGRAD_PROGRAMS_PER_SM = shipped
    totals = {}
    for name, stages in res.items():
        for ds in DATASETS:
            ss = [s for s in stages if s.startswith(ds)]
            totals[f'{ds} {name}'] = {str(v): sum(stages[s][str(v)] * BLOCKS[_stage_index(s)] for s in ss)
                                      for v in values if all(str(v) in stages[s] for s in ss)}
    print(f'\nper setting, stages weighted by their blocks (ms; shipped: {shipped}):')
    for key, tot in totals.items():
        print(f'{key:16s} ' + ' '.join(f'{v}: {ms:.3f}' for v, ms in tot.items()))
    _write_json(args.out, dict(meta=dict(device=torch.cuda.get_device_name(), reps=args.reps,
                                         seconds=time.time() - t0, shipped=shipped, values=values),
                               results=res, totals=totals))
    print(f'wrote {args.out} ({time.time() - t0:.0f} s)')


def _write_json(path, obj):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(obj, f, indent=1)


def write(args, entries, res, summary, t0):
    _write_json(args.out, dict(meta=dict(device=torch.cuda.get_device_name(), reps=args.reps,
                                         seconds=time.time() - t0,
                                         candidates={e: [cfg_str(c) for c in CANDIDATES[e]] for e in entries}),
                               results=res, summary=summary))
    if summary is not None:
        print(f'wrote {args.out} ({time.time() - t0:.0f} s)')


def summarize(res, entries):
    """Per V3_TILES entry and stage (and summed per dataset): the config with the least time summed over the
    entry's kernels, against the default. Per kernel and stage: its own best."""
    rows = []
    print(f'\n{"entry":12s} {"stage":26s} {"best":10s} {"ms":>8s} {"default ms":>10s} {"speedup":>7s}   '
          'per-kernel best (speedup)')
    for entry in entries:
        names = [k for k in KERNELS if KERNELS[k] == entry]
        stages = list(res[names[0]])
        groups = [(s, [s]) for s in stages] + [(f'all {ds}', ss) for ds in DATASETS
                                               if len(ss := [s for s in stages if s.startswith(ds)]) > 1]
        for label, ss in groups:
            tot = {}
            for cfg in CANDIDATES[entry]:
                ts = [res[n][s]['ms'].get(cfg_str(cfg)) for n in names for s in ss]
                if None not in ts:  # a setting: each stage's kernels run once per block of the stage
                    tot[cfg_str(cfg)] = sum(t * (BLOCKS[_stage_index(s)] if len(ss) > 1 else 1)
                                            for t, s in zip(ts, [s for _ in names for s in ss]))
            if not tot:
                continue
            best = min(tot, key=tot.get)
            dflt = tot.get(cfg_str(DEFAULT[entry]), float('nan'))
            per = '' if len(ss) > 1 else ', '.join(
                f'{n}:{r["best"]} ({(r["default_ms"] or float("nan")) / r["best_ms"]:.2f})'
                for n, r in ((n, res[n][ss[0]]) for n in names) if 'best' in r)
            rows.append(dict(entry=entry, stage=label, best=best, ms=tot[best], default_ms=dflt,
                             speedup=dflt / tot[best], per_kernel=per))
            print(f'{entry:12s} {label:26s} {best:10s} {tot[best]:8.4f} {dflt:10.4f} {dflt / tot[best]:7.2f}   {per}')
    return rows


if __name__ == '__main__':
    main()
