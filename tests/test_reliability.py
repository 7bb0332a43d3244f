"""Faults and bad input: a NaN loss stops before a checkpoint; any backbone argument/shape gives outputs or our
clear errors, nothing else (property test)."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from toy_runner import make_runner, toy_data

import mmconv2former  # noqa: F401
from mmconv2former.engine import NonFiniteLossError
from mmconv2former.models.backbones.conv2former import Conv2Former


def test_nan_loss_stops_before_checkpointing(tmp_path):
    # batch 2, no shuffle: sample 4 is in the third iteration
    runner = make_runner(tmp_path, max_iters=4, data=toy_data(nan_at=4), checkpoint_interval=1,
                         custom_hooks=[dict(type='mmconv2former.FiniteLossHook')])
    with pytest.raises(NonFiniteLossError, match='loss is nan at iteration 3'):
        runner.train()
    assert (tmp_path / 'iter_2.pth').exists() and not (tmp_path / 'iter_3.pth').exists()


def test_finite_loss_hook_arguments():
    with pytest.raises(ValueError, match='max_amp_skips'):
        mmconv2former.engine.FiniteLossHook(max_amp_skips=-1)


OUR_ERRORS = (ValueError, TypeError)
arch_names = st.sampled_from(['nano', 'n', 'tiny', 'T', 'huge', '', 'Base'])
arch_dicts = st.fixed_dictionaries(dict(
    depths=st.lists(st.integers(-1, 2), min_size=3, max_size=5),
    dims=st.lists(st.sampled_from([-2, 0, 3, 8, 16]), min_size=3, max_size=5),
    kernel_size=st.sampled_from([-1, 1, 2, 3, 5, 7])))
out_index = st.integers(-6, 5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=st.one_of(arch_names, arch_dicts),
       out_indices=st.one_of(out_index, st.lists(out_index, max_size=5), st.just('0')),
       frozen_stages=st.integers(-3, 6), in_channels=st.integers(-1, 4),
       drop_path_rate=st.sampled_from([0., 0.1, 0.99, 1.0, -0.1]),
       size=st.tuples(st.integers(1, 80), st.integers(1, 80)), data_channels=st.integers(1, 4))
def test_backbone_arguments_and_shapes(arch, out_indices, frozen_stages, in_channels, drop_path_rate, size,
                                       data_channels):
    if isinstance(arch, str) and arch.lower() in ('nano', 'n', 'tiny', 't', 'base'):
        arch = dict(depths=(1, 1, 1, 1), dims=(8, 8, 16, 16), kernel_size=3)  # keep named archs cheap
    try:
        model = Conv2Former(arch=arch, out_indices=out_indices, frozen_stages=frozen_stages,
                            in_channels=in_channels, drop_path_rate=drop_path_rate)
    except OUR_ERRORS as error:
        assert str(error).startswith('Conv2Former'), error
        return
    x = torch.randn(1, data_channels, *size)
    try:
        outs = model(x)
    except ValueError as error:
        assert data_channels != in_channels or min(size) < 31, error
        assert str(error).startswith('Conv2Former'), error
        return
    assert data_channels == in_channels and min(size) >= 31
    h, w = -(-size[0] // 2), -(-size[1] // 2)  # stem: stride-2 conv with padding 1
    h, w = h // 2, w // 2
    expected = []
    for i in range(4):
        if i:
            h, w = h // 2, w // 2
        expected.append((1, model.dims[i], h, w))
    assert [tuple(o.shape) for o in outs] == [expected[i] for i in model.out_indices]
