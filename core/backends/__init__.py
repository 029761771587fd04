"""Efficient attention backends; importing this package registers them by name.

Each module registers one :class:`~polyformer.core.attention.AttentionBackend` subclass.
"""
