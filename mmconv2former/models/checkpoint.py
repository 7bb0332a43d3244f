"""Turning the authors' released classifier files into Conv2Former backbone weights, strictly.

Released files are timm-style `.pth.tar` dicts: `state_dict`, maybe `state_dict_ema`, `args` (argparse.Namespace),
`optimizer`, `epoch`, ... The body (`downsample_layers.*`, `stages.*`) loads unchanged; the classifier (`head.*`,
`pred.*`) is dropped. Unlike mmengine's `Pretrained` (strict=False: missing, unexpected and mis-shaped keys only
warn), every body key must be present with the model's shape, or loading stops with the key and both shapes.
"""
import os.path as osp
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.logging import MMLogger

from ..utils.checkpoint_io import load_checkpoint_file
from .backbones.conv2former import ARCH_SETTINGS, NUM_STAGES

STATE_DICT_KEYS = ('state_dict', 'state_dict_ema')
CLASSIFIER_PREFIXES = ('head.', 'pred.')
BODY_PREFIXES = ('downsample_layers.', 'stages.')
RELEASE_FILES = {  # the file names our configs expect (rename the downloaded release to these)
    'nano': 'conv2former-n_in1k.pth.tar (kernel 7, or the early kernel-11 file with arch=dict(..., kernel_size=11))',
    'tiny': 'conv2former-t_in1k.pth.tar',
    'small': 'conv2former-s_in1k.pth.tar (or the ImageNet-22k fine-tuned conv2former-s_in22k-ft-in1k.pth.tar)',
    'base': 'conv2former-b_in1k.pth.tar (kernel 11; the 22k release has kernel 7: '
            'conv2former-b-k7_in22k-ft-in1k.pth.tar)',
    'large': 'conv2former-l_in22k-ft-in1k.pth.tar (224) or conv2former-l_in22k-ft-in1k-384.pth.tar',
}
WEIGHTS_HELP = ('The released ImageNet weights are on the authors\' page (github.com/HVision-NKU/Conv2Former, '
                'links to a file host that needs a browser): download the file, put it at that path (see the '
                'README section "Pretrained weights"), or point the config at it with '
                '--cfg-options model.backbone.init_cfg.checkpoint=PATH.')


