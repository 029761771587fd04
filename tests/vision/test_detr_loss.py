"""DETR set loss: values on constructed cases, parity with transformers' DETR loss (with auxiliary
layers), the focal option, and clear errors for labels that do not fit the model."""

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou as tv_giou

from polyformer.vision.detr import DetrOutput, SetCriterion, Targets, box_cxcywh_to_xyxy

K = 3


def test_perfect_predictions_cost_nothing():
    boxes = torch.tensor([[[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4], [0.5, 0.5, 0.1, 0.1]]])
    logits = torch.full((1, 3, K + 1), -50.0)
    logits[0, 0, 2] = logits[0, 1, 0] = logits[0, 2, K] = 50.0  # query 2 says "no object"
    target = Targets(labels=torch.tensor([0, 2]), boxes=boxes[0, [1, 0]])
    losses = SetCriterion(K)(DetrOutput(logits, boxes), [target])
    assert losses["loss"] < 1e-6 and losses["loss_l1"] == 0 and losses["loss_giou"].abs() < 1e-6
    assert losses["class_error"] == 0


def test_constructed_case_by_hand():
    """One image, two queries, one object: the matcher takes the query with the cheaper cost and
    the losses follow DETR's formulas."""
    logits = torch.tensor([[[2.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.5]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.4, 0.4], [0.1, 0.1, 0.1, 0.1]]])
    target = Targets(labels=torch.tensor([0]), boxes=torch.tensor([[0.55, 0.5, 0.4, 0.3]]))
    losses = SetCriterion(K)(DetrOutput(logits, boxes), [target])
    # query 0 is matched to the object (class 0), query 1 is "no object" (class 3, weight 0.1)
    ce0 = -F.log_softmax(logits[0, 0], -1)[0]
    ce1 = -F.log_softmax(logits[0, 1], -1)[K]
    torch.testing.assert_close(losses["loss_class"], (ce0 + 0.1 * ce1) / 1.1)
    torch.testing.assert_close(losses["loss_l1"], torch.tensor(0.05 + 0 + 0 + 0.1))
    giou = tv_giou(box_cxcywh_to_xyxy(boxes[0, :1]), box_cxcywh_to_xyxy(target.boxes))[0, 0]
    torch.testing.assert_close(losses["loss_giou"], 1 - giou)
    total = losses["loss_class"] + 5 * losses["loss_l1"] + 2 * losses["loss_giou"]
    torch.testing.assert_close(losses["loss"], total)
    assert losses["class_error"] == 0
    wrong = SetCriterion(K)(DetrOutput(logits.flip(-1), boxes), [target])  # top class of query 0 is now "no object"
    assert wrong["class_error"] == 100


def test_box_losses_are_divided_by_the_objects_of_the_whole_batch():
    torch.manual_seed(0)
    logits, boxes = torch.randn(2, 4, K + 1), torch.rand(2, 4, 4) * 0.5 + 0.25
    one = Targets(torch.tensor([1]), torch.tensor([[0.5, 0.5, 0.2, 0.2]]))
    empty = Targets(torch.zeros(0, dtype=torch.long), torch.zeros(0, 4))
    three = Targets(torch.tensor([0, 1, 2]), torch.rand(3, 4) * 0.3 + 0.3)
    criterion = SetCriterion(K)
    alone = criterion(DetrOutput(logits[:1], boxes[:1]), [one])
    with_empty = criterion(DetrOutput(logits, boxes), [one, empty])
    torch.testing.assert_close(with_empty["loss_l1"], alone["loss_l1"])  # an empty image adds no box and no divisor
    other = criterion(DetrOutput(logits[1:], boxes[1:]), [three])
    both = criterion(DetrOutput(logits, boxes), [one, three])
    torch.testing.assert_close(both["loss_l1"], (alone["loss_l1"] * 1 + other["loss_l1"] * 3) / 4)


