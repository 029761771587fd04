"""polyformer.apps: the training engine, recipes, pipelines and the ``polyformer`` command line."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("polyformer")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"


def __getattr__(name: str):
    """``polyformer.apps.pipeline`` is imported on first use, so the command line starts fast."""
    if name == "pipeline":
        from polyformer.apps.pipelines import pipeline

        return pipeline
    raise AttributeError(f"module 'polyformer.apps' has no attribute {name!r}")