class PretrainedWeightsNotFoundError(FileNotFoundError):
    """The backbone's pretrained weights file is missing; the message says which release it must be and where to get
    it."""


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the backbone (other variant or kernel, missing or unexpected keys)."""


class WholeModelCheckpointError(CheckpointMismatchError):
    """A detector/segmentor checkpoint (keys under `backbone.`) given as backbone weights without a prefix."""


def select_state_dict(checkpoint: dict, checkpoint_key: str = 'state_dict') -> Tuple[Dict[str, torch.Tensor], str]:
    """Pick `state_dict` or `state_dict_ema` from a release; a plain state dict is returned as it is."""
    if checkpoint_key not in STATE_DICT_KEYS:
        raise ValueError(f'checkpoint_key must be one of {STATE_DICT_KEYS}, got {checkpoint_key!r}.')
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(f'expected a dict checkpoint, got {type(checkpoint).__name__}.')
    if checkpoint_key in checkpoint:
        return checkpoint[checkpoint_key], checkpoint_key
    wrapped = [k for k in checkpoint if k in STATE_DICT_KEYS or k == 'model']
    if wrapped:
        raise CheckpointMismatchError(
            f'checkpoint_key={checkpoint_key!r} is not in the file; it has {sorted(wrapped)}.')
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint, 'plain state dict'
    raise CheckpointMismatchError(
        f'the file is neither a state dict nor a release with {STATE_DICT_KEYS}; top-level keys: '
        f'{sorted(map(str, checkpoint))[:10]}.')


def infer_arch(state_dict: Dict[str, torch.Tensor]) -> Optional[dict]:
    """depths/dims/kernel_size of the body in a state dict (None if it has no Conv2Former body)."""
    try:
        dims = tuple(state_dict[f'stages.{i}.0.layer_scale_1'].shape[0] for i in range(NUM_STAGES))
        kernel = state_dict['stages.0.0.attn.att.2.weight'].shape[-1]
    except KeyError:
        return None
    depths = tuple(1 + max(int(k.split('.')[2]) for k in state_dict if k.startswith(f'stages.{i}.'))
                   for i in range(NUM_STAGES))
    return dict(depths=depths, dims=dims, kernel_size=kernel)


def describe_arch(arch: dict) -> str:
    for name, settings in ARCH_SETTINGS.items():
        if tuple(settings['depths']) == tuple(arch['depths']) and tuple(settings['dims']) == tuple(arch['dims']):
            suffix = '' if settings['kernel_size'] == arch['kernel_size'] else f" with kernel {arch['kernel_size']}"
            return f'Conv2Former-{name}{suffix}'
    return f"Conv2Former(depths={arch['depths']}, dims={arch['dims']}, kernel_size={arch['kernel_size']})"


def release_to_backbone(state_dict: Dict[str, torch.Tensor],
                        prefix: Optional[str] = None) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """Body weights of a release (or of a whole model, with `prefix`), and its classifier (`head.*`, `pred.*`),
    both under the model's key names.

    Pure and model-free: used by the backbone's loading and by tools/model_converters.
    """
    if prefix is not None:
        stripped = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not stripped:
            raise CheckpointMismatchError(f'no key of the checkpoint starts with prefix={prefix!r}; '
                                          f'first keys: {list(state_dict)[:5]}.')
        state_dict = stripped
    elif any(k.startswith('backbone.') for k in state_dict) and not any(k.startswith(BODY_PREFIXES)
                                                                        for k in state_dict):
        raise WholeModelCheckpointError(
            "this looks like a detector/segmentor checkpoint (keys start with 'backbone.'), not backbone weights. "
            "To resume or fine-tune a whole model use `load_from=PATH`; to take only its backbone use "
            "init_cfg=dict(type='Pretrained', checkpoint=PATH, prefix='backbone.').")
    state_dict = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state_dict.items()}
    classifier = {k: v for k, v in state_dict.items() if k.startswith(CLASSIFIER_PREFIXES)}
    body = {k: v for k, v in state_dict.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    return body, classifier


def check_compatible(model_state: Dict[str, torch.Tensor], body: Dict[str, torch.Tensor],
                     model_desc: str) -> List[str]:
    """Raise on any mismatch between the file's body and the model; return the model keys the file lacks
    that are expected to be new (output norms, BatchNorm counters)."""
    file_arch = infer_arch(body)
    model_arch = infer_arch(model_state)
    mismatched = [(k, tuple(v.shape), tuple(model_state[k].shape)) for k, v in body.items()
                  if k in model_state and v.shape != model_state[k].shape]
    if mismatched or (file_arch and model_arch and file_arch['depths'] != model_arch['depths']):
        key, file_shape, model_shape = mismatched[0] if mismatched else (None, None, None)
        detail = f' First mismatch: {key!r} is {file_shape} in the file but {model_shape} in the model.' if key else ''
        raise CheckpointMismatchError(
            f'the checkpoint holds {describe_arch(file_arch) if file_arch else "another network"} but the model is '
            f'{model_desc}.{detail} Build the backbone with the checkpoint\'s arch, e.g. arch={file_arch}.')
    unexpected = sorted(k for k in body if k not in model_state)
    if unexpected:
        raise CheckpointMismatchError(f'unexpected keys in the checkpoint (not in {model_desc}): {unexpected[:8]}'
                                      f'{" ..." if len(unexpected) > 8 else ""}.')
    absent = [k for k in model_state if k not in body]
    expected_new = [k for k in absent if k.startswith('norm') or k.endswith('num_batches_tracked')]
    missing = [k for k in absent if k not in expected_new]
    if missing:
        raise CheckpointMismatchError(f'keys of {model_desc} missing from the checkpoint: {missing[:8]}'
                                      f'{" ..." if len(missing) > 8 else ""}.')
    return expected_new


def load_pretrained_backbone(model, checkpoint: str, checkpoint_key: str = 'state_dict',
                             prefix: Optional[str] = None, map_location='cpu'):
    """Load released (or converted) weights into a `Conv2Former`, strictly; log one summary line."""
    model_desc = describe_arch(dict(depths=model.depths, dims=model.dims, kernel_size=model.kernel_size))
    path = osp.expanduser(checkpoint)
    if not osp.isfile(path):
        variant = model.arch_name and {'n': 'nano', 't': 'tiny', 's': 'small', 'b': 'base', 'l': 'large'}.get(
            model.arch_name.lower(), model.arch_name.lower())
        expected = RELEASE_FILES.get(variant, f'a release matching {model_desc}')
        raise PretrainedWeightsNotFoundError(f'Conv2Former pretrained weights not found at {checkpoint!r}. The '
                                             f'backbone is {model_desc}: it needs {expected}. {WEIGHTS_HELP}')
    raw = load_checkpoint_file(path, map_location=map_location)
    state_dict, source = select_state_dict(raw, checkpoint_key)
    body, classifier = release_to_backbone(state_dict, prefix)
    model_state = model.state_dict()
    try:
        expected_new = check_compatible(model_state, body, model_desc)
    except CheckpointMismatchError as error:
        raise CheckpointMismatchError(f'Cannot load {checkpoint!r} into Conv2Former: {error}') from None
    model.load_state_dict(body, strict=False)
    others = [k for k in STATE_DICT_KEYS if isinstance(raw, dict) and k in raw and k != source]
    new_norms = sorted({k.split('.')[0] for k in expected_new if k.startswith('norm')})
    MMLogger.get_current_instance().info(
        f'Conv2Former: loaded {len(body)} tensors of {model_desc} from {checkpoint!r} [{source}'
        f'{"; the file also has " + ", ".join(others) + ", chosen with init_cfg.checkpoint_key" if others else ""}]'
        f'{f"; dropped the classifier ({len(classifier)} head.*/pred.* tensors)" if classifier else ""}'
        f'{"; new, as expected: output norms " + ", ".join(new_norms) if new_norms else ""}.')
