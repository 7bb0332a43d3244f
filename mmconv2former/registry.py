"""mmconv2former's registries: children of mmengine's root registries with the scope 'mmconv2former'.

Being children of the roots (not of mmdet's or mmseg's) lets `type='mmconv2former.Conv2Former'` resolve from an
mmdet config and from an mmseg config alike, and `locations` lets mmengine import the modules by itself.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmconv2former', locations=['mmconv2former.models'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmconv2former',
    locations=['mmconv2former.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmconv2former', locations=['mmconv2former.engine'])
