"""The runtime fixes of mmconv2former.compat: each test fails without its fix."""
import argparse
import os
import pickle

import pytest
import torch
from mmengine.runner import CheckpointLoader
from toy_runner import make_runner

import mmconv2former  # noqa: F401  (applies the fixes)
from mmconv2former.utils.checkpoint_io import TRUST_ENV, CorruptCheckpointError, UntrustedCheckpointError


def test_runner_checkpoint_saves_and_resumes(tmp_path):
    make_runner(tmp_path, max_iters=2).train()
    checkpoint = tmp_path / 'iter_2.pth'
    # Without the fix mmengine's torch.load (weights_only by default since torch 2.6) refuses Runner checkpoints:
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(checkpoint)
    runner = make_runner(tmp_path, max_iters=4, resume=True)
    runner.train()
    assert runner.iter == 4
    state = CheckpointLoader.load_checkpoint(str(tmp_path / 'iter_4.pth'))
    assert state['meta']['iter'] == 4 and state['optimizer']['state']


class Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):  # unpickling this would create a directory: a stand-in for arbitrary code
        return os.makedirs, (self.target,)


def test_malicious_pickle_is_refused_with_a_way_to_opt_in(tmp_path, monkeypatch):
    target = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'payload': Payload(str(target))}, path)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(UntrustedCheckpointError, match=TRUST_ENV):
        CheckpointLoader.load_checkpoint(str(path))
    assert not target.exists()
    monkeypatch.setenv(TRUST_ENV, str(path))  # the user vouches for exactly this file
    CheckpointLoader.load_checkpoint(str(path))
    assert target.exists()


def test_truncated_checkpoint_is_reported(tmp_path):
    path = tmp_path / 'partial.pth'
    torch.save({'w': torch.randn(1000)}, path)
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(CorruptCheckpointError, match='truncated or corrupted'):
        CheckpointLoader.load_checkpoint(str(path))


def test_missing_local_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'none.pth'))


class GetattrPayload:
    def __reduce__(self):  # a getattr other than HistoryBuffer's statistics methods
        return getattr, (argparse.Namespace, '__init__')


def test_getattr_is_only_allowed_for_history_buffer_methods(tmp_path):
    path = tmp_path / 'getattr.pth'
    torch.save({'x': GetattrPayload()}, path)
    with pytest.raises(UntrustedCheckpointError, match='getattr'):
        CheckpointLoader.load_checkpoint(str(path))


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    from mmengine.fileio import get_file_backend
    path = tmp_path / 'iter_4.pth'
    backend = get_file_backend(str(path))
    backend.put(b'complete old checkpoint', str(path))

    def crash(fd):  # the process dies after writing part of the new file, before it is complete
        raise KeyboardInterrupt('killed while saving')

    monkeypatch.setattr(os, 'fsync', crash)
    with pytest.raises(KeyboardInterrupt):
        backend.put(b'new checkpoint that never finished', str(path))
    assert path.read_bytes() == b'complete old checkpoint'
    assert [p.name for p in tmp_path.iterdir()] == ['iter_4.pth']


@pytest.mark.parametrize('last_checkpoint, resumes_at', [
    ('', 4),  # killed while CheckpointHook was writing last_checkpoint (opened, not yet written)
    ('/elsewhere/moved_work_dir/iter_4.pth', 4),  # the work dir was moved after the run
    (None, 0),  # empty, and no checkpoint left in the work dir: training starts anew
])
def test_auto_resume_survives_a_broken_last_checkpoint(tmp_path, capsys, last_checkpoint, resumes_at):
    make_runner(tmp_path, max_iters=4).train()
    if last_checkpoint is None:
        for checkpoint in tmp_path.glob('iter_*.pth'):
            checkpoint.unlink()
    (tmp_path / 'last_checkpoint').write_text(last_checkpoint or '')
    (tmp_path / 'iter_6.pth.tmp-4242').write_bytes(b'x' * 1000)  # what a SIGKILL in atomic_put leaves
    runner = make_runner(tmp_path, max_iters=6, resume=True)
    runner.load_or_resume()  # what train() starts with; mmengine alone raises FileNotFoundError for ''
    assert runner.iter == resumes_at
    warning = capsys.readouterr().out
    assert ('is empty' if not last_checkpoint else 'which does not exist') in warning
    assert (f'resuming from {tmp_path / "iter_4.pth"}' if resumes_at else 'training starts anew') in warning
    assert f'{tmp_path} holds 1 unfinished checkpoint save(s) of a run that was stopped while saving: ' \
           'iter_6.pth.tmp-4242 (0.00 GiB)' in warning
    runner.train()
    assert runner.iter == 6 and (tmp_path / 'iter_6.pth').exists()
