"""Image data: IDX files, image folders and CSV lists (with bad files), embedded Fashion-MNIST, transforms."""

import gzip
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from polyformer.vision.data import (
    EMBEDDED_FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    BadImageError,
    BatchMixer,
    CSVImageDataset,
    IdxImageDataset,
    ImageFolderDataset,
    build_eval_transform,
    build_train_transform,
    load_embedded_fashion_mnist,
    load_fashion_mnist,
    load_idx_folder,
    open_image_dataset,
    read_idx,
    write_idx,
)
from polyformer.vision.data.make_embedded_fashion_mnist import balanced_indices, extract


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_idx_round_trip(tmp_path, name, dtype):
    array = (np.arange(24).reshape(2, 3, 4) * 3).astype(dtype)
    path = write_idx(tmp_path / name, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    out = read_idx(path)
    assert out.dtype == dtype and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)


def test_idx_errors_name_the_file(tmp_path):
    (tmp_path / "bad.idx").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match=r"bad\.idx is not an IDX file"):
        read_idx(tmp_path / "bad.idx")
    good = write_idx(tmp_path / "short.idx", np.zeros((4, 5), np.uint8)).read_bytes()
    (tmp_path / "short.idx").write_bytes(good[:-3])
    with pytest.raises(ValueError, match=r"short\.idx should hold 20 bytes"):
        read_idx(tmp_path / "short.idx")
    with pytest.raises(FileNotFoundError, match="missing.idx"):
        read_idx(tmp_path / "missing.idx")


