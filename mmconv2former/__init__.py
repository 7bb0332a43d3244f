"""mmconv2former: the Conv2Former backbone for MMDetection and MMSegmentation.

Importing the package applies the runtime fixes (`compat`) and registers the backbone, the layer-decay optimizer
wrapper constructor and the timm models, so a config needs only
`custom_imports=dict(imports=['mmconv2former'], allow_failed_imports=False)` and `type='mmconv2former.Conv2Former'`.
"""
from . import compat
from .version import __version__

compat.apply()

from . import engine, models  # noqa: E402  (registration needs the fixes applied first)

__all__ = ['__version__', 'engine', 'models']
