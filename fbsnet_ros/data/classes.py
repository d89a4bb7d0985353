"""Class tables of the datasets FBSNet is trained on."""

from __future__ import annotations

# Labels equal to this are left out of the loss and of every metric.
IGNORE_INDEX = 255

# A predicted label for "no class": pixels whose confidence is below the threshold in use
# (vision_msgs' value for unlabeled uint8 pixels). Scoring counts it as a wrong prediction.
UNLABELED = 255

# ImageNet statistics in RGB order; stored in every checkpoint so inference normalises alike.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CAMVID_CLASS_NAMES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)
# The SegNet-layout label value for unlabelled pixels.
CAMVID_UNLABELLED = 11
# SegNet's CamVid colours, RGB.
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
    (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
    (0, 128, 192),
)

CITYSCAPES_CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "train", "motorcycle", "bicycle",
)
# The official Cityscapes colours of the 19 train ids, RGB.
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
