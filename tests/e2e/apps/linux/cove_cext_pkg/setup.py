# A package with a C extension, built from source inside the image (tests/e2e/test_images.py).
from setuptools import Extension, setup

setup(name="cove-cext", version="1.0", ext_modules=[Extension("cove_cext", ["cove_cext.c"])])
