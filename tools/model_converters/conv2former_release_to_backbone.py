"""Turn a released Conv2Former classifier file into a small plain backbone state dict.

The output holds only tensors (`downsample_layers.*`, `stages.*`), so it loads with torch's strictest
`weights_only=True` and with `init_cfg=dict(type='Pretrained', checkpoint=OUT)`; the classifier is dropped unless
--keep-classifier (`head.*`, `pred.*`: a whole classifier for timm's `conv2former_*`, with the weights chosen by
--checkpoint-key rather than timm's EMA default).

    python tools/model_converters/conv2former_release_to_backbone.py \
        conv2former_t.pth.tar checkpoints/conv2former-t_in1k.pth
"""
import argparse
import os
import os.path as osp

import torch

from mmconv2former.models.checkpoint import (
    CheckpointMismatchError,
    WholeModelCheckpointError,
    describe_arch,
    infer_arch,
    release_to_backbone,
    select_state_dict,
)
from mmconv2former.utils.checkpoint_io import load_checkpoint_file


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='released .pth.tar (or any Conv2Former state dict)')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument('--checkpoint-key', default='state_dict', choices=['state_dict', 'state_dict_ema'],
                        help='which weights of the release to take (default: state_dict)')
    parser.add_argument('--prefix', default=None, help="key prefix to strip, e.g. 'backbone.' for a detector")
    parser.add_argument('--keep-classifier', action='store_true',
                        help='keep head.* and pred.* (a whole classifier, e.g. for timm) instead of the body alone')
    return parser.parse_args()


def main():
    args = parse_args()
    state_dict, source = select_state_dict(load_checkpoint_file(args.src), args.checkpoint_key)
    try:
        body, classifier = release_to_backbone(state_dict, args.prefix)
    except WholeModelCheckpointError:  # its message names init_cfg's prefix; here it is the converter's option
        raise SystemExit(f"{args.src}: a detector/segmentor checkpoint (keys start with 'backbone.'); take its "
                         'backbone with --prefix backbone.') from None
    except CheckpointMismatchError as error:
        raise SystemExit(f'{args.src}: {error}') from None
    arch = infer_arch(body)
    if arch is None:
        raise SystemExit(f'{args.src}: no Conv2Former body (stages.*) found in {source}.')
    if args.keep_classifier:
        if not classifier:
            raise SystemExit(f'{args.src}: --keep-classifier, but {source} has no classifier (head.*, pred.*).')
        body.update(classifier)
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save({k: v.contiguous() for k, v in body.items()}, args.dst)
    head = (f'kept its {len(classifier)} classifier tensors' if args.keep_classifier else
            f'dropped its {len(classifier)} classifier tensors' if classifier else 'it had no classifier')
    print(f'{describe_arch(arch)} (kernel {arch["kernel_size"]}): wrote {len(body)} tensors from {source} to '
          f'{args.dst}; {head}.')


if __name__ == '__main__':
    main()
