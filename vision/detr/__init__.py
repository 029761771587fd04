"""DETR object detection (Carion et al. 2020): so far the box operations (:mod:`.box_ops`), the
Hungarian matcher (:mod:`.matcher`) and the 2D sine position encoding (:mod:`.position`)."""

from .box_ops import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    check_boxes_xyxy,
    generalized_box_iou,
)
from .matcher import HungarianMatcher, Targets
from .position import sine_position_encoding

__all__ = [name for name in dir() if not name.startswith("_") and name not in ("box_ops", "matcher", "position")]
