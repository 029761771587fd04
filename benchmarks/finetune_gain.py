"""What starting from pretrained weights buys on a small image folder: the fine-tuning workflow end to end.

The task is new to the model: 3 coarse classes (footwear = Sandal, Sneaker, Ankle boot; tops =
T-shirt/top, Pullover, Shirt, Coat; other = Trouser, Dress, Bag) with ``--per-class`` images each,
written as an image folder (one sub-folder per class, no test split) from the embedded
Fashion-MNIST *test* images, which the shipped ViT was not trained on. Three runs, all through
``load_recipe`` + ``train_vision_classifier`` as ``polyformer vision train`` does, each scored
on the same held-out 30% of the folder (the run's ``split.json``):

- ``init``: ``--init vit_fashion_mnist`` with the ``image_folder_finetune`` recipe (a new 3-class
  head, layer decay 0.75, lr 3e-4, 10 epochs);
- ``scratch, same recipe``: the same architecture and recipe from a random initialisation;
- ``scratch, image_folder``: the same architecture with the from-scratch recipe (lr 1e-3, 20 epochs).

All three use batch 32 (the fine-tuning recipe's).

Run: ``python benchmarks/finetune_gain.py [--per-class 100] [--seeds 0,1,2]`` (about 10 s per seed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from PIL import Image

from polyformer.apps.engine.hardware import machine_summary
from polyformer.apps.pipelines import SHIPPED_CHECKPOINTS
from polyformer.apps.recipes.vision_classification import load_recipe, train_vision_classifier
from polyformer.vision.data import load_embedded_fashion_mnist

GROUPS = {0: "tops", 1: "other", 2: "tops", 3: "other", 4: "tops", 5: "footwear", 6: "tops", 7: "footwear", 8: "other"}
GROUPS[9] = "footwear"
SHIPPED = SHIPPED_CHECKPOINTS["vit_fashion_mnist"]
SHIPPED_ARCHITECTURE = ["model.patch_size=7", "model.d_model=128", "model.d_ff=256", "model.in_channels=1"]


def write_folder(root: Path, per_class: int) -> None:
    """The first ``per_class`` embedded test images of each coarse class, as PNG files."""
    images = load_embedded_fashion_mnist("test")
    counts: dict[str, int] = {}
    for index in range(len(images)):
        picture, label = images[index]
        group = GROUPS[int(label)]
        if counts.get(group, 0) < per_class:
            counts[group] = counts.get(group, 0) + 1
            (root / group).mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture[0].numpy()).save(root / group / f"{index}.png")  # (1, 28, 28) uint8


def accuracy(config: str, data: Path, out: Path, seed: int, model: list[str], batch: int) -> float:
    overrides = [*model, f"data.train={data}", "data.val_fraction=0.3", f"train.seed={seed}"]
    overrides += [f"train.out_dir={out}", "train.quiet=true", "train.plot=false", f"train.batch_size={batch}"]
    result = train_vision_classifier(load_recipe(config, overrides), echo=lambda line: None)
    return result.metrics["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = {
        "init (image_folder_finetune)": ("image_folder_finetune", [f"model.init={SHIPPED}"]),
        "scratch, same recipe": ("image_folder_finetune", ["model.preset=vit_nano_patch4_28", *SHIPPED_ARCHITECTURE]),
        "scratch, image_folder recipe": ("image_folder", ["model.preset=vit_nano_patch4_28", *SHIPPED_ARCHITECTURE]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "images"
        write_folder(data, args.per_class)
        batch = min(32, int(3 * args.per_class * 0.7))  # both recipes' batch is 32 or more; a toy run has fewer images
        print(machine_summary())
        print(f"{3 * args.per_class} images in 3 classes, 30% held out; final validation accuracy per seed {seeds}")
        for number, (name, (config, model)) in enumerate(runs.items()):
            scores = [
                accuracy(config, data, Path(tmp) / f"run{number}-{seed}", seed, model, batch) for seed in seeds
            ]
            shown = " ".join(f"{score:.1%}" for score in scores)
            print(f"{name:<30} mean {statistics.mean(scores):.1%}  ({shown})")


if __name__ == "__main__":
    main()
