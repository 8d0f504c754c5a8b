"""Constants shared by every layer: the ImageNet normalisation and the ignore label."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, on the 0-1 scale (torchvision's ImageNet weights)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE_INDEX = 255  # label of pixels that count neither for the loss nor for the metrics
