"""The held-out validation split saved with a run: seeded choice, JSON round trip, finding the items again."""

import json
import random

import pytest
import torch

from polyformer.apps.engine.splits import SPLIT_FILE, HeldOutSplit, data_fingerprint

KEYS = [f"class{i % 3}/{i:03d}.png" for i in range(40)]


def test_fingerprint_ignores_order_but_not_content():
    shuffled = random.Random(0).sample(KEYS, len(KEYS))
    assert data_fingerprint(shuffled) == data_fingerprint(KEYS) and len(data_fingerprint(KEYS)) == 64
    assert data_fingerprint(KEYS[:-1]) != data_fingerprint(KEYS)
    assert data_fingerprint(KEYS[:-1] + ["class0/new.png"]) != data_fingerprint(KEYS)
    assert data_fingerprint(["a", "a"]) != data_fingerprint(["a"])


def test_make_is_deterministic_seeded_and_holds_out_the_fraction():
    split = HeldOutSplit.make(KEYS, 0.1, seed=3, source="data/pets")
    assert split == HeldOutSplit.make(KEYS, 0.1, seed=3, source="data/pets")
    assert split.val_keys != HeldOutSplit.make(KEYS, 0.1, seed=4, source="data/pets").val_keys
    assert len(split.val_keys) == 4 and split.val_keys == sorted(split.val_keys) and set(split.val_keys) <= set(KEYS)
    assert (split.count, split.seed, split.fraction, split.source) == (40, 3, 0.1, "data/pets")
    assert split.fingerprint == data_fingerprint(KEYS)
    assert len(HeldOutSplit.make(KEYS, 0.25, seed=3, source="d").val_keys) == 10
    assert len(HeldOutSplit.make(KEYS, 0.001, seed=3, source="d").val_keys) == 1  # at least one


def test_make_refuses_too_little_data_or_a_bad_fraction():
    with pytest.raises(ValueError, match="data/one has 1 item"):
        HeldOutSplit.make(["a.png"], 0.5, seed=0, source="data/one")
    with pytest.raises(ValueError, match="leaves no training item"):
        HeldOutSplit.make(["a.png", "b.png"], 0.9, seed=0, source="data/two")
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        HeldOutSplit.make(KEYS, 1.0, seed=0, source="d")


def test_save_load_round_trip(tmp_path):
    split = HeldOutSplit.make(KEYS, 0.2, seed=7, source="data/pets")
    path = split.save(tmp_path / SPLIT_FILE)
    assert path.name == "split.json" and json.loads(path.read_text())["format"] == 1
    assert HeldOutSplit.load(path) == split
    assert [p.name for p in tmp_path.iterdir()] == ["split.json"]  # no temporary file left


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"format": 1, "source": "d"', "corrupt JSON"),
        ("[1, 2]", "not a held-out split file of format 1"),
        ('{"format": 2}', r"found format 2"),
        ('{"format": 1, "source": "d", "fingerprint": "f", "count": 3, "seed": 0, "fraction": 0.1}', "'val_keys'"),
        (
            '{"format": 1, "source": "d", "fingerprint": "f", "count": 3, "seed": 0, "fraction": 0.1, "val_keys": [1]}',
            "non-text",
        ),
    ],
)
def test_load_names_the_bad_file(tmp_path, text, message):
    path = tmp_path / "run" / SPLIT_FILE
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        HeldOutSplit.load(path)
    assert str(path) in str(info.value)


def test_resolve_same_keys_gives_the_split_and_its_complement():
    split = HeldOutSplit.make(KEYS, 0.1, seed=1, source="d")
    train, val, warnings = split.resolve(KEYS)
    assert warnings == [] and sorted(KEYS[i] for i in val) == split.val_keys
    # the indices the vision recipe held out before the split was saved: the first of a seeded permutation
    assert val == sorted(torch.randperm(len(KEYS), generator=torch.Generator().manual_seed(1))[:4].tolist())
    assert val == sorted(val) and train == sorted(train) and sorted(train + val) == list(range(len(KEYS)))


def test_resolve_finds_the_same_items_in_another_order():
    split = HeldOutSplit.make(KEYS, 0.1, seed=1, source="d")
    shuffled = random.Random(5).sample(KEYS, len(KEYS))
    train, val, warnings = split.resolve(shuffled)
    assert warnings == [] and sorted(shuffled[i] for i in val) == split.val_keys
    assert set(shuffled[i] for i in train).isdisjoint(split.val_keys) and len(train) == 36


def test_resolve_warns_when_the_data_changed():
    split = HeldOutSplit.make(KEYS, 0.1, seed=1, source="d")
    gone = split.val_keys[0]
    now = [key for key in KEYS if key != gone] + ["class0/new1.png", "class1/new2.png"]
    train, val, warnings = split.resolve(now)
    assert warnings == [
        "data changed since the split was made: 41 items now vs 40 then; 1 of the 4 held-out items are missing, "
        "at least 2 items are new"
    ]
    assert sorted(now[i] for i in val) == split.val_keys[1:] and {now[-1], now[-2]} <= {now[i] for i in train}
    lost_train = [key for key in KEYS if key not in split.val_keys][0]
    train, val, warnings = split.resolve([key for key in KEYS if key != lost_train])
    assert (
        len(val) == 4
        and len(train) == 35
        and warnings
        == [
            "data changed since the split was made: 39 items now vs 40 then; 0 of the 4 held-out items are missing, "
            "at least 0 items are new"
        ]
    )


def test_resolve_refuses_data_without_any_held_out_item():
    split = HeldOutSplit.make(KEYS, 0.1, seed=1, source="data/pets")
    others = [key for key in KEYS if key not in split.val_keys]
    with pytest.raises(ValueError, match="none of the run's held-out items are in data/pets"):
        split.resolve(others)
    with pytest.raises(ValueError, match="are in data/other"):
        split.resolve(others, source="data/other")


def test_items_that_share_a_key_are_held_out_together():
    keys = ["a.png", "b.png", "a.png", "c.png", "d.png", "a.png"]
    split = next(
        s for seed in range(50) if "a.png" in (s := HeldOutSplit.make(keys, 0.2, seed=seed, source="d")).val_keys
    )
    train, val, _ = split.resolve(keys)
    assert split.val_keys == ["a.png"] and val == [0, 2, 5] and train == [1, 3, 4]
