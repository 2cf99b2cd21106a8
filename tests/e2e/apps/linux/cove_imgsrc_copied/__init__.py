"""A local package that image_features.py adds with add_local_python_source(copy=True)."""

VALUE = "copied into the image"
