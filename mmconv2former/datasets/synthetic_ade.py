"""A small, seeded dataset in the ADE20K folder layout, for quickstarts and tests.

Layout (what mmseg's ``ADE20KDataset``/``BaseSegDataset`` read)::

    <out>/images/{training,validation}/synthetic_{split}_{i:05d}.jpg
    <out>/annotations/{training,validation}/synthetic_{split}_{i:05d}.png
    <out>/synthetic_ade.json          # what was generated (seed, counts, classes)

Label PNGs follow the ADE20K convention: 0 is "unlabelled" (ignored once
``reduce_zero_label=True`` maps it to 255) and the classes are 1..K.

Like real classes, these have typical colours, but colour alone does not solve
them. Sky is a smooth blue gradient, ground grainy and earth-coloured. Circles
and rectangles are filled alike (a random bright warm colour), so only *shape*
tells them apart; stripes and checkerboards are painted alike (a bright cool
colour and a dark one) inside random polygons and ellipses, so only *texture*
tells them apart (a striped disc is "stripes", not "circle").
Each image has its own random generator derived from ``(seed, split, index)``,
so the first N images are the same whatever the requested count.
"""
import json
import multiprocessing
import shutil
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

CLASSES = ('sky', 'ground', 'circle', 'rectangle', 'stripes', 'checkerboard')
PALETTE = [[6, 230, 230], [120, 120, 70], [255, 51, 7], [204, 5, 255],
           [255, 184, 6], [11, 102, 255]]
SPLITS = ('training', 'validation')
MANIFEST = 'synthetic_ade.json'
# Bump when the drawing changes, so that folders made by an older version are regenerated.
VERSION = 2  # bump when images change: an existing folder of another version is regenerated
# Label values written to the PNGs (ADE convention: class i is stored as i + 1).
SKY, GROUND, CIRCLE, RECTANGLE, STRIPES, CHECKERBOARD = range(1, len(CLASSES) + 1)
UNLABELLED = 0


def _smooth_noise(rng, h, w, scale):
    """Gaussian noise blurred over ``scale`` pixels, unit std: a grain texture."""
    noise = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), scale)
    return noise / (noise.std() + 1e-6)


def _hsv_colour(rng, hue, sat, val):
    """A random BGR colour in 0-255 (float32) from ranges of hue (degrees, may wrap), saturation and value (0-1)."""
    hsv = np.array([[[rng.uniform(*hue) % 360, rng.uniform(*sat), rng.uniform(*val)]]], np.float32)
    return 255 * cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]


def _oriented_coords(rng, h, w, period):
    """Pixel coordinates rotated by a random angle and divided by ``period``."""
    theta = rng.uniform(0, np.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xs * np.cos(theta) + ys * np.sin(theta)) / period
    v = (-xs * np.sin(theta) + ys * np.cos(theta)) / period
    return u, v


def _two_colour(rng, pattern):
    """Paint a boolean pattern in a bright cool colour and a dark one."""
    bright = _hsv_colour(rng, hue=(90, 300), sat=(0.5, 1.0), val=(0.7, 1.0))
    dark = _hsv_colour(rng, hue=(0, 360), sat=(0.0, 1.0), val=(0.05, 0.3))
    return np.where(pattern[..., None], bright, dark)


def _plain_fill(rng, h, w):
    """A random bright warm colour with a gentle shading gradient and fine grain."""
    u, _ = _oriented_coords(rng, h, w, period=max(h, w))
    shade = 1.0 + 0.25 * (u - u.mean())
    grain = 6 * _smooth_noise(rng, h, w, 0.7)
    warm = _hsv_colour(rng, hue=(-60, 50), sat=(0.5, 1.0), val=(0.7, 1.0))  # magenta to yellow
    return warm * shade[..., None] + grain[..., None]


