"""A cheaper launch path for our Triton kernels.

`kernel[grid](...)` costs tens to hundreds of microseconds of host time: Triton binds and specializes every argument,
builds a string key, looks the compiled kernel up, and its C launcher then checks every tensor argument with
`cuPointerGetAttribute` (slow on virtualised GPUs). A Conv2Former block launches about twenty of our kernels per
training step, so on the machines we measured this host time, not the GPU, set the speed of the small stages.

`FastLauncher(kernel)` launches the FIRST call of each specialization through Triton unchanged and keeps the compiled
kernel it returns, under a key made of what Triton specializes on for our kernels (each tensor's dtype and 16-byte
alignment, each constexpr's value, the width of each unspecialized integer, the launch options and the device).
Later calls with that key go straight to the compiled kernel's launcher with raw device pointers (ints, which the
launcher takes as they are). Same binary, same arguments, same stream. Anything unusual (launch hooks of a
profiler, pre-run hooks, the interpreter, an unknown Triton version, an error) takes Triton's normal path;
`MMCONV2FORMER_TRITON_FAST_LAUNCH=0` turns the shortcut off.
"""
import os

import torch

try:  # the one place that imports triton: the kernel modules take triton, tl and HAS_TRITON from here
    import triton
    import triton.language as tl
    from triton.runtime.jit import JITFunction
    try:
        from triton import knobs as _knobs
    except ImportError:  # pragma: no cover - older triton
        _knobs = None
    from triton.runtime.driver import driver as _driver
    HAS_TRITON = True
except Exception:  # pragma: no cover - triton missing or broken
    triton = None
    tl = None
    JITFunction = None
    _knobs = None
    _driver = None
    HAS_TRITON = False

_ENABLED = os.environ.get('MMCONV2FORMER_TRITON_FAST_LAUNCH', '1').lower() not in ('0', 'false', 'off', 'no')
STATS = {'fast': 0, 'triton': 0}


def _version():
    try:
        return tuple(int(v) for v in triton.__version__.split('.')[:2])
    except Exception:
        return (0, 0)


# the launch protocol read below (CompiledKernel.run(grid, stream, function, packed metadata, launch metadata,
# hooks, *all arguments in signature order)) is the one of triton 3.3 to 3.8
_SUPPORTED = (3, 3) <= _version() < (3, 9)


def _hooks_active() -> bool:
    if _knobs is None:
        return True
    rt = _knobs.runtime
    for hook in (rt.launch_enter_hook, rt.launch_exit_hook):
        if hook is not None and getattr(hook, 'calls', hook):
            return True
    return False


class FastLauncher:
    """`FastLauncher(fn)[grid](*all_args_in_order, num_warps=...)`: see the module docstring."""

    def __init__(self, fn):
        self.fn = fn
        self.enabled = (_ENABLED and _SUPPORTED and JITFunction is not None and isinstance(fn, JITFunction)
                        and hasattr(fn, 'params'))
        if self.enabled:
            self.kinds = tuple('c' if p.is_constexpr else ('d' if p.do_not_specialize else 's') for p in fn.params)
        self.kernels = {}

    def __getitem__(self, grid):
        def launch(*args, **options):
            return self.launch(grid, args, options)
        return launch

    def launch(self, grid, args, options):
        fn = self.fn
        if (not self.enabled or len(args) != len(self.kinds) or fn.pre_run_hooks or _hooks_active()
                or not args[0].is_cuda):
            STATS['triton'] += 1
            return fn[grid](*args, **options)
        # one pass over the arguments: the raw values handed to the launcher and the specialization key
        raw = []
        spec = []
        for kind, a in zip(self.kinds, args):
            if isinstance(a, torch.Tensor):
                ptr = a.data_ptr()
                raw.append(ptr)
                spec.append((a.dtype, ptr % 16 == 0))
                continue
            raw.append(a)
            if type(a) is int:
                spec.append(-2 ** 31 <= a < 2 ** 31 if kind == 'd' else a)
            elif type(a) is float:
                spec.append(float if kind != 'c' else a)
            else:
                spec.append((type(a), a))
        device = torch.cuda.current_device()  # Triton launches on the current device and its current stream
        key = (device, tuple(sorted(options.items())) if options else (), tuple(spec))
        hit = self.kernels.get(key)
        if hit is None:
            STATS['triton'] += 1
            kernel = fn[grid](*args, **options)
            if all(hasattr(kernel, a) for a in ('run', 'function', 'packed_metadata')):
                self.kernels[key] = (kernel.run, kernel.function, kernel.packed_metadata)
            return kernel
        run, function, metadata = hit
        stream = _driver.active.get_current_stream(device)
        STATS['fast'] += 1
        run(grid[0], grid[1] if len(grid) > 1 else 1, grid[2] if len(grid) > 2 else 1, stream, function, metadata,
            None, None, None, *raw)
        return None


# Host-side integer helpers in plain Python: triton.cdiv / triton.next_power_of_2 are constexpr functions whose call
# overhead (several us) showed up in the per-block host time.
def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()
