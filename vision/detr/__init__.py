"""DETR object detection (Carion et al. 2020): the model (:mod:`.model`, presets in :mod:`.presets`,
Hugging Face checkpoints through :mod:`.convert_hf`), box operations (:mod:`.box_ops`), the
Hungarian matcher (:mod:`.matcher`) and the 2D position encodings (:mod:`.position`).

Importing this package registers the ``detr_*`` presets in the core registry.
"""

from .box_ops import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    check_boxes_xyxy,
    generalized_box_iou,
)
from .config import DetrConfig
from .convert_hf import convert_hf_state_dict, detr_config_from_hf, is_hf_detr_directory, read_hf_detr
from .loss import SetCriterion
from .matcher import HungarianMatcher, Targets
from .model import DETR, BoxHead, DetrOutput, ResNetBackbone
from .position import LearnedRowColumnPosition, sine_position_encoding
from .presets import detr_resnet18, detr_resnet50, detr_small_resnet18

_MODULES = ("box_ops", "config", "convert_hf", "loss", "matcher", "model", "position", "presets")
__all__ = [name for name in dir() if not name.startswith("_") and name not in _MODULES]