# Pattern periods of 10-20 px survive the pipeline's down-scaling (to ~0.5x) and JPEG.
def _stripes_fill(rng, h, w):
    u, _ = _oriented_coords(rng, h, w, period=rng.uniform(10, 20))
    return _two_colour(rng, (u % 1.0) < 0.5)


def _checker_fill(rng, h, w):
    u, v = _oriented_coords(rng, h, w, period=rng.uniform(10, 20))
    return _two_colour(rng, (np.floor(u) + np.floor(v)) % 2 == 0)


def _clutter_fill(rng, h, w):
    return rng.uniform(0, 255, size=(h, w, 3)).astype(np.float32)


# Circles and rectangles lie wholly inside the image: one cut by the border would show straight edges, the cue
# that tells rectangles apart.
def _circle_mask(rng, h, w):
    mask = np.zeros((h, w), np.uint8)
    r = int(rng.uniform(12, 0.25 * min(h, w)))
    centre = (int(rng.integers(r, w - r)), int(rng.integers(r, h - r)))
    return cv2.circle(mask, centre, r, 1, thickness=-1).astype(bool)


def _rotated_box(rng, h, w):
    size = rng.uniform(20, 0.45 * min(h, w), size=2)
    reach = 0.5 * float(np.hypot(*size))  # half the diagonal: the box stays inside at any angle
    centre = (float(rng.uniform(reach, w - reach)), float(rng.uniform(reach, h - reach)))
    return cv2.boxPoints((centre, tuple(size), float(rng.uniform(0, 180))))


def _polygon_mask(h, w, points):
    mask = np.zeros((h, w), np.uint8)
    return cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1).astype(bool)


def _rectangle_mask(rng, h, w):
    return _polygon_mask(h, w, _rotated_box(rng, h, w))


