"""tools/analysis_tools/benchmark_backbone.py end to end on CPU (tiny inputs): the files it writes and what they say.
Its timings are not checked here (speed is measured on the GPU machine and recorded in docs/performance.md)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name, *args):
    """Runs tools/analysis_tools/<name>.py with `args` in a process of its own."""
    return subprocess.run([sys.executable, str(ROOT / 'tools/analysis_tools' / f'{name}.py'), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_benchmark_writes_json_markdown_and_chart(tmp_path):
    result = _tool('benchmark_backbone', '--device', 'cpu', '--tiny', '--steps', 1, '--warmup', 1,
                   '--models', 'c2f_fast,c2f_ref', '--settings', 'ade_train,in_infer', '--single-thread-backward',
                   '--out', tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'micro-benchmarks and the kernel table time the Triton kernels' in result.stdout  # skipped on CPU
    report = json.loads((tmp_path / 'benchmark.json').read_text())
    assert report['device'] == 'cpu' and report['dtype'] == 'bf16' and report['backward_thread'] == 'calling'
    cases = {(c['model'], c['setting']): c for c in report['cases']}
    assert set(cases) == {(m, s) for m in ('c2f_fast', 'c2f_ref') for s in ('ade_train', 'in_infer')}
    assert all('error' not in c and c['ms'] > 0 for c in cases.values())
    table = (tmp_path / 'benchmark.md').read_text()
    assert 'backward on the calling thread' in table
    assert '| ADE train 2x64x96 fwd+bwd |' in table and '| ImageNet inference 2x64x96 |' in table  # --tiny's shapes
    assert (tmp_path / 'benchmark.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_benchmark_compares_the_variant_of_arch(tmp_path):
    """--arch small: Conv2Former-S against ConvNeXt-S and Swin-S, named so in the report."""
    result = _tool('benchmark_backbone', '--device', 'cpu', '--tiny', '--steps', 1, '--warmup', 1, '--arch', 'small',
                   '--settings', 'in_infer', '--no-micro', '--out', tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / 'benchmark.json').read_text())
    assert report['arch'] == 'small'
    labels = {c['model']: c['label'] for c in report['cases'] if 'error' not in c}
    assert labels == {'c2f_fast': 'Conv2Former-S fast', 'c2f_ref': 'Conv2Former-S ref',
                      'convnext_s': 'ConvNeXt-S (timm)', 'swin_s': 'Swin-S (mmdet)'}
    assert '| fast / ConvNeXt-S |' in (tmp_path / 'benchmark.md').read_text()


@pytest.mark.parametrize('option, value, message', [
    ('--models', 'c2f_fast,convnext_x', "--models: unknown model 'convnext_x': one of c2f_fast, c2f_ref, c2f_fast_cg"),
    ('--settings', 'ade_train,coco', "--settings: unknown setting 'coco': one of coco_train, ade_train, coco_infer"),
])
def test_benchmark_names_an_unknown_model_or_setting_before_running(tmp_path, option, value, message):
    result = _tool('benchmark_backbone', '--device', 'cpu', option, value, '--out', tmp_path)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / 'benchmark.json').exists()


def test_tile_sweep_ranks_a_setting_by_its_blocks_per_stage(monkeypatch):
    """sweep_dw_tiles' per-setting winner weights each stage by its blocks in Conv2Former-T (3, 3, 12, 3): a tile
    that wins three small stages but loses the 12-block stage loses the setting."""
    from mmconv2former.ops.kernels import dwconv
    monkeypatch.setattr(dwconv, 'IMPL', dict(dwconv.IMPL))  # the tool pins v3 in it when imported
    monkeypatch.syspath_prepend(str(ROOT / 'tools/analysis_tools'))
    import sweep_dw_tiles as sweep
    monkeypatch.setitem(sweep.CANDIDATES, 'conv_rows', [(2, 8, 2, 64), (4, 16, 4, 64)])
    monkeypatch.setitem(sweep.DEFAULT, 'conv_rows', (2, 8, 2, 64))
    stage_ms = {'coco1 s': (1.0, 0.9), 'coco2 s': (1.0, 0.9), 'coco3 s': (1.0, 1.1), 'coco4 s': (1.0, 0.9)}
    res = {'m3': {s: {'ms': {'2x8x2x64': a, '4x16x4x64': b}, 'best': '', 'best_ms': 1.0, 'default_ms': 1.0}
                  for s, (a, b) in stage_ms.items()}}
    rows = {r['stage']: r for r in sweep.summarize(res, ['conv_rows'])}
    assert rows['coco1 s']['best'] == '4x16x4x64' and rows['coco3 s']['best'] == '2x8x2x64'
    assert rows['all coco']['best'] == '2x8x2x64' and rows['all coco']['ms'] == 21  # the other: 0.9 * 9 + 1.1 * 12


def test_tile_sweep_names_an_unknown_entry_before_running():
    result = _tool('sweep_dw_tiles', '--entries', 'conv_row')
    assert result.returncode == 2
    assert "--entries: unknown V3_TILES entry 'conv_row': one of conv_large, wgrad_large, conv_small" in result.stderr


def test_tile_sweep_checks_the_wgrad_programs_before_running():
    for bad in ('0,4', '4,x', ''):
        result = _tool('sweep_dw_tiles', '--wgrad-programs', bad)
        assert result.returncode == 2
        assert '--wgrad-programs: expected positive integers separated by commas' in result.stderr


def test_benchmark_model_names(monkeypatch):
    """Every model of a comparison is known and labelled after its family and size; graph variants say so; names the
    tool does not know are not."""
    monkeypatch.syspath_prepend(str(ROOT / 'tools/analysis_tools'))
    import benchmark_backbone as bb
    expected = {}
    for arch, x in (('tiny', 'T'), ('base', 'B')):
        expected[arch] = [f'Conv2Former-{x} fast', f'Conv2Former-{x} ref', f'ConvNeXt-{x} (timm)', f'Swin-{x} (mmdet)',
                          f'Conv2Former-{x} fast, CUDA graph', f'ConvNeXt-{x}, CUDA graph',
                          f'Conv2Former-{x} fast, cuda_graph=True']
    for arch, labels in expected.items():
        monkeypatch.setattr(bb, 'ARCH', arch)
        assert all(bb.known_model(m) for m in bb.models())
        assert [bb.model_label(m) for m in bb.models()] == labels
    assert bb.model_label('c2f_ref_graph') == 'Conv2Former-B ref, CUDA graph' and bb.known_model('c2f_ref_graph')
    for unknown in ('convnext_x', 'swin', 'c2f_slow', 'resnet_t', 'convnext_t_graph_graph'):
        assert not bb.known_model(unknown) and bb.model_label(unknown) == unknown
