"""A held-out validation split that is saved with the run and reused, so eval never scores training items.

When the data has no test split, training holds out a seeded ``fraction`` of its items for
validation. :class:`HeldOutSplit` records which items those were, by string key (a file's path
relative to the data folder, ``"train:17"`` for in-memory data; every domain's datasets can name
their items), in ``split.json`` in the run directory. A later eval or resume re-opens the data and
:meth:`HeldOutSplit.resolve` finds the held-out items again, in whatever order the data now lists
them, with a warning when the data changed since the split was made.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

__all__ = ["SPLIT_FILE", "HeldOutSplit", "data_fingerprint"]

SPLIT_FILE = "split.json"  # the held-out split's file in the run directory
_FORMAT = 1  # version of the split file's layout
_FIELDS = {"source": str, "fingerprint": str, "count": int, "seed": int, "fraction": (int, float), "val_keys": list}


def data_fingerprint(keys: Sequence[str]) -> str:
    """The sha256 hex digest of the item keys and their count, independent of the order of ``keys``."""
    return hashlib.sha256(json.dumps([len(keys), sorted(keys)]).encode("utf-8")).hexdigest()


@dataclass
class HeldOutSplit:
    """Which items of a dataset were held out for validation, by key.

    Attributes:
        source: what the data was, e.g. the folder path as the user gave it (for messages).
        fingerprint: :func:`data_fingerprint` of all the keys at split time.
        count: number of items at split time.
        seed: seed of the shuffle that chose the held-out items.
        fraction: share of the items held out.
        val_keys: keys of the held-out items, sorted.
    """

    source: str
    fingerprint: str
    count: int
    seed: int
    fraction: float
    val_keys: list[str] = field(default_factory=list)

    @classmethod
    def make(cls, keys: Sequence[str], fraction: float, seed: int, source: str) -> HeldOutSplit:
        """Hold out ``max(1, round(fraction * n))`` of the ``n`` items, chosen by a seeded shuffle.

        The same keys in the same order with the same seed give the same split. Items that share
        a key are held out together (:meth:`resolve` puts every item with a held-out key in val).

        Args:
            keys: one key per item, in dataset order.
            fraction: share to hold out, in (0, 1).
            seed: seed of the shuffle.
            source: what the data is, for messages.

        Raises:
            ValueError: ``fraction`` outside (0, 1), fewer than 2 items, or no training item left.
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
        n = len(keys)
        if n < 2:
            raise ValueError(f"{source} has {n} item(s); holding out a validation split needs at least 2")
        held_out = max(1, round(fraction * n))
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        val_keys = sorted({keys[i] for i in order[:held_out]})
        split = cls(source, data_fingerprint(keys), n, seed, float(fraction), val_keys)
        if not split.resolve(keys)[0]:
            raise ValueError(
                f"holding out {fraction:g} of the {n} items of {source} leaves no training item; "
                "lower the fraction or add data"
            )
        return split

    def to_json(self) -> str:
        """The split as the JSON text :meth:`save` writes and :meth:`load` reads."""
        return json.dumps({"format": _FORMAT, **asdict(self)}, indent=1) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the split as JSON to ``path`` (through a temporary file, so never half-written)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> HeldOutSplit:
        """The split saved at ``path`` by :meth:`save`.

        Raises:
            FileNotFoundError: no such file.
            ValueError: the file is not a split file of a known format; the message names it.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a valid held-out split file (corrupt JSON: {err})") from err
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path} is not a held-out split file of format {_FORMAT} (found format {found!r})")
        for name, kind in _FIELDS.items():
            if not isinstance(data.get(name), kind) or isinstance(data.get(name), bool):
                raise ValueError(f"{path}: held-out split file has a missing or invalid {name!r} field")
        if not all(isinstance(key, str) for key in data["val_keys"]):
            raise ValueError(f"{path}: held-out split file has non-text entries in 'val_keys'")
        return cls(**{name: data[name] for name in _FIELDS})

    def resolve(self, keys: Sequence[str], source: str | None = None) -> tuple[list[int], list[int], list[str]]:
        """Find the held-out items among the current items.

        Args:
            keys: one key per current item, in dataset order.
            source: what the current data is, for messages (default: :attr:`source`).

        Returns:
            ``(train, val, warnings)``: ascending indices into ``keys`` of the items that are not
            held out (new items included) and of the held-out items, and the warnings to show
            (one when the data changed since the split was made, else none).

        Raises:
            ValueError: none of the held-out items is among ``keys``.
        """
        held_out = set(self.val_keys)
        train, val = [], []
        for index, key in enumerate(keys):
            (val if key in held_out else train).append(index)
        if not val:
            raise ValueError(
                f"none of the run's held-out items are in {source or self.source} ({len(keys)} items now, "
                f"{len(self.val_keys)} held out of {self.count} when the split was made); is this the run's data?"
            )
        if data_fingerprint(keys) == self.fingerprint:
            return train, val, []
        missing = len(held_out) - len({keys[i] for i in val})
        new = max(0, len(train) - (self.count - len(self.val_keys)))  # exact unless training items also went
        warning = (
            f"data changed since the split was made: {len(keys)} items now vs {self.count} then; {missing} of the "
            f"{len(held_out)} held-out items are missing, at least {new} items are new"
        )
        return train, val, [warning]
