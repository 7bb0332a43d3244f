"""Write the small synthetic ADE20K-layout dataset used by the segmentation quickstart.

    python tools/dataset_converters/make_synthetic_ade.py --out data/synthetic_ade \
        --num-train 400 --num-val 50 --seed 0

Re-running with the same arguments reuses the folder; other arguments regenerate it.
"""
import argparse

from mmconv2former.datasets.synthetic_ade import CLASSES, generate_synthetic_ade


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/synthetic_ade', help='dataset root to write')
    parser.add_argument('--num-train', type=int, default=400, help='training images')
    parser.add_argument('--num-val', type=int, default=50, help='validation images')
    parser.add_argument('--seed', type=int, default=0, help='random seed (same seed, same files)')
    parser.add_argument('--workers', type=int, default=1, help='processes drawing images (same files for any number)')
    return parser.parse_args()


def main():
    args = parse_args()
    written = generate_synthetic_ade(args.out, args.num_train, args.num_val, seed=args.seed,
                                     workers=args.workers)
    state = 'written' if written else 'already up to date'
    print(f'{args.out} ({state}): {args.num_train} training / {args.num_val} validation images, '
          f'classes 1..{len(CLASSES)} = {", ".join(CLASSES)} (0 = unlabelled)')


if __name__ == '__main__':
    main()
