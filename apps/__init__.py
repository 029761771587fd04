"""polyformer.apps: the training engine, recipes, pipelines and the ``polyformer`` command line."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("polyformer")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
