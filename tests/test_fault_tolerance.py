"""A training run killed with SIGKILL mid-run and restarted with `tools/train.py --resume` continues from its last
checkpoint with the same iteration count, optimizer and scheduler state and, in deterministic mode, the same losses
as an uninterrupted run. Uses the real tools, the real mmseg runner and the segmentation quickstart, whose config
has mmconv2former's RandomStateHook (data loading runs in a worker process, as in every config of ours). The
uninterrupted run goes on beside the one that is killed (one thread each: two cores take both at once)."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmconv2former.datasets.synthetic_ade import generate_synthetic_ade
from mmconv2former.utils.checkpoint_io import load_checkpoint_file

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / 'configs/quickstart/upernet_conv2former-n_1xb4-300_synthetic-ade-64x64.py'
MAX_ITERS = 6  # checkpoints every 2 iterations; the kill comes after iter_4.pth


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('ade')
    generate_synthetic_ade(root, num_train=8, num_val=1, seed=0, progress=False)
    return root


def train_command(work_dir, data_root, *extra):
    options = [
        f'train_dataloader.dataset.data_root={data_root}', f'val_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        f'train_cfg.max_iters={MAX_ITERS}', f'train_cfg.val_interval={MAX_ITERS * 10}',
        'default_hooks.checkpoint.interval=2', 'default_hooks.checkpoint.max_keep_ckpts=10',
        'default_hooks.logger.interval=1', 'log_processor.window_size=1', 'randomness.deterministic=True',
        'model.backbone.drop_path_rate=0.0',
    ]
    return [sys.executable, str(ROOT / 'tools/train.py'), str(CONFIG), '--work-dir', str(work_dir),
            '--no-progress', '--cfg-options', *options, *extra]


def losses(work_dir):
    """iteration -> loss, from every run's scalars.json in the work dir (a resumed run writes its own)."""
    found = {}
    for scalars in sorted(Path(work_dir).glob('*/vis_data/scalars.json')):
        for line in scalars.read_text().splitlines():
            record = json.loads(line)
            if 'loss' in record:
                found[record['iter']] = record['loss']
    return found


def kill_then_resume(work_dir, data_root, env):
    """Start a run, SIGKILL it once iter_4.pth is written, resume it; the resumed iteration and the resumed run."""
    process = subprocess.Popen(train_command(work_dir, data_root), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (work_dir / 'iter_4.pth').exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, 'the run finished before it could be killed'
    assert not (work_dir / f'iter_{MAX_ITERS}.pth').exists()
    resumed = subprocess.run(train_command(work_dir, data_root, '--resume'), env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # mmengine resumes from what last_checkpoint names: iter_2 if the kill came before it was updated to iter_4,
    # iter_4 if after, or if it came while the file was being written (empty; mmconv2former.compat's fallback).
    advanced = re.search(r'Advance dataloader (\d+) steps', resumed.stdout + resumed.stderr)
    assert advanced, resumed.stdout[-3000:]
    resumed_from = int(advanced.group(1))
    assert resumed_from in (2, 4)
    return resumed_from, resumed


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, data_root):
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    clean, killed = tmp_path / 'clean', tmp_path / 'killed'
    clean_log = tmp_path / 'clean.log'
    with open(clean_log, 'w') as log:
        uninterrupted = subprocess.Popen(train_command(clean, data_root), env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
    try:
        resumed_from, resumed = kill_then_resume(killed, data_root, env)
        assert uninterrupted.wait(timeout=600) == 0, clean_log.read_text()[-3000:]
    finally:
        if uninterrupted.poll() is None:
            uninterrupted.kill()
            uninterrupted.wait()
    last = Path((killed / 'last_checkpoint').read_text().strip())
    assert last.name == f'iter_{MAX_ITERS}.pth'
    assert f'Load checkpoint from {killed / f"iter_{resumed_from}.pth"}' in resumed.stdout + resumed.stderr
    clean_losses, killed_losses = losses(clean), losses(killed)
    assert sorted(clean_losses) == list(range(1, MAX_ITERS + 1))
    for it in range(resumed_from + 1, MAX_ITERS + 1):
        assert killed_losses[it] == pytest.approx(clean_losses[it], rel=1e-4, abs=1e-6), it

    final_clean = load_checkpoint_file(str(clean / f'iter_{MAX_ITERS}.pth'))
    final_killed = load_checkpoint_file(str(last))
    assert final_killed['meta']['iter'] == final_clean['meta']['iter'] == MAX_ITERS
    assert final_killed['param_schedulers'] == final_clean['param_schedulers']
    for key, value in final_clean['state_dict'].items():
        torch.testing.assert_close(final_killed['state_dict'][key], value, rtol=1e-4, atol=1e-6, msg=key)
    clean_state = final_clean['optimizer']['state']
    for index, state in final_killed['optimizer']['state'].items():
        assert state['step'] == clean_state[index]['step']
        torch.testing.assert_close(state['exp_avg'], clean_state[index]['exp_avg'], rtol=1e-4, atol=1e-7)
