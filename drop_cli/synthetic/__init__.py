"""Synthetic occluded pedestrians: a deterministic ReID dataset with exact body-part maps.

`plan` lists every image of a dataset in the Occluded-Duke layout and naming; `render` draws one of
them: an RGB crop and its part map in the `eight` preset; `write_synthetic` writes a whole set (images
and ``ground_truth.h5``) with worker processes. Modules: ``plan``, ``canvas`` (the region/material
canvas and drawing helpers), ``look`` (identities and cameras), ``figure`` (poses and people),
``scene`` (backgrounds and occluders), ``render``, ``write``.

Design decisions:

- Everything is a pure function of (num_ids, seed) and the item. Each item carries its own seed
  (derived from the global seed and its index), identities and cameras are derived from the global
  seed alone, so any image can be rendered alone, in any order, in any process, byte-identically.
- Figures are drawn with OpenCV primitives into one two-channel canvas: channel 0 holds the region
  (target body part 1..8, occluding person 9..16, object parts 17+), channel 1 the material (skin,
  shirt, ...). Each primitive writes both channels in one call, so the part map is exactly the
  raster of the image; shading, texture, blur and noise are applied afterwards to the image only.
  Primitives are not anti-aliased (an anti-aliased edge pixel would have no exact label); the
  optical blur of every camera softens the edges instead.
- Accessories take the label of the body part that carries them (hat: head, backpack and shoulder
  bag: torso); the neck is head; the pelvis (waist to crotch) is torso; a skirt is split into the
  left and right leg at the body's midline. Occluders, occluding people included, are background.
- Figures face the camera (front) or walk away from it (back); `left_arm` is always the person's
  left arm, so it appears on the image's right in a front view and on its left in a back view.
- Proportions follow adult anthropometry in units of the body height H: head 1/7 to 1/8 of H,
  shoulders about 0.26 H wide and wider than the hips, elbows at the waist, wrists at the crotch,
  knees at 0.29 H above the floor; a walking pose swings the arms and legs in depth (foreshortened
  in the image) and bends elbows and knees so that the joints show.
- Identity lives in appearance only (clothing colours from a small weighted palette, patterns,
  jacket, lower garment, accessories, build), so some identities look alike; each image jitters the
  colours, and each camera has its own background style, colour cast, brightness, blur and noise.
- Occluders (cars, boxes, bushes, pillars, tree trunks, awnings, foliage, other people) are placed
  from the target's pixel profile so that they hide a sampled 30-60% of its part pixels. They use
  their own random stream: the same item with ``occluded=False`` is the identical scene without them.
"""

from .canvas import IMAGE_HEIGHT, IMAGE_WIDTH
from .plan import CAMERAS, MIN_IDS, SPLIT_FOLDERS, SyntheticItem, plan
from .render import render
from .write import GROUND_TRUTH_FILE, SyntheticResult, write_synthetic

__all__ = [
    "CAMERAS",
    "GROUND_TRUTH_FILE",
    "IMAGE_HEIGHT",
    "IMAGE_WIDTH",
    "MIN_IDS",
    "SPLIT_FOLDERS",
    "SyntheticItem",
    "SyntheticResult",
    "plan",
    "render",
    "write_synthetic",
]
