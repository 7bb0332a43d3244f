"""Conv2Former (Hou et al., "Conv2Former: A Simple Transformer-Style ConvNet for Visual Recognition").

The modules below reproduce the authors' released classifier exactly: parameter names (`downsample_layers.*`,
`stages.*`, `head.*`, `pred.*`) and numerics, so released checkpoints load unchanged. `Conv2FormerBody` is the
plain network (also registered with timm in `..classifiers`), `Conv2Former` the OpenMMLab backbone around it.
"""
import logging
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmengine.logging import MMLogger, print_log
from mmengine.model import BaseModule
from timm.layers import DropPath
from torch.nn.modules.batchnorm import _BatchNorm

from ...registry import MODELS
from ...utils import memory_format_of

ARCH_SETTINGS: Dict[str, dict] = {
    'nano': dict(depths=(2, 2, 8, 2), dims=(64, 128, 256, 512), kernel_size=7),
    'tiny': dict(depths=(3, 3, 12, 3), dims=(72, 144, 288, 576), kernel_size=11),
    'small': dict(depths=(4, 4, 32, 4), dims=(72, 144, 288, 576), kernel_size=11),
    'base': dict(depths=(4, 4, 34, 4), dims=(96, 192, 384, 768), kernel_size=11),
    'large': dict(depths=(4, 4, 48, 4), dims=(128, 256, 512, 1024), kernel_size=11),
}
ARCH_ALIASES = {'n': 'nano', 't': 'tiny', 's': 'small', 'b': 'base', 'l': 'large'}
NUM_STAGES = 4



class ArgumentError(ValueError):
    """An argument or input of Conv2Former outside what is allowed; the message names the field and what it allows
    (the tools print it without a stack trace)."""

def resolve_arch(arch: Union[str, dict]) -> dict:
    """Turn `arch` (a variant name or a dict of depths/dims/kernel_size) into a validated settings dict."""
    if isinstance(arch, str):
        name = ARCH_ALIASES.get(arch.lower(), arch.lower())
        if name not in ARCH_SETTINGS:
            raise ArgumentError(f'Conv2Former: unknown arch {arch!r}; allowed: {sorted(ARCH_SETTINGS)} '
                             f'(or their initials {sorted(ARCH_ALIASES)}), or a dict with keys '
                             "'depths', 'dims', 'kernel_size'.")
        return dict(ARCH_SETTINGS[name])
    if not isinstance(arch, dict):
        raise ArgumentError(f'Conv2Former: arch must be a str or a dict, got {type(arch).__name__}.')
    missing = {'depths', 'dims', 'kernel_size'} - set(arch)
    extra = set(arch) - {'depths', 'dims', 'kernel_size'}
    if missing or extra:
        raise ArgumentError(f"Conv2Former: an arch dict needs exactly the keys 'depths', 'dims', 'kernel_size'; "
                         f'missing {sorted(missing)}, unexpected {sorted(extra)}.')
    depths, dims, kernel_size = tuple(arch['depths']), tuple(arch['dims']), arch['kernel_size']
    if len(depths) != NUM_STAGES or len(dims) != NUM_STAGES:
        raise ArgumentError(f'Conv2Former: arch depths and dims need {NUM_STAGES} entries each, '
                         f'got depths={depths}, dims={dims}.')
    if not all(isinstance(d, int) and d >= 1 for d in depths):
        raise ArgumentError(f'Conv2Former: arch depths must be positive integers, got {depths}.')
    if not all(isinstance(d, int) and d >= 2 and d % 2 == 0 for d in dims):
        raise ArgumentError(f'Conv2Former: arch dims must be even integers >= 2 (the stem uses dims[0] // 2), '
                            f'got {dims}.')
    if not (isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1):
        raise ArgumentError(f'Conv2Former: arch kernel_size must be a positive odd integer, got {kernel_size!r}.')
    return dict(depths=depths, dims=dims, kernel_size=kernel_size)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (the released model's channels_first LayerNorm).

    Same `weight`/`bias` keys; computed with F.layer_norm on a channels-last view, which is what AMP and
    mmengine's norm rules (`norm_decay_mult`) recognise.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        # keep the input's memory format: NCHW on the reference path, channels-last (no copy) on the fast path
        return y.permute(0, 3, 1, 2).contiguous(memory_format=memory_format_of(x))


class ConvMod(nn.Module):
    """Convolutional modulation: proj(DWConv_k(GELU(Conv1x1(x))) * Conv1x1(x)) on the normalised input."""

    def __init__(self, dim: int, kernel_size: int):
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.att = nn.Sequential(
            nn.Conv2d(dim, dim, 1),
            nn.GELU(),
            nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim))
        self.v = nn.Conv2d(dim, dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return self.proj(self.att(x) * self.v(x))


class MLP(nn.Module):
    """Conv1x1 -> GELU -> (+ GELU(DWConv3x3)) -> Conv1x1. `pos` is in the released weights, not the paper figure."""

    def __init__(self, dim: int, mlp_ratio: int = 4):
        super().__init__()
        hidden = dim * mlp_ratio
        self.norm = LayerNorm2d(dim)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.pos = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1(self.norm(x)))
        x = x + self.act(self.pos(x))
        return self.fc2(x)


