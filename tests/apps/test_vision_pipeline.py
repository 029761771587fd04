"""`pipeline("image-classification")`: raw images in, plain results out; the shipped checkpoint is accurate."""

import numpy as np
import pytest
from PIL import Image

from polyformer.apps import pipeline
from polyformer.apps.pipelines import SHIPPED_CHECKPOINTS
from polyformer.apps.recipes.vision_classification import evaluate_classifier, open_eval_dataset
from polyformer.vision.data import FASHION_MNIST_CLASSES, load_embedded_fashion_mnist
from polyformer.vision.vit import ViT

SHIPPED = SHIPPED_CHECKPOINTS["vit_fashion_mnist"]


@pytest.fixture(scope="module")
def classify():
    return pipeline("image-classification", top_k=3, batch_size=4)


def test_shipped_checkpoint_is_small_and_loads():
    size = sum(p.stat().st_size for p in SHIPPED.iterdir())
    assert size <= 5 * 2**20
    model = ViT.from_pretrained(SHIPPED)
    assert model.config.class_names == list(FASHION_MNIST_CLASSES)


def test_shipped_checkpoint_scores_85_percent_on_the_embedded_test_set():
    model = ViT.from_pretrained(SHIPPED)
    dataset = open_eval_dataset(model, "embedded", "test")  # all 2000 images: a few seconds
    assert evaluate_classifier(model, dataset)["accuracy"] >= 0.85


def test_inputs_of_every_kind_give_the_same_answer(classify, tmp_path):
    raw = load_embedded_fashion_mnist("test")
    pixels = raw.images[7, 0].numpy()  # (H, W) uint8
    path = tmp_path / "item.png"
    Image.fromarray(pixels).save(path)
    answers = [
        classify(path),
        classify(str(path)),
        classify(Image.fromarray(pixels)),
        classify(pixels),
        classify(raw.load(7)),
    ]
    assert all(a == answers[0] for a in answers)
    top = answers[0]
    assert len(top) == 3 and top[0]["label"] in FASHION_MNIST_CLASSES
    assert top[0]["score"] >= top[1]["score"] >= top[2]["score"] and sum(p["score"] for p in top) <= 1.0 + 1e-6


def test_a_list_is_batched_and_keeps_order(classify):
    raw = load_embedded_fashion_mnist("test")
    images = [Image.fromarray(raw.images[i, 0].numpy()) for i in range(0, 2000, 200)]
    batched = classify(images)
    assert len(batched) == 10 and batched[3] == classify(images[3])
    correct = sum(found[0]["label"] == raw.classes[raw.targets[i]] for i, found in zip(range(0, 2000, 200), batched))
    assert correct >= 7
    assert classify([]) == []


def test_unknown_task_and_bad_input_are_clear(classify):
    with pytest.raises(ValueError, match="unknown pipeline task"):
        pipeline("summarization")
    with pytest.raises(TypeError, match="cannot classify"):
        classify(42)
    rgb = np.zeros((28, 28, 3), dtype=np.uint8)  # converted to the model's one channel
    assert len(classify(rgb)) == 3