def write_mnist_folder(folder, n_train=12, n_test=6, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", (np.arange(n) % 3).astype(np.uint8))
    return folder


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_dataset(tmp_path, gz):
    folder = write_mnist_folder(tmp_path / "mnist", gz=gz)
    train, test = load_idx_folder(folder, "train"), load_idx_folder(folder, "test", class_names=["a", "b", "c"])
    assert (len(train), len(test)) == (12, 6)
    assert train.classes == ["0", "1", "2"] and test.classes == ["a", "b", "c"]
    image, label = train[4]
    assert image.shape == (1, 28, 28) and image.dtype == torch.uint8 and label == 1
    assert train.class_counts() == [4, 4, 4]
    with pytest.raises(FileNotFoundError, match="no IDX files for split 'train'"):
        load_idx_folder(tmp_path, "train")


def test_idx_dataset_rejects_mismatched_files(tmp_path):
    write_idx(tmp_path / "images.idx", np.zeros((3, 4, 4), np.uint8))
    write_idx(tmp_path / "labels.idx", np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="3 images but .* 2 labels"):
        IdxImageDataset(tmp_path / "images.idx", tmp_path / "labels.idx")
    write_idx(tmp_path / "labels.idx", np.array([0, 1, 5], np.uint8))
    with pytest.raises(ValueError, match="label 5 but only 2 class names"):
        IdxImageDataset(tmp_path / "images.idx", tmp_path / "labels.idx", class_names=["a", "b"])


def write_image(path, mode="RGB", size=(10, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "images"
    write_image(root / "cat" / "1.png")
    write_image(root / "cat" / "2.jpg")
    write_image(root / "dog" / "1.png", mode="L")
    write_image(root / "dog" / "sub" / "2.bmp")
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return root


def test_image_folder_corrupt_file_is_named(image_folder):
    with pytest.raises(BadImageError, match=r"broken\.png"):
        ImageFolderDataset(image_folder)


def test_image_folder_skips_and_counts_bad_files(image_folder):
    data = ImageFolderDataset(image_folder, skip_bad=True)
    assert data.classes == ["cat", "dog"] and len(data) == 4 and data.targets == [0, 0, 1, 1]
    assert data.num_skipped == 1 and data.skipped[0][0].endswith("broken.png")
    channels = sorted(data[i][0].shape[0] for i in range(len(data)))
    assert channels == [1, 3, 3, 3]  # grayscale files stay 1-channel until the transform
    data.transform = build_eval_transform(16, channels=3)
    image, label = data[2]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and type(image) is torch.Tensor


def test_image_folder_unverified_bad_file_fails_on_load(image_folder):
    data = ImageFolderDataset(image_folder, verify=False)
    index = [str(p) for p in data.paths].index(str(image_folder / "dog" / "broken.png"))
    with pytest.raises(BadImageError, match=r"broken\.png"):
        data[index]


def test_image_folder_with_expected_classes(image_folder):
    data = ImageFolderDataset(image_folder, skip_bad=True, class_names=["bird", "cat", "dog"])
    assert data.targets == [1, 1, 2, 2]
    with pytest.raises(ValueError, match=r"\['dog'\] are not among"):
        ImageFolderDataset(image_folder, skip_bad=True, class_names=["cat"])


def test_csv_dataset(image_folder, tmp_path):
    csv_path = image_folder / "list.csv"
    csv_path.write_text("path,label\ncat/1.png,cat\n\ndog/1.png,dog\n" + f"{image_folder / 'cat' / '2.jpg'},cat\n")
    data = CSVImageDataset(csv_path)
    assert data.classes == ["cat", "dog"] and data.targets == [0, 1, 0] and data[1][0].shape == (1, 8, 10)
    numeric = tmp_path / "numeric.csv"
    numeric.write_text("cat/1.png,2\ncat/2.jpg,10\n")
    data = CSVImageDataset(numeric, root=image_folder)
    assert data.num_classes == 11 and data.targets == [2, 10]


@pytest.mark.parametrize(
    "rows,error,message",
    [
        ("cat/1.png,cat\ndog/broken.png,dog\n", BadImageError, r"broken\.png \(.*list\.csv line 2\)"),
        ("cat/1.png,cat\ncat/missing.png,cat\n", BadImageError, r"missing\.png \(.*line 2\)"),
        ("cat/1.png,cat\ncat/2.jpg\n", ValueError, r"line 2: expected 'path,label'"),
        ("cat/1.png,cat\ncat/2.jpg,cow\n", ValueError, r"line 2: unknown label 'cow'"),
        ("path,label\n", ValueError, "lists no images"),
    ],
)
def test_csv_errors_name_file_and_line(image_folder, rows, error, message):
    (image_folder / "list.csv").write_text(rows)
    with pytest.raises(error, match=message):
        CSVImageDataset(image_folder / "list.csv", class_names=["cat", "dog"])


def test_csv_skip_bad(image_folder):
    (image_folder / "list.csv").write_text("cat/1.png,cat\ndog/broken.png,dog\ndog/1.png,dog\n")
    data = CSVImageDataset(image_folder / "list.csv", skip_bad=True)
    assert len(data) == 2 and data.num_skipped == 1 and "line 2" in data.skipped[0][1]


def test_embedded_fashion_mnist_counts_balance_and_size():
    train, test = load_embedded_fashion_mnist("train"), load_embedded_fashion_mnist("test")
    assert (len(train), len(test)) == (10000, 2000)
    assert train.class_counts() == [1000] * 10 and test.class_counts() == [200] * 10
    assert train.classes == list(FASHION_MNIST_CLASSES) and train.classes[9] == "Ankle boot"
    assert train.images.shape == (10000, 1, 28, 28) and 50 < train.images.float().mean() < 100
    assert sum(p.stat().st_size for p in EMBEDDED_FASHION_MNIST_DIR.iterdir()) < 8_000_000


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_full_fashion_mnist_test_split():
    test = load_fashion_mnist("test")
    assert len(test) == 10000 and test.class_counts() == [1000] * 10


def test_open_image_dataset_dispatch(image_folder, tmp_path):
    assert len(open_image_dataset("embedded", "test")) == 2000
    assert len(open_image_dataset(write_mnist_folder(tmp_path / "mnist"), "test")) == 6
    (image_folder / "list.csv").write_text("cat/1.png,cat\n")
    assert len(open_image_dataset(image_folder / "list.csv")) == 1
    assert len(open_image_dataset(image_folder, skip_bad=True)) == 4  # class folders, split ignored
    split_root = tmp_path / "split"
    write_image(split_root / "train" / "a" / "1.png")
    write_image(split_root / "val" / "a" / "1.png")
    write_image(split_root / "val" / "b" / "1.png")
    assert len(open_image_dataset(split_root, "train")) == 1 and len(open_image_dataset(split_root, "test")) == 2
    with pytest.raises(FileNotFoundError, match="not found"):
        open_image_dataset(tmp_path / "nowhere")


def test_train_transform_shapes_and_options():
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    for augment in ("none", "randaugment", "trivialaugment", "autoaugment"):
        transform = build_train_transform(32, channels=3, augment=augment, vflip=0.5, random_erasing=1.0)
        out = transform(image)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32 and torch.isfinite(out).all()
    plain = build_train_transform(28, channels=1, crop_scale=(1.0, 1.0), hflip=0.0, mean=[0.0], std=[1.0])
    torch.testing.assert_close(plain(image), image.float() / 255)
    with pytest.raises(ValueError, match="unknown augment"):
        build_train_transform(28, augment="mixup")
    with pytest.raises(ValueError, match="one value per channel"):
        build_eval_transform(28, channels=1, mean=[0.5, 0.5, 0.5])


def test_eval_transform_resizes_and_centre_crops():
    image = torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)
    out = build_eval_transform(28, channels=1, crop_fraction=0.875)(image)
    assert out.shape == (1, 28, 28)


def test_batch_mixer_gives_soft_targets():
    images, labels = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    mixed, targets = BatchMixer(3, mixup_alpha=0.8, cutmix_alpha=0.0)(images, labels)
    assert mixed.shape == images.shape and targets.shape == (6, 3)
    torch.testing.assert_close(targets.sum(1), torch.ones(6))
    assert not torch.equal(mixed, images)
    _, one_hot = BatchMixer(3, prob=0.0)(images, labels)
    torch.testing.assert_close(one_hot, torch.eye(3)[labels])
    with pytest.raises(ValueError, match="mixup_alpha > 0 or cutmix_alpha > 0"):
        BatchMixer(3, 0.0, 0.0)


def test_balanced_extraction_script(tmp_path):
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 0])
    keep = balanced_indices(labels, 2, seed=0)
    assert np.bincount(labels[keep]).tolist() == [2, 2, 2] and (np.diff(keep) > 0).all()
    source = write_mnist_folder(tmp_path / "full", n_train=30, n_test=9)
    extract(source, tmp_path / "subset", per_class={"train": 4, "test": 2})
    subset = load_idx_folder(tmp_path / "subset", "train")
    assert len(subset) == 12 and subset.class_counts() == [4, 4, 4]
    with gzip.open(tmp_path / "subset" / "t10k-labels-idx1-ubyte.gz") as handle:
        assert len(handle.read()) == 8 + 6


