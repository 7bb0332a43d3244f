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
