"""Efficient attention backends; importing this package registers them by name.

Each module registers one :class:`~polyformer.core.attention.AttentionBackend` subclass:
``chunked`` (exact, linear memory), ``linformer``, ``performer``, ``local`` and
``block_sparse``.
"""

from . import block_sparse, chunked, linformer, local, performer  # noqa: F401