class Block(nn.Module):
    """x + drop_path(ls1 * ConvMod(x)), then x + drop_path(ls2 * MLP(x))."""

    def __init__(self, dim: int, kernel_size: int, drop_path: float = 0., layer_scale_init_value: float = 1e-6):
        super().__init__()
        self.attn = ConvMod(dim, kernel_size)
        self.mlp = MLP(dim)
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.layer_scale_1[:, None, None] * self.attn(x))
        return x + self.drop_path(self.layer_scale_2[:, None, None] * self.mlp(x))


def build_stem(in_channels: int, dim: int, norm_cfg: dict) -> nn.Sequential:
    """Stride-4 stem: conv-GELU-BN twice, then a 2x2 stride-2 conv (BN after GELU, as released)."""
    half = dim // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, half, 3, stride=2, padding=1, bias=False),
        nn.GELU(),
        build_norm_layer(norm_cfg, half)[1],
        nn.Conv2d(half, half, 3, stride=1, padding=1, bias=False),
        nn.GELU(),
        build_norm_layer(norm_cfg, half)[1],
        nn.Conv2d(half, dim, 2, stride=2, bias=False))


class Conv2FormerBody(nn.Module):
    """The released network's body: `downsample_layers` (stem + 3 downsamplings) and `stages`.

    `feature_info` describes the four outputs like timm does (channels, reduction, module name).
    """

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 norm_cfg: Optional[dict] = None,
                 **kwargs):
        super().__init__(**kwargs)  # cooperative: Conv2Former passes init_cfg on to BaseModule
        settings = resolve_arch(arch)
        self.depths, self.dims = settings['depths'], settings['dims']
        self.kernel_size = settings['kernel_size']
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ArgumentError(f'Conv2Former: in_channels must be a positive integer, got {in_channels!r}.')
        if not 0 <= drop_path_rate < 1:
            raise ArgumentError(f'Conv2Former: drop_path_rate must be in [0, 1), got {drop_path_rate!r}.')
        self.in_channels = in_channels
        norm_cfg = norm_cfg or dict(type='BN', requires_grad=True)

        self.downsample_layers = nn.ModuleList([build_stem(in_channels, self.dims[0], norm_cfg)])
        for i in range(1, NUM_STAGES):
            self.downsample_layers.append(nn.Sequential(
                LayerNorm2d(self.dims[i - 1]), nn.Conv2d(self.dims[i - 1], self.dims[i], 2, stride=2)))

        rates = torch.linspace(0, drop_path_rate, sum(self.depths)).tolist()
        self.stages = nn.ModuleList()
        for i, depth in enumerate(self.depths):
            first = sum(self.depths[:i])
            self.stages.append(nn.Sequential(*[
                Block(self.dims[i], self.kernel_size, rates[first + j], layer_scale_init_value)
                for j in range(depth)]))
        self.feature_info = [
            dict(num_chs=self.dims[i], reduction=2 ** (i + 2), module=f'stages.{i}') for i in range(NUM_STAGES)]

    @property
    def min_input_size(self) -> int:
        """Smallest height/width that still leaves one pixel at stride 32."""
        return 31

    def check_input(self, x: torch.Tensor):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ArgumentError(f'Conv2Former expects input of shape (N, {self.in_channels}, H, W) '
                             f'(in_channels={self.in_channels}), got {tuple(x.shape)}.')
        if min(x.shape[-2:]) < self.min_input_size:
            raise ArgumentError(f'Conv2Former: input {tuple(x.shape[-2:])} is smaller than {self.min_input_size} '
                             'pixels on a side; the stride-32 stage would be empty. Resize or pad the images.')

    def init_weights_from_scratch(self):
        """The released model's initialisation: truncated normal (std .02) for conv/linear weights, zero bias."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


@MODELS.register_module()
class Conv2Former(Conv2FormerBody, BaseModule):
    """Conv2Former backbone for MMDetection / MMSegmentation.

    Args:
        arch: 'nano', 'tiny', 'small', 'base', 'large' (or 'n'/'t'/'s'/'b'/'l'), or a dict with `depths`, `dims`
            and `kernel_size` (e.g. the kernel-7 base release: dict(depths=(4, 4, 34, 4), dims=(96, 192, 384, 768),
            kernel_size=7)).
        in_channels: channels of the input images.
        out_indices: stages whose outputs are returned (0..3, negatives allowed). Each gets its own channel
            LayerNorm `norm{i}`. Stages after the last requested one are not run and are frozen.
        drop_path_rate: stochastic depth, growing linearly from 0 over all blocks.
        layer_scale_init_value: initial layer-scale (only used when training from scratch).
        frozen_stages: mmdet's convention: -1 freezes nothing, 0 the stem, k >= 1 the stem and stages 0..k-1 (with
            their downsampling layers and output norms). Frozen parts are in eval mode with requires_grad=False.
        norm_eval: keep the stem's BatchNorms in eval mode while training (small per-GPU batches).
        norm_cfg: norm of the stem (BN; SyncBN for multi-GPU).
        with_cp: activation checkpointing per block (saves memory, costs a recompute).
        fast_path: 'auto' (default: the fused Triton kernels on CUDA inputs when Triton works, else PyTorch ops),
            True (the kernels, required on CUDA) or False (PyTorch ops). Same parameters and numerics; on an H200
            the kernels train 1.2-2.2x faster eagerly (the host's speed decides) with half the memory
            (docs/performance.md). CPU always uses PyTorch.
        cuda_graph: replay the forward, and in training the backward too, from CUDA graphs captured per input
            shape, which removes the host time of the launches (H200: COCO-size training 57 -> 30 ms, one
            800x1344 image 12.1 -> 5.8 ms; docs/performance.md). Pays off when shapes repeat: fixed-size training
            crops, sliding-window or fixed-size inference, and mmdet's keep-ratio batches (a new shape costs one
            capture). All shapes share one memory pool, one segment sized for the largest shape (up to 256 graphs,
            least recently used dropped); it turns itself off with a warning when shapes keep changing without
            repeats. While a training forward waits for
            its backward, further calls run eagerly. The stem runs eagerly (its BatchNorms may be SyncBN); not used
            under torch.compile, nor in training with with_cp. Default False.
        init_cfg: None (train from scratch) or dict(type='Pretrained', checkpoint=PATH, checkpoint_key='state_dict'
            or 'state_dict_ema', prefix=None). Loading is strict for the body: see `..checkpoint`.
        pretrained: must stay None. Only here to explain the error: mmseg's EncoderDecoder hands its
            `model.pretrained` to the backbone, and mmseg's ResNet-based configs set it to ResNet weights.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: Optional[dict] = None,
                 with_cp: bool = False,
                 fast_path: Union[str, bool] = 'auto',
                 cuda_graph: bool = False,
                 init_cfg: Optional[dict] = None,
                 pretrained: Optional[str] = None):
        if pretrained is not None:
            raise ArgumentError(
                f'Conv2Former: pretrained must be None, got {pretrained!r} (mmseg passes model.pretrained on to the '
                'backbone; a ResNet-based base config sets it to ResNet weights). Set model.pretrained=None and load '
                "Conv2Former weights with backbone init_cfg=dict(type='Pretrained', checkpoint=PATH).")
        super().__init__(arch, in_channels, drop_path_rate, layer_scale_init_value, norm_cfg, init_cfg=init_cfg)
        self.arch_name = arch if isinstance(arch, str) else None
        self.out_indices = self._normalize_out_indices(out_indices)
        if not (isinstance(frozen_stages, int) and -1 <= frozen_stages <= NUM_STAGES):
            raise ArgumentError(f'Conv2Former: frozen_stages must be an int in [-1, {NUM_STAGES}] '
                             f'(-1: nothing, 0: stem, k: stem + stages 0..k-1), got {frozen_stages!r}.')
        if fast_path not in ('auto', True, False):
            raise ArgumentError(f"Conv2Former: fast_path must be 'auto', True or False, got {fast_path!r}.")
        if not isinstance(cuda_graph, bool):
            raise ArgumentError(f'Conv2Former: cuda_graph must be True or False, got {cuda_graph!r}.')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.fast_path = fast_path
        self.cuda_graph = cuda_graph
        self._graphs = None  # ShapeGraphs, made on first use
        self._warned_cp = False
        self._logged_path = None  # (fast?, device) last announced in the log
        self.num_stages_run = max(self.out_indices) + 1
        for i in self.out_indices:
            self.add_module(f'norm{i}', LayerNorm2d(self.dims[i]))
        self._freeze_stages()

    @staticmethod
    def _normalize_out_indices(out_indices) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        if not isinstance(out_indices, Sequence) or len(out_indices) == 0:
            raise ArgumentError(f'Conv2Former: out_indices must be an int or a non-empty sequence of ints in '
                             f'[-{NUM_STAGES}, {NUM_STAGES - 1}], got {out_indices!r}.')
        normalized = []
        for index in out_indices:
            if not isinstance(index, int) or not -NUM_STAGES <= index < NUM_STAGES:
                raise ArgumentError(f'Conv2Former: out_indices entries must be ints in [-{NUM_STAGES}, '
                                 f'{NUM_STAGES - 1}], got {index!r} in {tuple(out_indices)!r}.')
            normalized.append(index % NUM_STAGES)
        if len(set(normalized)) != len(normalized):
            raise ArgumentError(f'Conv2Former: out_indices has duplicates after normalisation: {tuple(out_indices)!r}.')
        return tuple(sorted(normalized))

    @property
    def out_channels(self) -> Tuple[int, ...]:
        return tuple(self.dims[i] for i in self.out_indices)

    def _frozen_modules(self):
        if self.frozen_stages >= 0:
            yield self.downsample_layers[0]
        for i in range(self.frozen_stages):
            if i > 0:
                yield self.downsample_layers[i]
            yield self.stages[i]
            if i in self.out_indices:
                yield getattr(self, f'norm{i}')
        # Stages after the last requested output never get gradients (they are not run): freezing them keeps
        # DDP from failing on unused parameters.
        for i in range(self.num_stages_run, NUM_STAGES):
            yield self.downsample_layers[i]
            yield self.stages[i]

    def _freeze_stages(self):
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self):
        from ..checkpoint import load_pretrained_backbone
        logger = MMLogger.get_current_instance()
        if self.init_cfg is None:
            logger.info('Conv2Former: no init_cfg, training from scratch (truncated-normal init).')
            self.init_weights_from_scratch()
        elif self.init_cfg.get('type') == 'Pretrained':
            load_pretrained_backbone(self, **{k: v for k, v in self.init_cfg.items() if k != 'type'})
        else:
            super().init_weights()
        self._is_init = True

    def _use_fast_path(self, x: torch.Tensor) -> bool:
        if self.fast_path is False or not x.is_cuda:
            return False
        from ...ops import fast_path_available
        available = fast_path_available(x)
        if self.fast_path is True and not available:
            raise RuntimeError('Conv2Former: fast_path=True but the Triton kernels are not available '
                               '(is triton installed?); use fast_path="auto" or False.')
        if self._logged_path != (available, x.device) and not torch.compiler.is_compiling():
            self._logged_path = (available, x.device)
            print_log(f'Conv2Former: {"fused Triton fast path" if available else "PyTorch reference path"} on '
                      f'{x.device}', logger='current')
        return available

    def _run_blocks(self, stage: nn.Sequential, x: torch.Tensor, fast: bool) -> torch.Tensor:
        if fast:
            from ...ops import block_forward_channels_last as block_forward
            x = x.permute(0, 2, 3, 1).contiguous()
        for block in stage:
            forward = (lambda t, b=block: block_forward(b, t)) if fast else block
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(forward, x, use_reentrant=False)
            else:
                x = forward(x)
        return x.permute(0, 3, 1, 2) if fast else x  # fast: stays channels-last in memory

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self.check_input(x)
        fast = self._use_fast_path(x)
        x = self._stem(x, fast)
        if self.cuda_graph and fast and self._graphs_apply():
            if self._graphs is None:
                from ...ops.cuda_graph import ShapeGraphs
                self._graphs = ShapeGraphs(owner='Conv2Former(cuda_graph=True)')
            body = [*self.downsample_layers[1:self.num_stages_run], *self.stages[:self.num_stages_run],
                    *(getattr(self, f'norm{i}') for i in self.out_indices)]
            return self._graphs.run(lambda t: self._forward_body(t, True, graphed=True), x, body, mode=self.training)
        return self._forward_body(x, fast)

    def _graphs_apply(self) -> bool:
        """CUDA graphs are used except under torch.compile and, in training, with activation checkpointing (its
        recompute would be captured too: nothing saved)."""
        if torch.compiler.is_compiling():
            return False
        if self.with_cp and torch.is_grad_enabled():
            if not self._warned_cp:
                self._warned_cp = True
                print_log('Conv2Former: cuda_graph=True with with_cp=True: training steps run eagerly (with_cp '
                          'recomputes the blocks in the backward; a graph would keep their activations anyway).',
                          logger='current', level=logging.WARNING)
            return False
        return True

    def _stem(self, x: torch.Tensor, fast: bool) -> torch.Tensor:
        """The stride-4 stem. It stays outside the CUDA graphs: its BatchNorms may be SyncBN, whose collectives must
        run in step on every rank."""
        if fast:
            # The fused blocks work on NHWC rows: run the stem and the downsampling layers channels-last too
            # (cuDNN's NHWC convolutions, PyTorch's channels-last BatchNorm, no layout copies between stages).
            x = x.contiguous(memory_format=torch.channels_last)
        return self.downsample_layers[0](x)

    def _forward_body(self, x: torch.Tensor, fast: bool, graphed: bool = False) -> Tuple[torch.Tensor, ...]:
        """Stages (and downsamplings) from the stem's output on; the requested outputs."""
        # The LayerNorms outside the blocks run as Triton row kernels (less GPU time) where their host time does not
        # count (captured in a CUDA graph) or is small (no autograd: inference); in eager training their autograd
        # node cost more host time than PyTorch's (docs/performance.md), which bounds those steps.
        row_norms = fast and (graphed or not torch.is_grad_enabled())
        outs = []
        for i in range(self.num_stages_run):
            if i > 0:
                x = self._downsample(i, x, row_norms)
            x = self._run_blocks(self.stages[i], x, fast)
            if i in self.out_indices:
                # outputs in the standard NCHW layout: the necks' and heads' ops (mmcv's RoIAlign among them)
                # assume contiguous NCHW
                outs.append(self._out_norm(i, x, row_norms).contiguous())
        return tuple(outs)

    def _downsample(self, i: int, x: torch.Tensor, row_norms: bool) -> torch.Tensor:
        if not row_norms:
            return self.downsample_layers[i](x)
        from ...ops import compute_dtype, layer_norm_channels_last
        norm, conv = self.downsample_layers[i]
        # in the dtype the convolution computes in (it would cast the fp32 that autocast makes LayerNorm write)
        return conv(layer_norm_channels_last(norm, x, compute_dtype(x)))

    def _out_norm(self, i: int, x: torch.Tensor, row_norms: bool) -> torch.Tensor:
        norm = getattr(self, f'norm{i}')
        if not row_norms:
            return norm(x)
        from ...ops import layer_norm_channels_last
        # the reference's dtype: autocast runs LayerNorm in fp32
        return layer_norm_channels_last(norm, x, torch.float32 if torch.is_autocast_enabled(x.device.type) else x.dtype)

    def get_layer_depth(self, param_name: str, decay_type: str = 'layer_wise') -> Tuple[int, int]:
        """Layer id of a backbone parameter for layer-wise lr decay, and the number of layers.

        layer_wise (all variants get the same 14 layers, so one decay rate means the same thing for each):
          stem -> 0; stage 0 -> 1; stage 1 -> 2; stage 2 block j -> 3 + floor(9 * j / depth_2) (spread over 3..11,
          ConvNeXt's `3 + j // 3` when depth_2 = 27); stage 3 -> 12; downsample_layers.i goes with stage i's first
          block; output norms and anything outside the backbone -> 13 (no decay).
        stage_wise: stem -> 0, downsample_layers.i and stage i -> i + 1, output norms -> 5 (6 layers).
        """
        if decay_type == 'layer_wise':
            num_layers = 14
        elif decay_type == 'stage_wise':
            num_layers = NUM_STAGES + 2
        else:
            raise ValueError(f"decay_type must be 'layer_wise' or 'stage_wise', got {decay_type!r}.")
        parts = param_name.split('.')
        if parts[0] not in ('downsample_layers', 'stages'):
            return num_layers - 1, num_layers
        stage = int(parts[1])
        if parts[0] == 'downsample_layers':
            if stage == 0:
                return 0, num_layers
            block = 0
        else:
            block = int(parts[2])
        if decay_type == 'stage_wise':
            return stage + 1, num_layers
        if stage < 2:
            return stage + 1, num_layers
        if stage == 2:
            return 3 + (9 * block) // self.depths[2], num_layers
        return 12, num_layers
