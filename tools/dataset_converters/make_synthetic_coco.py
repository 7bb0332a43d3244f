"""Write the small synthetic COCO-format dataset used by the detection quickstart.

    python tools/dataset_converters/make_synthetic_coco.py --out data/synthetic_coco \
        --num-train 240 --num-val 48 --seed 0

Re-running with the same arguments reuses the folder; other arguments regenerate it.
"""
import argparse

from mmconv2former.datasets.synthetic_coco import DEFAULT_CLASSES, SHAPES, generate_synthetic_coco


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/synthetic_coco', help='dataset root to write')
    parser.add_argument('--num-train', type=int, default=240, help='training images')
    parser.add_argument('--num-val', type=int, default=48, help='validation images')
    parser.add_argument('--size', type=int, nargs=2, default=(128, 128), metavar=('H', 'W'), help='image size')
    parser.add_argument('--classes', nargs='+', default=list(DEFAULT_CLASSES), choices=sorted(SHAPES),
                        help='shape classes, in category-id order (the quickstart config expects the default)')
    parser.add_argument('--max-objects', type=int, default=4, help='objects per image: 1 to this many')
    parser.add_argument('--seed', type=int, default=0, help='random seed (same seed, same files)')
    return parser.parse_args()


def main():
    args = parse_args()
    written = generate_synthetic_coco(args.out, args.num_train, args.num_val, seed=args.seed, size=tuple(args.size),
                                      classes=args.classes, max_objects=args.max_objects)
    state = 'written' if written else 'already up to date'
    print(f'{args.out} ({state}): {args.num_train} training / {args.num_val} validation images of '
          f'{args.size[0]}x{args.size[1]}, classes {", ".join(args.classes)}')


if __name__ == '__main__':
    main()
