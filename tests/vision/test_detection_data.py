"""Detection data: the shapes generator, COCO / VOC / CSV readers with every bad-input case,
data-set opening by path, box-aware transforms and padded batches."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from polyformer.vision.data import (
    BadAnnotationError,
    DetectionDataset,
    detection_collate,
    detection_transform,
    open_detection_data,
    read_coco,
    read_detection_csv,
    read_voc,
)
from polyformer.vision.data.shapes import SHAPE_CLASSES, draw_shapes_image, write_shapes_coco
from polyformer.vision.detr import box_cxcywh_to_xyxy


def test_shapes_are_deterministic_exact_and_varied():
    a, b = draw_shapes_image(7), draw_shapes_image(7)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image)) and a.boxes == b.boxes and a.labels == b.labels
    drawn = [draw_shapes_image(seed) for seed in range(60)]
    counts = [len(d.boxes) for d in drawn]
    assert min(counts) == 1 and max(counts) == 5
    assert {label for d in drawn for label in d.labels} == set(range(len(SHAPE_CLASSES)))
    sides = [box[2] - box[0] for d in drawn for box in d.boxes]
    assert min(sides) < 20 and max(sides) > 40
    overlapping = 0
    for d in drawn:
        for i, box in enumerate(d.boxes):
            assert 0 <= box[0] < box[2] <= 128 and 0 <= box[1] < box[3] <= 128
            overlapping += any(
                min(box[2], o[2]) > max(box[0], o[0]) and min(box[3], o[3]) > max(box[1], o[1]) for o in d.boxes[:i]
            )
    assert overlapping > 0  # some shapes overlap


def test_a_drawn_square_fills_its_box_exactly():
    for seed in range(200):
        drawn = draw_shapes_image(seed)
        if SHAPE_CLASSES.index("square") in drawn.labels and len(drawn.labels) == 1:
            break
    x0, y0, x1, y1 = (int(v) for v in drawn.boxes[0])
    pixels = np.asarray(drawn.image).astype(int)
    inside = pixels[y0:y1, x0:x1].reshape(-1, 3)
    assert (inside == inside[0]).all()  # one flat colour over the whole box
    assert not (pixels[y0:y1, x1].reshape(-1, 3) == inside[0]).all(axis=1).all() or x1 == 128


def test_embedded_shapes_read_as_coco():
    train, test = open_detection_data("shapes", "train"), open_detection_data("shapes", "test")
    assert len(train.samples) == 240 and len(test.samples) == 60
    assert train.class_names == list(SHAPE_CLASSES) and test.skipped == 0
    assert train.samples[0].image.is_file()
    assert train.max_objects() == 5
    with pytest.raises(ValueError, match="has 5 objects but the model has 3 queries; set num_queries to at least 5"):
        train.check_queries(3)


def write_image(path, size=(64, 48)):
    Image.new("RGB", size, (90, 120, 150)).save(path)
    return path


def coco(tmp_path, annotations, images=None):
    (tmp_path / "images").mkdir(exist_ok=True)
    images = images or [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}]
    for info in images:
        if info["file_name"] != "missing.png":
            write_image(tmp_path / "images" / info["file_name"])
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 5, "name": "dog"}, {"id": 2, "name": "cat"}],
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def ann(i, bbox, category=5, **extra):
    return {"id": i, "image_id": 1, "category_id": category, "bbox": bbox, **extra}


def test_coco_reader_boxes_classes_and_crowds(tmp_path):
    path = coco(
        tmp_path, [ann(1, [10, 5, 20, 10]), ann(2, [0, 0, 64, 48], category=2), ann(3, [1, 1, 5, 5], iscrowd=1)]
    )
    data = read_coco(path)
    assert data.class_names == ["cat", "dog"]  # category id order (2, 5)
    sample = data.samples[0]
    assert sample.size == (64, 48)
    assert sample.boxes.tolist() == [[10, 5, 30, 15], [0, 0, 64, 48]] and sample.labels.tolist() == [1, 0]
    fixed = read_coco(path, class_names=["dog", "cat", "bird"])
    assert fixed.samples[0].labels.tolist() == [0, 1] and fixed.class_names == ["dog", "cat", "bird"]
    with pytest.raises(BadAnnotationError, match=r"labels \['dog'\] are not among the model's classes"):
        read_coco(path, class_names=["cat"])


@pytest.mark.parametrize(
    "bad, message",
    [
        (ann(7, [50, 5, 20, 10]), "annotation 7 .*outside the 64x48 image"),
        (ann(7, [10, 5, 0, 10]), "annotation 7 .*has no area"),
        (ann(7, [10, 5, 4, 4], category=9), "annotation 7 .*category_id 9"),
    ],
)
def test_coco_bad_boxes_are_named_or_skipped(tmp_path, bad, message):
    path = coco(tmp_path, [ann(1, [10, 5, 20, 10]), bad])
    with pytest.raises(BadAnnotationError, match=message + ".*--skip-bad"):
        read_coco(path)
    data = read_coco(path, skip_bad=True)
    assert data.skipped == 1 and len(data.samples[0].labels) == 1


def test_coco_slightly_outside_boxes_are_clipped_and_missing_images_named(tmp_path):
    path = coco(tmp_path, [ann(1, [-0.5, 0, 64.8, 48])])
    assert read_coco(path).samples[0].boxes.tolist() == [[0, 0, 64, 48]]
    images = [
        {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
        {"id": 2, "file_name": "missing.png", "width": 9, "height": 9},
    ]
    path = coco(tmp_path, [ann(1, [1, 1, 5, 5])], images)
    with pytest.raises(BadAnnotationError, match="image 2 .*missing.png not found"):
        read_coco(path)
    assert read_coco(path, skip_bad=True).skipped == 1
    (tmp_path / "broken.json").write_text('{"images": []}')
    with pytest.raises(BadAnnotationError, match="not COCO detection JSON"):
        read_coco(tmp_path / "broken.json")


VOC = """<annotation><filename>{name}</filename><size><width>64</width><height>48</height><depth>3</depth></size>
{objects}</annotation>"""
OBJ = (
    "<object><name>{label}</name>"
    "<bndbox><xmin>{0}</xmin><ymin>{1}</ymin><xmax>{2}</xmax><ymax>{3}</ymax></bndbox></object>"
)


def voc(tmp_path, objects_per_file):
    (tmp_path / "Annotations").mkdir(parents=True)
    (tmp_path / "JPEGImages").mkdir()
    for i, objects in enumerate(objects_per_file):
        write_image(tmp_path / "JPEGImages" / f"{i}.jpg")
        body = "".join(OBJ.format(*box, label=label) for label, box in objects)
        (tmp_path / "Annotations" / f"{i}.xml").write_text(VOC.format(name=f"{i}.jpg", objects=body))
    return tmp_path


def test_voc_reader_and_bad_objects(tmp_path):
    folder = voc(tmp_path, [[("person", (1, 2, 30, 40)), ("car", (5, 5, 10, 10))], [("car", (0, 0, 64, 48))]])
    data = read_voc(folder)
    assert data.class_names == ["car", "person"]
    assert data.samples[0].boxes.tolist() == [[1, 2, 30, 40], [5, 5, 10, 10]] and data.samples[0].labels.tolist() == [
        1,
        0,
    ]
    bad = voc(tmp_path / "bad", [[("car", (5, 5, 10, 10)), ("car", (30, 5, 90, 10))]])
    with pytest.raises(BadAnnotationError, match=r"0\.xml object 2: .*outside the 64x48 image"):
        read_voc(bad)
    assert read_voc(bad, skip_bad=True).skipped == 1
    with pytest.raises(BadAnnotationError, match="no VOC .xml"):
        read_voc(tmp_path / "bad" / "JPEGImages")


def test_csv_reader_images_without_objects_and_bad_lines(tmp_path):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    rows = ["image,xmin,ymin,xmax,ymax,label", "a.png,1,2,30,40,cat", "a.png,5,5,10,10,dog", "b.png,,,,,"]
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    data = read_detection_csv(tmp_path / "boxes.csv")
    assert data.class_names == ["cat", "dog"] and [len(s.labels) for s in data.samples] == [2, 0]
    assert data.samples[0].size == (64, 48)
    for bad, message in [
        ("a.png,1,2,x,40,cat", "line 5: box fields"),
        ("a.png,1,2,30,90,cat", "line 5: .*outside"),
        ("c.png,1,2,3,4,cat", "line 5: image file .*c.png not found"),
        ("a.png,1,2,30,cat", "line 5: expected 6 fields"),
    ]:
        (tmp_path / "bad.csv").write_text("\n".join([*rows, bad]) + "\n")
        with pytest.raises(BadAnnotationError, match=message):
            read_detection_csv(tmp_path / "bad.csv")
        assert read_detection_csv(tmp_path / "bad.csv", skip_bad=True).skipped == 1
    (tmp_path / "header.csv").write_text("path,label\na.png,cat\n")
    with pytest.raises(BadAnnotationError, match="header image,xmin,ymin,xmax,ymax,label"):
        read_detection_csv(tmp_path / "header.csv")


def test_open_detection_data_finds_the_format_and_split(tmp_path):
    write_shapes_coco(tmp_path / "set" / "train", 3, seed=5)
    write_shapes_coco(tmp_path / "set" / "val", 2, seed=6)
    assert len(open_detection_data(tmp_path / "set", "train").samples) == 3
    assert len(open_detection_data(tmp_path / "set", "test").samples) == 2  # val stands in for test
    assert len(open_detection_data(tmp_path / "set" / "train" / "annotations.json").samples) == 3
    voc(tmp_path / "voc", [[("car", (5, 5, 10, 10))]])
    assert open_detection_data(tmp_path / "voc").class_names == ["car"]
    with pytest.raises(FileNotFoundError, match="not found"):
        open_detection_data(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no detection annotations"):
        open_detection_data(tmp_path / "empty")


def white_square_sample(tmp_path):
    image = np.zeros((60, 80, 3), np.uint8)
    image[10:30, 50:70] = 255
    Image.fromarray(image).save(tmp_path / "square.png")
    rows = ["image,xmin,ymin,xmax,ymax,label", "square.png,50,10,70,30,square"]
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    return read_detection_csv(tmp_path / "boxes.csv")


def test_augmented_boxes_follow_the_pixels(tmp_path):
    """Flip, crop and resize move the box with the square: the box covers white pixels only."""
    data = white_square_sample(tmp_path)
    dataset = DetectionDataset(
        data, detection_transform(True, 96, 160, [0.0] * 3, [1.0] * 3, crop=1.0, crop_min_scale=0.7)
    )
    seen_flips = set()
    for seed in range(12):
        torch.manual_seed(seed)
        image, targets = dataset[0]
        height, width = image.shape[-2:]
        assert min(height, width) in (72, 78, 84, 90, 96)
        if len(targets.labels) == 0:  # the crop missed the square: no box, no white pixels
            assert image.max() < 0.5
            continue
        x0, y0, x1, y1 = (box_cxcywh_to_xyxy(targets.boxes[0]) * torch.tensor([width, height, width, height])).tolist()
        inside = image[:, round(y0) + 1 : round(y1) - 1, round(x0) + 1 : round(x1) - 1]
        assert inside.numel() and inside.min() > 0.9
        white = image[0] > 0.5
        assert white.sum() <= (x1 - x0 + 2) * (y1 - y0 + 2)  # no white outside the box
        seen_flips.add((x0 + x1) / 2 < width / 2)
    assert seen_flips == {True, False}  # flipped and not


def test_eval_transform_and_padded_batches():
    data = open_detection_data("shapes", "test")
    dataset = DetectionDataset(data, detection_transform(False, 256, 384, [0.5] * 3, [0.25] * 3))
    image, targets = dataset[0]
    assert image.shape == (3, 256, 256)
    expected = data.samples[0].boxes / 128
    torch.testing.assert_close(box_cxcywh_to_xyxy(targets.boxes), expected)
    wide = torch.zeros(3, 100, 200), targets
    batch = detection_collate([(image, targets), wide])
    assert batch.images.shape == (2, 3, 256, 256) and batch.pixel_mask.shape == (2, 256, 256)
    assert batch.pixel_mask[1, :100, :200].all() and not batch.pixel_mask[1, 100:].any()
    assert not batch.pixel_mask[1, :, 200:].any() and batch.pixel_mask[0].all()
    assert batch.targets[0] is targets