def test_image_folder_empty_class_folder_is_an_error(image_folder):
    (image_folder / "emu").mkdir()
    (image_folder / "emu" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"images[/\\]emu has no images; every class folder needs at least one"):
        ImageFolderDataset(image_folder, skip_bad=True)
    with pytest.raises(ValueError, match=r"emu has no images"):  # also when the classes are given (eval)
        ImageFolderDataset(image_folder, skip_bad=True, class_names=["cat", "dog", "emu"])
    (image_folder / "emu").rename(image_folder.parent / "emu")
    data = ImageFolderDataset(image_folder, skip_bad=True, class_names=["cat", "dog", "emu"])  # no folder: fine
    assert data.classes == ["cat", "dog", "emu"] and data.class_counts() == [2, 2, 0]


def test_image_folder_class_with_only_unreadable_images_is_an_error(tmp_path):
    root = tmp_path / "digits"
    write_image(root / "1" / "a.png")
    (root / "7").mkdir()
    (root / "7" / "bad.png").write_bytes(b"not an image")
    (root / "8").mkdir()
    with pytest.raises(ValueError, match=r"7 \(1 unreadable files skipped\), .*8 have no images") as info:
        ImageFolderDataset(root, skip_bad=True)
    assert not isinstance(info.value, BadImageError)
    with pytest.raises(BadImageError, match=r"bad\.png"):  # without skip_bad the bad file is the error
        ImageFolderDataset(root)


def test_folder_item_keys_are_relative_stable_and_survive_a_move(image_folder, tmp_path):
    data = ImageFolderDataset(image_folder, skip_bad=True)
    keys = data.item_keys()
    assert keys == ["cat/1.png", "cat/2.jpg", "dog/1.png", "dog/sub/2.bmp"]
    assert keys == [p.relative_to(image_folder).as_posix() for p in data.paths]  # same order as the items
    assert len(set(keys)) == len(data) and ImageFolderDataset(image_folder, skip_bad=True).item_keys() == keys
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(image_folder, moved)
    assert ImageFolderDataset(moved, skip_bad=True).item_keys() == keys
    assert open_image_dataset(moved, skip_bad=True).item_keys() == keys


def test_csv_item_keys_are_relative_to_the_csv_folder(image_folder, tmp_path):
    rows = f"path,label\ndog/1.png,dog\n./cat/../cat/1.png,cat\n{image_folder / 'cat' / '2.jpg'},cat\n"
    (image_folder / "list.csv").write_text(rows)
    keys = CSVImageDataset(image_folder / "list.csv").item_keys()
    assert keys == ["dog/1.png", "cat/1.png", "cat/2.jpg"]
    other = tmp_path / "lists" / "other.csv"
    other.parent.mkdir()
    other.write_text("../images/cat/1.png,cat\n")
    assert CSVImageDataset(other).item_keys() == ["../images/cat/1.png"]
    other.write_text("cat/1.png,cat\n")
    assert CSVImageDataset(other, root=image_folder).item_keys() == ["cat/1.png"]  # relative to the given root


def test_idx_and_embedded_item_keys(tmp_path):
    folder = write_mnist_folder(tmp_path / "mnist")
    train, test = load_idx_folder(folder, "train"), open_image_dataset(folder, "test")
    assert train.item_keys() == [f"train:{i}" for i in range(12)]
    assert test.item_keys() == [f"t10k:{i}" for i in range(6)]
    write_idx(tmp_path / "images.idx", np.zeros((2, 4, 4), np.uint8))
    write_idx(tmp_path / "labels.idx", np.zeros(2, np.uint8))
    assert IdxImageDataset(tmp_path / "images.idx", tmp_path / "labels.idx").item_keys() == [
        "images.idx:0",
        "images.idx:1",
    ]
    embedded = load_embedded_fashion_mnist("test")
    keys = embedded.item_keys()
    assert len(keys) == len(set(keys)) == 2000 and keys[:2] == ["t10k:0", "t10k:1"]
