"""Class names and colours of the public data sets (Cityscapes train ids, ADE20K SceneParse150)."""

from __future__ import annotations

# Cityscapes: (labelId, name, colour) of the 19 evaluated classes, in train-id order
CITYSCAPES = [
    (7, "road", (128, 64, 128)),
    (8, "sidewalk", (244, 35, 232)),
    (11, "building", (70, 70, 70)),
    (12, "wall", (102, 102, 156)),
    (13, "fence", (190, 153, 153)),
    (17, "pole", (153, 153, 153)),
    (19, "traffic light", (250, 170, 30)),
    (20, "traffic sign", (220, 220, 0)),
    (21, "vegetation", (107, 142, 35)),
    (22, "terrain", (152, 251, 152)),
    (23, "sky", (70, 130, 180)),
    (24, "person", (220, 20, 60)),
    (25, "rider", (255, 0, 0)),
    (26, "car", (0, 0, 142)),
    (27, "truck", (0, 0, 70)),
    (28, "bus", (0, 60, 100)),
    (31, "train", (0, 80, 100)),
    (32, "motorcycle", (0, 0, 230)),
    (33, "bicycle", (119, 11, 32)),
]
CITYSCAPES_NUM_LABEL_IDS = 34  # labelIds 0..33; all but the 19 above are ignored

ADE20K_CLASSES = """wall|building|sky|floor|tree|ceiling|road|bed|windowpane|grass|cabinet|
sidewalk|person|earth|door|table|mountain|plant|curtain|chair|car|water|painting|sofa|shelf|house|
sea|mirror|rug|field|armchair|seat|fence|desk|rock|wardrobe|lamp|bathtub|railing|cushion|base|box|
column|signboard|chest of drawers|counter|sand|sink|skyscraper|fireplace|refrigerator|grandstand|
path|stairs|runway|case|pool table|pillow|screen door|stairway|river|bridge|bookcase|blind|
coffee table|toilet|flower|book|hill|bench|countertop|stove|palm|kitchen island|computer|
swivel chair|boat|bar|arcade machine|hovel|bus|towel|light|truck|tower|chandelier|awning|
streetlight|booth|television receiver|airplane|dirt track|apparel|pole|land|bannister|escalator|
ottoman|bottle|buffet|poster|stage|van|ship|fountain|conveyer belt|canopy|washer|plaything|
swimming pool|stool|barrel|basket|waterfall|tent|bag|minibike|cradle|oven|ball|food|step|tank|
trade name|microwave|pot|animal|bicycle|lake|dishwasher|screen|blanket|sculpture|hood|sconce|vase|
traffic light|tray|ashcan|fan|pier|crt screen|plate|monitor|bulletin board|shower|radiator|glass|
clock|flag""".replace("\n", "").split("|")


def named_palettes() -> dict[str, tuple[list[str], list[tuple[int, int, int]], tuple[int, int, int]]]:
    """Masks stored as a known data set's colours: name -> (classes, their colours, the ignored colour)."""
    from deeplab.palette import VOC_CLASSES, VOC_VOID, voc_palette

    return {
        "voc": (list(VOC_CLASSES), voc_palette(len(VOC_CLASSES)), VOC_VOID),
        "cityscapes": ([name for _, name, _ in CITYSCAPES], [colour for _, _, colour in CITYSCAPES], (0, 0, 0)),
    }
