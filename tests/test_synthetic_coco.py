"""The synthetic COCO dataset behind the detection quickstart: deterministic, exact annotations, safe re-runs."""
import json

import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from mmconv2former.datasets.synthetic_coco import DEFAULT_CLASSES, generate_synthetic_coco, image_rng, render_scene

SMALL = dict(num_train=4, num_val=2, size=(64, 80), progress=False)


def _annotations(root, split='train'):
    return json.loads((root / 'annotations' / f'instances_{split}.json').read_text())


def test_same_seed_same_files_and_first_images_do_not_depend_on_count(tmp_path):
    generate_synthetic_coco(tmp_path / 'a', seed=3, **SMALL)
    generate_synthetic_coco(tmp_path / 'b', seed=3, **SMALL)
    generate_synthetic_coco(tmp_path / 'c', seed=3, **dict(SMALL, num_train=6))
    generate_synthetic_coco(tmp_path / 'd', seed=4, **SMALL)
    a, b, c, d = (_annotations(tmp_path / k) for k in 'abcd')
    assert a == b
    assert (tmp_path / 'a/train/000001.jpg').read_bytes() == (tmp_path / 'b/train/000001.jpg').read_bytes()
    first_four = [ann for ann in c['annotations'] if ann['image_id'] < 4]
    assert [x['segmentation'] for x in first_four] == [x['segmentation'] for x in a['annotations']]
    assert [x['segmentation'] for x in d['annotations']] != [x['segmentation'] for x in a['annotations']]


def test_annotations_are_exact_and_loadable_by_pycocotools(tmp_path):
    generate_synthetic_coco(tmp_path, seed=0, **SMALL)
    coco = COCO(str(tmp_path / 'annotations/instances_val.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(DEFAULT_CLASSES)
    assert len(coco.getImgIds()) == 2
    for ann in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(ann)
        assert mask.shape == (64, 80)
        assert mask.sum() == ann['area'] > 0
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann['bbox']
        assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert ann['iscrowd'] == 0 and 1 <= ann['category_id'] <= len(DEFAULT_CLASSES)


def test_objects_stay_recognisable_under_occlusion():
    for index in range(20):
        image, objects = render_scene(image_rng(0, 'train', index), 96, 96, max_objects=4)
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8
        assert 1 <= len(objects) <= 4
        masks = np.stack([obj.mask for obj in objects])
        assert masks.sum(0).max() == 1, 'visible masks must not overlap'
        assert all(mask.any() for mask in masks)


def test_rerun_reuses_other_settings_regenerate(tmp_path):
    assert generate_synthetic_coco(tmp_path, seed=0, **SMALL) is True
    stamp = (tmp_path / 'annotations/instances_train.json').stat().st_mtime_ns
    assert generate_synthetic_coco(tmp_path, seed=0, **SMALL) is False
    assert (tmp_path / 'annotations/instances_train.json').stat().st_mtime_ns == stamp
    assert generate_synthetic_coco(tmp_path, seed=1, **SMALL) is True
    assert _annotations(tmp_path)['info']['seed'] == 1


def test_interrupted_run_is_regenerated(tmp_path):
    generate_synthetic_coco(tmp_path, seed=0, **SMALL)
    (tmp_path / 'annotations/instances_val.json').unlink()  # as if stopped while writing the val split
    assert generate_synthetic_coco(tmp_path, seed=0, **SMALL) is True
    assert len(_annotations(tmp_path, 'val')['images']) == 2


def test_foreign_annotations_are_never_overwritten(tmp_path):
    (tmp_path / 'annotations').mkdir()
    foreign = tmp_path / 'annotations/instances_train.json'
    foreign.write_text(json.dumps(dict(info=dict(description='COCO 2017'), images=[], annotations=[])))
    with pytest.raises(FileExistsError, match='did not write'):
        generate_synthetic_coco(tmp_path, **SMALL)
    assert json.loads(foreign.read_text())['info']['description'] == 'COCO 2017'


@pytest.mark.parametrize('kwargs, field', [
    (dict(num_train=0), 'num_train'),
    (dict(num_val=-1), 'num_val'),
    (dict(size=(16, 64)), 'height'),
    (dict(max_objects=0), 'max_objects'),
    (dict(classes=('circle', 'hexagon')), 'classes'),
    (dict(classes=('circle', 'circle')), 'classes'),
])
def test_bad_arguments_name_the_field(tmp_path, kwargs, field):
    with pytest.raises(ValueError, match=field):
        generate_synthetic_coco(tmp_path, **dict(SMALL, **kwargs))


def test_rle_round_trip_matches_rendered_masks(tmp_path):
    generate_synthetic_coco(tmp_path, seed=5, **SMALL)
    _, objects = render_scene(image_rng(5, 'train', 0), 64, 80, DEFAULT_CLASSES, 4)
    anns = [a for a in _annotations(tmp_path)['annotations'] if a['image_id'] == 0]
    assert len(anns) == len(objects)
    for ann, obj in zip(anns, objects):
        decoded = mask_util.decode(dict(ann['segmentation'], counts=ann['segmentation']['counts'].encode()))
        np.testing.assert_array_equal(decoded.astype(bool), obj.mask)
        assert ann['category_id'] == obj.label + 1
