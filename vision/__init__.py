"""polyformer.vision: ViT image classification and DETR detection, built on polyformer.core."""
