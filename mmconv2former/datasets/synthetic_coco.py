"""A small, seeded instance segmentation dataset in COCO format, for the detection quickstart and tests.

Layout (what mmdet's ``CocoDataset`` reads)::

    <out>/train/{i:06d}.jpg, <out>/val/{i:06d}.jpg
    <out>/annotations/instances_{train,val}.json   # masks as COCO RLE: occluded objects keep their exact shape

Each image shows 1 to ``max_objects`` filled shapes (circle, triangle, square, star) with random colours, sizes
and rotations on a textured background (colour blotches, stripes, grain), so neither flat colour nor position
gives the class away. Objects may overlap, but never hide more than 40% of an earlier one, so every annotated
object stays recognisable. Each image has its own random generator derived from ``(seed, split, index)``: the
first N images are the same whatever the requested count.
"""
import json
from pathlib import Path
from typing import List, NamedTuple, Sequence, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_util
from tqdm import tqdm

# Vertices of each shape on the unit circle; a star alternates two radii.
_ANGLES = {n: 2 * np.pi * np.arange(n) / n for n in (3, 4, 10, 64)}
SHAPES = {
    'circle': np.stack([np.cos(_ANGLES[64]), np.sin(_ANGLES[64])], 1),
    'triangle': np.stack([np.cos(_ANGLES[3]), np.sin(_ANGLES[3])], 1),
    'square': np.stack([np.cos(_ANGLES[4] + np.pi / 4), np.sin(_ANGLES[4] + np.pi / 4)], 1),
    'star': np.array([1.0, 0.45] * 5)[:, None] * np.stack([np.cos(_ANGLES[10]), np.sin(_ANGLES[10])], 1),
}
DEFAULT_CLASSES = ('circle', 'triangle', 'square')
SPLITS = ('train', 'val')
DESCRIPTION = 'mmconv2former synthetic shapes (mmconv2former/datasets/synthetic_coco.py)'


