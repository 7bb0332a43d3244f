"""Install entry for mmconv2former. Pins live in requirements/*.txt (read here and by tools/install.sh)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_requirements(name):
    lines = (HERE / 'requirements' / name).read_text().splitlines()
    return [ln.split('#')[0].strip() for ln in lines if ln.split('#')[0].strip()]


def read_version():
    text = (HERE / 'mmconv2former' / 'version.py').read_text()
    return re.search(r"__version__ = '([^']+)'", text).group(1)


setup(
    name='mmconv2former',
    version=read_version(),
    description='Conv2Former backbone for MMDetection and MMSegmentation',
    long_description=(HERE / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['mmconv2former', 'mmconv2former.*']),
    include_package_data=True,
    install_requires=read_requirements('runtime.txt'),
    extras_require={'tests': read_requirements('tests.txt')},
    zip_safe=False,
)
