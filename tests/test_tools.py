"""tools/train.py, tools/test.py, demo/image_demo.py and the launch scripts, run the way users run them.

The end-to-end tests train the detection quickstart for a few iterations on a tiny synthetic COCO dataset in
separate processes (as `make demo` does), resume it, evaluate it with CocoMetric and predict with mmdet's own
DetInferencer.
"""
import importlib.util
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from mmconv2former.apis.runner import UsageError, config_scope
from mmconv2former.datasets.synthetic_coco import DEFAULT_CLASSES, generate_synthetic_coco

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / 'configs/quickstart/mask-rcnn_conv2former-n_fpn_1xb4-300i_synthetic-coco-128x128.py'


def _tool(name):
    """Import tools/<name>.py (or demo/<name>.py) as a module, to call its functions."""
    path = next(p for p in (ROOT / 'tools' / f'{name}.py', ROOT / 'demo' / f'{name}.py') if p.is_file())
    spec = importlib.util.spec_from_file_location(f'tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args, cwd, env=None):
    result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, f'{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}'
    return result


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic_coco')
    generate_synthetic_coco(root, num_train=4, num_val=2, size=(64, 64), progress=False)
    return root


def _data_options(root):
    """--cfg-options pointing the quickstart at `root`, with 2-image batches resized to 64x64 (CPU-cheap)."""
    loaders = ('train_dataloader', 'val_dataloader', 'test_dataloader')
    options = [f'{loader}.dataset.data_root={root}' for loader in loaders]
    options += [f'{ev}.ann_file={root}/annotations/instances_val.json' for ev in ('val_evaluator', 'test_evaluator')]
    # The Resize steps: index 2 of the training pipeline, 1 of the test pipeline.
    options += [f'{loader}.dataset.pipeline.{2 if loader.startswith("train") else 1}.scale=(64,64)'
                for loader in loaders]
    return options + ['train_dataloader.batch_size=2']


def _train(work_dir, data_root, max_iters, *extra):
    options = [f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}',
               'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1', *_data_options(data_root)]
    return _run(ROOT / 'tools/train.py', QUICKSTART, '--work-dir', work_dir, *extra, '--cfg-options', *options,
                cwd=work_dir.parent)


@pytest.fixture(scope='module')
def trained(tmp_path_factory, data_root):
    """The quickstart trained 2 iterations (checkpoint iter_2.pth), then resumed up to 4 (iter_4.pth)."""
    work_dir = tmp_path_factory.mktemp('run') / 'work_dir'
    first = _train(work_dir, data_root, 2)
    resumed = _train(work_dir, data_root, 4, '--resume')
    return work_dir, first, resumed


def _scalars(work_dir):
    """The per-iteration training logs of each run in the work dir (oldest first)."""
    runs = sorted(p for p in work_dir.iterdir() if re.fullmatch(r'\d{8}_\d{6}', p.name))
    return [[json.loads(line) for line in (run / 'vis_data/scalars.json').read_text().splitlines()]
            for run in runs]


def test_train_runs_end_to_end_and_evaluates_with_coco_metric(trained):
    work_dir, first, _ = trained
    assert (work_dir / 'iter_2.pth').is_file()
    first_run = _scalars(work_dir)[0]
    assert [r['iter'] for r in first_run if 'loss' in r] == [1, 2]
    metrics = [r for r in first_run if 'coco/bbox_mAP' in r]
    assert len(metrics) == 1 and 'coco/segm_mAP' in metrics[0] and 0 <= metrics[0]['coco/bbox_mAP_50'] <= 1
    assert metrics[0]['step'] == 2, 'validation metrics are logged at their iteration'
    assert re.search(r'train.*2/2', first.stderr), 'no training progress bar'