class SceneObject(NamedTuple):
    label: int  # index into the class list the scene was rendered with
    mask: np.ndarray  # bool (H, W): the visible pixels (later objects occlude earlier ones)


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """uint8 (H, W, 3): smooth colour blotches plus oriented stripes plus pixel grain."""
    coarse = rng.uniform(40, 215, size=(int(rng.integers(3, 7)), int(rng.integers(3, 7)), 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 24)
    stripes = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    image += stripes[..., None] * rng.uniform(10, 35, size=3).astype(np.float32)
    image += rng.normal(0, 6, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape_mask(vertices: np.ndarray, centre: np.ndarray, radius: float, angle: float,
                height: int, width: int) -> np.ndarray:
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = vertices @ rotation.T * radius + centre
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def render_scene(rng: np.random.Generator, height: int, width: int,
                 classes: Sequence[str] = DEFAULT_CLASSES, max_objects: int = 4,
                 radius_range: Tuple[float, float] = (0.08, 0.22), min_visible: float = 0.6,
                 max_tries: int = 50) -> Tuple[np.ndarray, List[SceneObject]]:
    """Draw 1 to `max_objects` shapes on a textured background; `radius_range` is relative to the shorter side.

    A candidate that would leave an earlier object with less than `min_visible` of its area is redrawn elsewhere
    (up to `max_tries` candidates per image). Returns the uint8 RGB image and the objects in drawing order.
    """
    image = textured_background(rng, height, width)
    wanted = int(rng.integers(1, max_objects + 1))
    full: List[np.ndarray] = []
    visible: List[np.ndarray] = []
    labels: List[int] = []
    for _ in range(max_tries):
        if len(labels) == wanted:
            break
        label = int(rng.integers(len(classes)))
        radius = rng.uniform(*radius_range) * min(height, width)
        centre = rng.uniform([radius, radius], [width - radius, height - radius])
        mask = _shape_mask(SHAPES[classes[label]], centre, radius, rng.uniform(0, 2 * np.pi), height, width)
        remaining = [v & ~mask for v in visible]
        if not mask.any() or any(r.sum() < min_visible * f.sum() for r, f in zip(remaining, full)):
            continue
        # Flat colour with mild grain: the inside of an object has another texture than the background.
        fill = rng.integers(0, 256, size=3) + rng.normal(0, 4, size=(int(mask.sum()), 3))
        image[mask] = np.clip(fill, 0, 255).astype(np.uint8)
        visible, full, labels = remaining + [mask], full + [mask], labels + [label]
    return image, [SceneObject(label, mask) for label, mask in zip(labels, visible)]


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image `index` of `split`: independent of how many images the dataset has."""
    return np.random.default_rng([seed, SPLITS.index(split), index])


def _coco_split(out_dir: Path, split: str, num_images: int, info: dict, progress: bool) -> dict:
    """Render one split's images into `out_dir/split/` and return its COCO annotation dict."""
    height, width = info['size']
    classes = info['classes']
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in tqdm(range(num_images), desc=f'synthetic COCO {split} -> {out_dir}', unit='img',
                      disable=not progress):
        image, objects = render_scene(image_rng(info['seed'], split, index), height, width, classes,
                                      info['max_objects'])
        file_name = f'{index:06d}.jpg'
        cv2.imwrite(str(out_dir / split / file_name), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        images.append(dict(id=index, file_name=file_name, height=height, width=width))
        for obj in objects:
            rle = mask_util.encode(np.asfortranarray(obj.mask.astype(np.uint8)))
            annotations.append(dict(
                id=len(annotations) + 1, image_id=index, category_id=obj.label + 1, iscrowd=0,
                bbox=[float(v) for v in mask_util.toBbox(rle)], area=float(mask_util.area(rle)),
                segmentation=dict(size=[height, width], counts=rle['counts'].decode('ascii'))))
    categories = [dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(classes)]
    return dict(info=info, images=images, annotations=annotations, categories=categories)


def generate_synthetic_coco(out_dir, num_train: int = 240, num_val: int = 48, seed: int = 0,
                            size: Tuple[int, int] = (128, 128), classes: Sequence[str] = DEFAULT_CLASSES,
                            max_objects: int = 4, progress: bool = True) -> bool:
    """Write the dataset under `out_dir` (see the module docstring); `size` is (height, width).

    A folder already holding the same dataset is left as is (returns False); one generated with other settings
    is regenerated (returns True). A folder with annotations this function did not write raises FileExistsError.
    """
    for name, value, low in (('num_train', num_train, 1), ('num_val', num_val, 1), ('max_objects', max_objects, 1),
                             ('height', size[0], 32), ('width', size[1], 32)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f'{name} must be an integer >= {low}, got {value!r}')
    unknown = [c for c in classes if c not in SHAPES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f'classes must be distinct names from {sorted(SHAPES)}, got {list(classes)}')
    out_dir = Path(out_dir)
    info = dict(description=DESCRIPTION, seed=seed, size=list(size), classes=list(classes), max_objects=max_objects)
    counts = dict(zip(SPLITS, (num_train, num_val)))
    ann_files = {split: out_dir / 'annotations' / f'instances_{split}.json' for split in SPLITS}
    existing = {split: json.loads(f.read_text()) for split, f in ann_files.items() if f.is_file()}
    if any(coco.get('info', {}).get('description') != DESCRIPTION for coco in existing.values()):
        raise FileExistsError(f'{out_dir} holds annotations that this generator did not write; '
                              'choose another output folder')
    if len(existing) == len(SPLITS) and all(
            coco['info'] == dict(info, split=split) and len(coco['images']) == counts[split]
            for split, coco in existing.items()):
        return False
    # Annotations are written last, so an interrupted run never looks complete to the check above.
    for ann_file in ann_files.values():
        ann_file.unlink(missing_ok=True)
    ann_files['train'].parent.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        coco = _coco_split(out_dir, split, counts[split], dict(info, split=split), progress)
        ann_files[split].write_text(json.dumps(coco))
    return True
