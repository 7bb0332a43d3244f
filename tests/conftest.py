"""Test-session settings that only make the suite faster; nothing here changes what a test checks."""
import functools
import os

# OpenMP threads that wait for work sleep instead of spinning (set before torch loads its OpenMP runtime; the tools
# run by the tests inherit it). On a 2-core machine where anything else takes a core, spinning threads made the suite
# 1.5-5x slower; on an idle machine it makes no difference we could measure.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import mmengine.config.utils as _config_utils  # noqa: E402


def _remember_metafile_lookups(lookup):
    """mmengine resolves every `mmdet::` / `mmseg::` base of a config by reading all of the library's ~400 metafiles
    (half a second each time, ~1 s of every config parse). The answer for a (package, config) pair cannot change
    during a test session: remember it, the ValueError that mmengine expects for `_base_` files included."""
    answers = {}

    @functools.wraps(lookup)
    def remembered(package_path, cfg_path):
        key = (package_path, cfg_path)
        if key not in answers:
            try:
                answers[key] = (True, lookup(package_path, cfg_path))
            except ValueError as error:
                answers[key] = (False, error)
        found, answer = answers[key]
        if not found:
            raise ValueError(*answer.args)
        return dict(answer)

    remembered.__wrapped_by_tests__ = True
    return remembered


if not getattr(_config_utils._get_cfg_metainfo, '__wrapped_by_tests__', False):
    _config_utils._get_cfg_metainfo = _remember_metafile_lookups(_config_utils._get_cfg_metainfo)