def _blob_mask(rng, h, w):
    """A random ellipse or convex polygon: the outline of a textured region."""
    if rng.random() < 0.5:
        mask = np.zeros((h, w), np.uint8)
        axes = tuple(int(a) for a in rng.uniform(10, 0.25 * min(h, w), size=2))
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, thickness=-1)
        return mask.astype(bool)
    # Corners spread around the centre (jittered, so no slivers) at varying radii.
    n = int(rng.integers(3, 8))
    angles = rng.uniform(0, 2 * np.pi) + (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * 2 * np.pi / n
    radii = rng.uniform(15, 0.3 * min(h, w)) * rng.uniform(0.6, 1.0, n)
    points = rng.uniform((0, 0), (w, h)) + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
    return _polygon_mask(h, w, points)


def _triangle_mask(rng, h, w):
    centre = rng.uniform((0, 0), (w, h))
    return _polygon_mask(h, w, centre + rng.uniform(-30, 30, size=(3, 2)))


# label -> (outline, texture); the objects pasted over the sky/ground background.
_OBJECTS = {
    CIRCLE: (_circle_mask, _plain_fill),
    RECTANGLE: (_rectangle_mask, _plain_fill),
    STRIPES: (_blob_mask, _stripes_fill),
    CHECKERBOARD: (_blob_mask, _checker_fill),
    UNLABELLED: (_triangle_mask, _clutter_fill),
}


def render_sample(rng):
    """Draw one scene. Returns ``(image, label)``: HxWx3 uint8 BGR and HxW uint8."""
    h, w = int(rng.integers(224, 289)), int(rng.integers(256, 353))
    # Background: a wavy horizon between a smooth sky gradient and grainy ground.
    xs = np.arange(w)
    horizon = h * rng.uniform(0.3, 0.6) + h * rng.uniform(0, 0.08) * np.sin(
        xs * rng.uniform(0.005, 0.03) + rng.uniform(0, 2 * np.pi))
    is_sky = np.arange(h)[:, None] < horizon[None, :]
    label = np.where(is_sky, SKY, GROUND).astype(np.uint8)

    top = np.array([rng.uniform(150, 255), rng.uniform(90, 170), rng.uniform(20, 90)])  # BGR
    bottom = np.clip(top + rng.uniform(20, 80), 0, 255)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    sky = (1 - t) * top + t * bottom + 3 * _smooth_noise(rng, h, w, 8)[..., None]
    earth = _hsv_colour(rng, hue=(20, 100), sat=(0.2, 0.6), val=(0.25, 0.55))  # browns to greens
    ground = earth + 35 * _smooth_noise(rng, h, w, 1.0)[..., None]
    image = np.where(is_sky[..., None], sky, ground)

    # 2-5 objects of random classes (later ones occlude earlier ones), and
    # sometimes an unlabelled noise triangle that the loss and metric ignore.
    kinds = list(rng.choice([CIRCLE, RECTANGLE, STRIPES, CHECKERBOARD], size=int(rng.integers(2, 6))))
    if rng.random() < 0.5:
        kinds.insert(int(rng.integers(0, len(kinds) + 1)), UNLABELLED)
    for kind in kinds:
        outline, texture = _OBJECTS[int(kind)]
        mask = outline(rng, h, w)
        image[mask] = texture(rng, h, w)[mask]
        label[mask] = kind

    image = image + rng.normal(0, 3, size=image.shape)  # sensor noise
    return np.clip(image, 0, 255).astype(np.uint8), label


def image_rng(seed, split, index):
    """The generator of image ``index`` of ``split``: independent of how many images are made."""
    return np.random.default_rng([seed, SPLITS.index(split), index])


def _write_sample(out_dir, seed, job):
    split, i = job
    image, label = render_sample(image_rng(seed, split, i))
    stem = f'synthetic_{split}_{i:05d}'
    cv2.imwrite(str(out_dir / 'images' / split / f'{stem}.jpg'), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    cv2.imwrite(str(out_dir / 'annotations' / split / f'{stem}.png'), label)


def generate_synthetic_ade(out_dir, num_train, num_val, seed=0, progress=True, workers=1):
    """Write the dataset under ``out_dir`` (see the module docstring).

    A folder already holding the same dataset (same manifest) is left as is; one
    generated with other settings is replaced. A non-empty folder that this
    function did not write is never touched: that raises ``FileExistsError``.
    Returns True when files were written, False when the folder was reused.
    """
    for name, value in (('num_train', num_train), ('num_val', num_val)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f'{name} must be a positive integer, got {value!r}')
    out_dir = Path(out_dir)
    manifest = dict(version=VERSION, seed=seed, num_train=num_train, num_val=num_val,
                    classes=list(CLASSES), reduce_zero_label=True, complete=True)
    manifest_path = out_dir / MANIFEST
    folders = [out_dir / kind / split for kind in ('images', 'annotations') for split in SPLITS]
    if manifest_path.exists():
        if json.loads(manifest_path.read_text()) == manifest:
            return False
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    elif any(folder.exists() and any(folder.iterdir()) for folder in folders):
        raise FileExistsError(
            f'{out_dir} already holds images/annotations that were not written by '
            f'this generator (no {MANIFEST}); choose an empty --out folder')

    # An interrupted run leaves complete=False behind: the next run regenerates.
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(dict(manifest, complete=False)) + '\n')
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    jobs = [(split, i) for split, n in zip(SPLITS, (num_train, num_val)) for i in range(n)]
    write = partial(_write_sample, out_dir, seed)
    bar = partial(tqdm, total=len(jobs), desc=f'synthetic ADE20K -> {out_dir}', unit='img', disable=not progress)
    if workers > 1:  # every image has its own generator: the files are the same whatever the number of workers
        with multiprocessing.get_context('spawn').Pool(workers) as pool:
            for _ in bar(pool.imap_unordered(write, jobs, chunksize=16)):
                pass
    else:
        for job in bar(jobs):
            write(job)
    manifest_path.write_text(json.dumps(manifest, indent=2) + '\n')
    return True