def test_resume_continues_from_the_last_checkpoint(trained):
    work_dir, _, resumed = trained
    assert re.search(r'[Rr]esumed.*iter_2\.pth|iter_2\.pth.*[Rr]esumed', resumed.stdout + resumed.stderr)
    second_run = _scalars(work_dir)[1]
    assert [r['iter'] for r in second_run if 'loss' in r] == [3, 4], 'the resumed run must not redo iterations 1-2'
    checkpoint = torch.load(work_dir / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert checkpoint['meta']['iter'] == 4
    # The optimizer state went on from the first run: AdamW counted 4 steps, not 2.
    assert max(int(state['step']) for state in checkpoint['optimizer']['state'].values()) == 4
    assert re.search(r'train:\s+50%.*2/4', resumed.stderr), 'the progress bar must start at the resumed iteration'
    assert re.search(r'train:\s+100%.*4/4', resumed.stderr)


def test_test_tool_evaluates_dumps_predictions_and_draws_them(trained, data_root, tmp_path):
    work_dir, _, _ = trained
    out = tmp_path / 'predictions.pkl'
    result = _run(ROOT / 'tools/test.py', QUICKSTART, work_dir / 'iter_4.pth', '--work-dir', tmp_path,
                  '--out', out, '--show-dir', 'vis', '--cfg-options', *_data_options(data_root), cwd=tmp_path)
    assert re.search(r'coco/bbox_mAP: [\d.]+ .*coco/segm_mAP: [\d.]+', result.stdout)
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 2 and {'bboxes', 'scores', 'labels', 'masks'} <= set(predictions[0]['pred_instances'])
    pictures = list(tmp_path.glob('*/vis/*.jpg'))
    assert len(pictures) == 2


def test_det_inferencer_works_with_our_config_and_checkpoint(trained, data_root, tmp_path):
    from mmdet.apis import DetInferencer

    import mmconv2former  # noqa: F401
    from mmconv2former.models import Conv2Former
    work_dir, _, _ = trained
    inferencer = DetInferencer(model=str(QUICKSTART), weights=str(work_dir / 'iter_4.pth'), device='cpu',
                               show_progress=False)
    assert isinstance(inferencer.model.backbone, Conv2Former)
    assert inferencer.model.dataset_meta['classes'] == DEFAULT_CLASSES
    result = inferencer(str(data_root / 'val/000000.jpg'), out_dir=str(tmp_path), pred_score_thr=0.0)
    prediction = result['predictions'][0]
    assert {'labels', 'scores', 'bboxes', 'masks'} <= set(prediction)
    assert (tmp_path / 'vis/000000.jpg').is_file()


def test_image_demo_saves_a_picture(trained, data_root, tmp_path):
    work_dir, _, _ = trained
    _tool('image_demo').main([str(data_root / 'val/000001.jpg'), str(QUICKSTART), str(work_dir / 'iter_4.pth'),
                              '--out-dir', str(tmp_path)])
    assert (tmp_path / 'vis/000001.jpg').is_file()


def test_image_demo_names_a_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        _tool('image_demo').main(['img.jpg', str(QUICKSTART), str(tmp_path / 'missing.pth')])


# Timing-dependent under heavy CPU load (tqdm's redraw interval): in the slow set until made load-independent.
@pytest.mark.slow
def test_progress_bar_keeps_log_lines_whole_and_restores_the_console(capsys, monkeypatch):
    import logging
    from types import SimpleNamespace

    from mmconv2former.apis import progress
    logger = logging.getLogger('test_progress_bar')
    handler = logging.StreamHandler(sys.stdout)
    logger.addHandler(handler)
    runner = SimpleNamespace(logger=logger, max_iters=3, iter=1)
    hook = progress.ProgressBarHook()
    hook.before_run(runner)
    hook.before_train(runner)
    logger.warning('a log line while the bar runs')
    hook.after_train_iter(runner, 0, outputs=dict(loss=torch.tensor(0.5)))
    hook.after_run(runner)
    captured = capsys.readouterr()
    assert 'a log line while the bar runs\n' in captured.out
    assert re.search(r'train:\s+33%.*1/3.*train:\s+67%.*2/3.*loss=0.5000', captured.err)  # from the resumed iter
    assert handler.stream is sys.stdout
    logger.removeHandler(handler)

    monkeypatch.setattr(progress, 'is_main_process', lambda: False)  # other ranks: no bars
    hook.before_train(runner)
    hook.after_train_iter(runner, 0)
    assert capsys.readouterr().err == ''


# ---- argument handling, without training ----

def _args(tool, *argv):
    module = _tool(tool)
    parse = module.parse_train_args if tool == 'train' else module.parse_test_args
    return module, parse([*argv])


def test_config_scope_names_the_allowed_libraries():
    assert config_scope(Config(dict(default_scope='mmdet'))) == 'mmdet'
    assert config_scope(Config(dict(default_scope='mmseg'))) == 'mmseg'
    for scope in (None, 'mmpretrain'):
        with pytest.raises(ValueError, match=r"default_scope is .*'mmdet' \(MMDetection\), 'mmseg' "):
            config_scope(Config(dict(default_scope=scope)))


def test_load_config_work_dir_priority_and_cfg_options(tmp_path):
    from mmconv2former.apis.runner import load_config
    config = tmp_path / 'my_det.py'
    config.write_text("default_scope = 'mmdet'\noptim_wrapper = dict(type='OptimWrapper')\n")
    _, args = _args('train', str(config), '--cfg-options', 'a.b=3')
    cfg = load_config(args)
    assert cfg.work_dir == os.path.join('./work_dirs', 'my_det') and cfg.a.b == 3 and cfg.launcher == 'none'
    config.write_text("default_scope = 'mmdet'\nwork_dir = 'from_config'\n")
    assert load_config(args).work_dir == 'from_config'
    _, args = _args('train', str(config), '--work-dir', 'from_cli')
    assert load_config(args).work_dir == 'from_cli'
    _, args = _args('train', str(tmp_path / 'nope.py'))
    with pytest.raises(FileNotFoundError, match='nope.py'):
        load_config(args)


def test_train_amp_auto_scale_lr_and_resume_flags():
    train, args = _args('train', 'x.py', '--amp', '--auto-scale-lr', '--resume')
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper'), auto_scale_lr=dict(base_batch_size=16)))
    train.apply_train_args(cfg, args)
    assert cfg.optim_wrapper == dict(type='AmpOptimWrapper', loss_scale='dynamic')
    assert cfg.auto_scale_lr.enable and cfg.resume and cfg.load_from is None

    _, args = _args('train', 'x.py', '--resume', 'some/iter_8.pth')
    cfg = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper')))
    train.apply_train_args(cfg, args)
    assert cfg.resume and cfg.load_from == 'some/iter_8.pth' and cfg.optim_wrapper.type == 'AmpOptimWrapper'

    _, args = _args('train', 'x.py', '--amp')
    with pytest.raises(ValueError, match="optim_wrapper.type 'OptimWrapper' or 'AmpOptimWrapper', got 'Custom'"):
        train.apply_train_args(Config(dict(optim_wrapper=dict(type='Custom'))), args)
    _, args = _args('train', 'x.py', '--auto-scale-lr')
    with pytest.raises(ValueError, match='base_batch_size'):
        train.apply_train_args(Config(dict(optim_wrapper=dict(type='OptimWrapper'))), args)


def test_amp_on_a_cpu_is_refused_before_anything_is_built():
    train, args = _args('train', 'configs/x_amp-3x.py', '--amp')
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper')))
    train.apply_train_args(cfg, args)
    train.check_amp_device(cfg, args, 'cuda')
    with pytest.raises(UsageError, match=r'^--amp needs a GPU \(mmengine runs mixed precision on CUDA'):
        train.check_amp_device(cfg, args, 'cpu')
    _, args = _args('train', 'configs/x_amp-3x.py')
    with pytest.raises(UsageError, match=r'^configs/x_amp-3x.py trains with AmpOptimWrapper, which needs a GPU'):
        train.check_amp_device(cfg, args, 'cpu')


def test_test_flags_follow_the_config_library():
    test, args = _args('test', 'x.py', 'w.pth', '--show-dir', 'pics', '--out', 'res.pkl')
    det = Config(dict(default_scope='mmdet', default_hooks=dict(visualization=dict(type='DetVisualizationHook'))))
    test.apply_test_args(det, args)
    assert det.load_from == 'w.pth'
    assert det.default_hooks.visualization == dict(type='DetVisualizationHook', draw=True, test_out_dir='pics')

    _, args = _args('test', 'x.py', 'w.pth', '--show-dir', 'pics', '--out', 'label_pngs')
    seg = Config(dict(default_scope='mmseg', default_hooks=dict(visualization=dict(type='SegVisualizationHook')),
                      visualizer=dict(type='SegLocalVisualizer'), test_evaluator=dict(type='IoUMetric')))
    test.apply_test_args(seg, args)
    assert seg.visualizer.save_dir == 'pics' and seg.default_hooks.visualization.draw
    assert seg.test_evaluator == dict(type='IoUMetric', output_dir='label_pngs', keep_results=True)

    _, args = _args('test', 'x.py', 'w.pth', '--out', 'res.json')
    with pytest.raises(ValueError, match=r'\.pkl'):
        test.apply_test_args(Config(dict(default_scope='mmdet')), args)
    _, args = _args('test', 'x.py', 'w.pth', '--show')
    with pytest.raises(ValueError, match='default_hooks.visualization'):
        test.apply_test_args(Config(dict(default_scope='mmdet', default_hooks=dict())), args)


def test_tta_needs_the_config_to_define_it():
    test, args = _args('test', 'x.py', 'w.pth', '--tta')
    with pytest.raises(ValueError, match='tta_model and tta_pipeline'):
        test.apply_test_args(Config.fromfile(str(QUICKSTART)), args)
    cfg = Config(dict(default_scope='mmseg', model=dict(type='EncoderDecoder'), tta_model=dict(type='SegTTAModel'),
                      tta_pipeline=['aug'], test_dataloader=dict(dataset=dict(pipeline=['plain']))))
    test.apply_test_args(cfg, args)
    assert cfg.model == dict(type='SegTTAModel', module=dict(type='EncoderDecoder'))
    assert cfg.test_dataloader.dataset.pipeline == ['aug']


# ---- launch scripts: what they hand to torchrun / srun ----

@pytest.fixture
def recorder(tmp_path):
    """An executable that prints its arguments, one per line, standing in for python or srun."""
    script = tmp_path / 'record'
    script.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    script.chmod(0o755)
    return script


def _launch(script, *args, env):
    result = subprocess.run(['bash', str(ROOT / 'tools' / script), *args], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_dist_train_and_test_hand_everything_to_torchrun(recorder):
    argv = _launch('dist_train.sh', 'cfg.py', '4', '--amp', '--cfg-options', 'a=1',
                   env=dict(PYTHON=str(recorder), PORT='29612', NNODES='2', NODE_RANK='1', MASTER_ADDR='10.0.0.1'))
    assert argv == ['-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=1', '--master_addr=10.0.0.1',
                    '--master_port=29612', '--nproc_per_node=4', str(ROOT / 'tools/train.py'), 'cfg.py', '--amp',
                    '--cfg-options', 'a=1', '--launcher', 'pytorch']
    argv = _launch('dist_test.sh', 'cfg.py', 'w.pth', '2', '--out', 'r.pkl', env=dict(PYTHON=str(recorder)))
    assert argv == ['-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0', '--master_addr=127.0.0.1',
                    '--master_port=29500', '--nproc_per_node=2', str(ROOT / 'tools/test.py'), 'cfg.py', 'w.pth',
                    '--out', 'r.pkl', '--launcher', 'pytorch']


def test_slurm_scripts_hand_everything_to_srun(recorder, tmp_path):
    (tmp_path / 'srun').symlink_to(recorder)
    env = dict(PATH=f'{tmp_path}:{os.environ["PATH"]}', PYTHON='python3', GPUS='16', SRUN_ARGS='--qos=high -x n1')
    argv = _launch('slurm_train.sh', 'gpu', 'job', 'cfg.py', 'wd', '--resume', env=env)
    assert argv == ['-p', 'gpu', '--job-name=job', '--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8',
                    '--cpus-per-task=5', '--kill-on-bad-exit=1', '--qos=high', '-x', 'n1', 'python3', '-u',
                    str(ROOT / 'tools/train.py'), 'cfg.py', '--work-dir=wd', '--resume', '--launcher=slurm']
    argv = _launch('slurm_test.sh', 'gpu', 'job', 'cfg.py', 'w.pth', env=dict(env, GPUS='1', SRUN_ARGS=''))
    assert argv[:6] == ['-p', 'gpu', '--job-name=job', '--gres=gpu:1', '--ntasks=1', '--ntasks-per-node=1']
    assert argv[-4:] == [str(ROOT / 'tools/test.py'), 'cfg.py', 'w.pth', '--launcher=slurm']


def test_launch_scripts_print_usage_without_arguments():
    for script in ('dist_train.sh', 'dist_test.sh', 'slurm_train.sh', 'slurm_test.sh', 'misc/demo.sh'):
        result = subprocess.run(['bash', str(ROOT / 'tools' / script)], capture_output=True, text=True)
        assert result.returncode == 2 and 'usage:' in result.stderr


def test_demo_script_refuses_an_unknown_task_before_doing_anything():
    result = subprocess.run(['bash', str(ROOT / 'tools/misc/demo.sh'), 'bogus'], capture_output=True, text=True,
                            env={**os.environ, 'PYTHON': '/nonexistent/python'})
    assert result.returncode == 2 and "unknown task 'bogus'" in result.stderr
    assert 'detection|segmentation' in result.stderr
