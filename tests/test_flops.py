import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools' / 'analysis_tools'))
import get_flops  # noqa: E402

# The paper's classifier table at 224x224 (GMACs, M params).
PAPER = {'tiny': (4.4, 26.7), 'small': (8.7, 50.0), 'base': (15.9, 90.0), 'large': (36.0, 198.9)}


@pytest.mark.parametrize('arch', [
    'tiny', *(pytest.param(a, marks=pytest.mark.slow) for a in ('small', 'base', 'large'))])  # ~1 min each on CPU
def test_classifier_flops_and_params_match_the_paper(arch):
    result = get_flops.main(['--arch', arch, '--classifier', '--json'])
    flops, params = PAPER[arch]
    assert result['flops_g'] == pytest.approx(flops, rel=0.01)
    assert result['params_m'] == pytest.approx(params, rel=0.01)


def test_backbone_alone_at_other_size():
    result = get_flops.main(['--arch', 'nano', '--shape', '64', '96'])
    assert result['input_shape'] == [64, 96] and result['params_m'] == pytest.approx(13.05 + 0.0019, abs=0.01)


# The paper's ConvNeXt-T detector rows at 1280x800 (GMACs): Conv2Former-T's detectors are counted the same way.
@pytest.mark.slow  # ~2 min on 2 cores
@pytest.mark.parametrize('config, paper_flops', [
    ('configs/mask_rcnn/mask-rcnn_conv2former-t_fpn_1x_coco.py', 262),
    ('configs/cascade_rcnn/cascade-mask-rcnn_conv2former-t_fpn_4conv1fc-giou_ms-crop-3x_coco.py', 741)])
def test_detector_flops_are_counted_as_in_the_paper(config, paper_flops):
    root = Path(__file__).resolve().parents[1]
    result = get_flops.main([str(root / config), '--shape', '800', '1280', '--json'])
    assert result['flops_g'] == pytest.approx(paper_flops, rel=0.03)  # 259G and 738G