def test_matches_transformers_detr_loss_with_auxiliary_layers():
    transformers = pytest.importorskip("transformers")
    from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss

    torch.manual_seed(3)
    layers, b, q = 3, 2, 6
    all_logits, all_boxes = torch.randn(layers, b, q, K + 1), torch.rand(layers, b, q, 4) * 0.6 + 0.2
    targets = [
        Targets(torch.tensor([0, 2]), torch.rand(2, 4) * 0.4 + 0.3),
        Targets(torch.tensor([1, 1, 0]), torch.rand(3, 4) * 0.4 + 0.3),
    ]
    config = transformers.DetrConfig(num_labels=K, decoder_layers=layers, auxiliary_loss=True, use_timm_backbone=False)
    labels = [{"class_labels": t.labels, "boxes": t.boxes} for t in targets]
    expected, parts, _ = ForObjectDetectionLoss(
        all_logits[-1], labels, "cpu", all_boxes[-1], config, outputs_class=all_logits, outputs_coord=all_boxes
    )
    output = DetrOutput(all_logits[-1], all_boxes[-1], [(all_logits[i], all_boxes[i]) for i in range(layers - 1)])
    ours = SetCriterion(K)(output, targets)
    names = {"loss_class": "loss_ce", "loss_l1": "loss_bbox", "loss_giou": "loss_giou"}
    for suffix in ["", "_0", "_1"]:
        for mine, theirs in names.items():
            torch.testing.assert_close(ours[mine + suffix], parts[theirs + suffix])
    torch.testing.assert_close(ours["loss"], expected)


def test_focal_loss_scores_classes_with_sigmoids():
    logits = torch.tensor([[[3.0, -2.0, -1.0, 0.0], [-3.0, -3.0, -3.0, 9.0]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]]])
    target = Targets(torch.tensor([0]), torch.tensor([[0.5, 0.5, 0.2, 0.2]]))
    losses = SetCriterion(K, focal=True)(DetrOutput(logits, boxes), [target])
    p = logits[0, :, :K].sigmoid()
    wanted = torch.tensor([[1.0, 0, 0], [0, 0, 0]])
    ce = -(wanted * p.log() + (1 - wanted) * (1 - p).log())
    p_t = wanted * p + (1 - wanted) * (1 - p)
    alpha_t = wanted * 0.25 + (1 - wanted) * 0.75
    torch.testing.assert_close(losses["loss_class"], (alpha_t * (1 - p_t) ** 2 * ce).sum())  # one object: divisor 1
    assert losses["class_error"] == 0
    assert math.isfinite(float(losses["loss"]))


def test_labels_that_do_not_fit_the_model_are_clear_errors():
    output = DetrOutput(torch.randn(1, 4, K + 1), torch.rand(1, 4, 4))
    with pytest.raises(ValueError, match=r"label 3 outside 0\.\.2"):
        SetCriterion(K)(output, [Targets(torch.tensor([3]), torch.tensor([[0.5, 0.5, 0.1, 0.1]]))])
    with pytest.raises(ValueError, match="predicts 3 classes .* built for 5"):
        SetCriterion(5)(output, [Targets(torch.tensor([0]), torch.tensor([[0.5, 0.5, 0.1, 0.1]]))])
    too_many = Targets(torch.zeros(5, dtype=torch.long), torch.rand(5, 4) * 0.2 + 0.4)
    with pytest.raises(ValueError, match="raise num_queries"):
        SetCriterion(K)(output, [too_many])


def test_loss_trains_the_predictions():
    """A few gradient steps on free logits and boxes reduce the loss (gradients reach both)."""
    torch.manual_seed(0)
    logits = torch.randn(1, 4, K + 1, requires_grad=True)
    raw = torch.randn(1, 4, 4, requires_grad=True)
    target = Targets(torch.tensor([1, 2]), torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.3]]))
    criterion = SetCriterion(K)
    optimizer = torch.optim.Adam([logits, raw], lr=0.1)
    first = None
    for _ in range(60):
        loss = criterion(DetrOutput(logits, raw.sigmoid()), [target])["loss"]
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1 * first
