"""Attention backends beyond the eager reference; importing this package registers them by name.

Each module registers one :class:`~polyformer.core.attention_ops.AttentionBackend` subclass:
``sdpa`` (torch's fused kernel), ``chunked`` (exact, linear memory), ``linformer``,
``performer``, ``local`` and ``block_sparse``.
"""

from . import block_sparse, chunked, linformer, local, performer, sdpa  # noqa: F401
