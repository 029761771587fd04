"""DETR's box operations against torchvision.ops, and the Hungarian matcher against brute force."""

import itertools

import pytest
import torch
from torchvision import ops

from polyformer.vision.detr import (
    HungarianMatcher,
    Targets,
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    check_boxes_xyxy,
    generalized_box_iou,
)


def _random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    corner = torch.rand(n, 2, generator=generator)
    size = torch.rand(n, 2, generator=generator) * 0.5 + 0.01
    return torch.cat([corner, corner + size], dim=-1)  # xyxy, positive area


def test_box_ops_match_torchvision():
    g = torch.Generator().manual_seed(0)
    a, b = _random_boxes(7, g), _random_boxes(5, g)
    cxcywh = box_xyxy_to_cxcywh(a)
    assert torch.allclose(cxcywh, ops.box_convert(a, "xyxy", "cxcywh"), atol=1e-6)
    assert torch.allclose(box_cxcywh_to_xyxy(cxcywh), a, atol=1e-6)
    assert torch.allclose(box_area(a), ops.box_area(a))
    assert torch.allclose(box_iou(a, b), ops.box_iou(a, b), atol=1e-6)
    assert torch.allclose(generalized_box_iou(a, b), ops.generalized_box_iou(a, b), atol=1e-6)
    assert torch.allclose(generalized_box_iou(a, a).diagonal(), torch.ones(7))
    far = torch.tensor([[10.0, 10.0, 11.0, 11.0]])
    assert generalized_box_iou(a[:1], far).item() < 0  # disjoint boxes: GIoU below zero, IoU zero
    assert box_iou(a[:1], far).item() == 0


def test_degenerate_boxes_give_zeros_not_nan_and_bad_boxes_are_named():
    point = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    assert box_iou(point, point).item() == 0 and torch.isfinite(generalized_box_iou(point, point)).all()
    check_boxes_xyxy(torch.tensor([[0.0, 0.0, 1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"cat.jpg annotation 3: box 1 \[2.0, 2.0, 1.0, 3.0\] is not"):
        check_boxes_xyxy(torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 1.0, 3.0]]), "cat.jpg annotation 3")
    with pytest.raises(ValueError, match=r"must be \(N, 4\)"):
        check_boxes_xyxy(torch.zeros(3))


def _brute_force(cost: torch.Tensor) -> float:
    """The lowest total cost of assigning every column to a distinct row."""
    rows, cols = cost.shape
    return min(
        sum(cost[r, c].item() for c, r in enumerate(chosen)) for chosen in itertools.permutations(range(rows), cols)
    )


@pytest.mark.parametrize("seed", range(5))
def test_matcher_finds_the_cheapest_assignment_per_image(seed):
    g = torch.Generator().manual_seed(seed)
    b, q, classes = 3, 5, 4
    logits = torch.randn(b, q, classes + 1, generator=g)
    boxes = box_xyxy_to_cxcywh(_random_boxes(b * q, g)).view(b, q, 4)
    counts = [3, 0, 5]
    targets = [Targets(torch.randint(0, classes, (n,), generator=g), box_xyxy_to_cxcywh(_random_boxes(n, g)))
               for n in counts]  # fmt: skip
    matcher = HungarianMatcher()
    matches = matcher(logits, boxes, targets)
    for i, (rows, cols) in enumerate(matches):
        assert len(rows) == len(cols) == counts[i] and sorted(cols.tolist()) == list(range(counts[i]))
        if counts[i]:
            cost = HungarianMatcher().cost_matrix(logits[i : i + 1], boxes[i : i + 1], [targets[i]])
            assert cost[rows, cols].sum().item() == pytest.approx(_brute_force(cost), abs=1e-5)


def test_matcher_costs_follow_detr_and_errors_are_clear():
    logits = torch.tensor([[[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]]])  # query 0 says class 0, query 1 class 1
    boxes = torch.tensor([[[0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.2, 0.2]]])
    target = Targets(torch.tensor([1, 0]), torch.tensor([[0.7, 0.7, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]]))
    ((rows, cols),) = HungarianMatcher()(logits, boxes, [target])
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 1, 1: 0}
    cost = HungarianMatcher(class_weight=1, l1_weight=0, giou_weight=0).cost_matrix(logits, boxes, [target])
    assert torch.allclose(cost, -logits[0].softmax(-1)[:, [1, 0]])
    with pytest.raises(ValueError, match="image 0 has 3 objects but the model has only 2 queries; raise num_queries"):
        HungarianMatcher()(logits, boxes, [Targets(torch.zeros(3, dtype=torch.long), torch.rand(3, 4))])
    with pytest.raises(ValueError, match="not all zero"):
        HungarianMatcher(0, 0, 0)


def test_sigmoid_matcher_uses_the_focal_class_cost():
    """Deformable DETR's class cost: alpha (1-p)^2 (-log p) - (1-alpha) p^2 (-log(1-p)), p = sigmoid."""
    logits = torch.tensor([[[2.0, -1.0, 0.0], [-1.0, 3.0, 0.0]]])
    boxes = torch.rand(1, 2, 4) * 0.5 + 0.25
    target = Targets(torch.tensor([1, 0]), torch.rand(2, 4) * 0.5 + 0.25)
    cost = HungarianMatcher(1, 0, 0, sigmoid=True).cost_matrix(logits, boxes, [target])
    p = logits[0][:, [1, 0]].sigmoid()
    expected = 0.25 * (1 - p) ** 2 * -p.log() - 0.75 * p**2 * -(1 - p).log()
    assert torch.allclose(cost, expected, atol=1e-6)
    ((rows, cols),) = HungarianMatcher(1, 0, 0, sigmoid=True)(logits, boxes, [target])
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 1, 1: 0}


def test_sine_position_encoding_matches_transformers_detr_with_padding():
    from transformers.models.detr.modeling_detr import DetrSinePositionEmbedding

    from polyformer.vision.detr import sine_position_encoding

    mask = torch.ones(2, 6, 9, dtype=torch.bool)
    mask[1, 4:, :] = False  # the second image is padded below and to the right
    mask[1, :, 7:] = False
    for normalize in (True, False):
        expected = DetrSinePositionEmbedding.build_sine_position_embedding(
            (2, 3, 6, 9), "cpu", torch.float32, 16, normalize=normalize, scale=2 * torch.pi, mask=mask
        )
        ours = sine_position_encoding(mask, num_features=16, normalize=normalize)
        assert ours.shape == (2, 32, 6, 9) and torch.allclose(ours, expected, atol=1e-5)
    alone = sine_position_encoding(torch.ones(1, 4, 7, dtype=torch.bool), num_features=16)
    assert torch.allclose(sine_position_encoding(mask, num_features=16)[1, :, :4, :7], alone[0], atol=1e-6)
    with pytest.raises(ValueError, match="even"):
        sine_position_encoding(mask, num_features=15)
