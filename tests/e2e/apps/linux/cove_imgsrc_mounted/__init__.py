"""A local package that image_features.py adds with add_local_python_source() (mounted at container start)."""

from .helper import shout

VALUE = shout("mounted at start")
