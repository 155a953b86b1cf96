#!/usr/bin/python3
"""Synthetic scenes for the shapes demo model: textured shapes on varied backgrounds.

Classes: 0 background, 1 circle, 2 square, 3 triangle, 4 star.
Each scene has a background (a gradient, smooth blotches or a low-contrast texture,
in random colours), 2-5 shapes (more in larger images) of random size, rotation,
colour and texture (plain, stripes, dots, checks, smooth noise), drawn in order so later shapes
occlude earlier ones, then sensor noise and
sometimes a blur. Colour and texture never tell the class: only the shape does.

    /usr/bin/python3 models/shapes_data.py OUT --count 200 --seed 1234 [--min-size 96 --max-size 192]

writes OUT/images/NNNN.png (RGB) and OUT/labels/NNNN.png (indexed PNG: pixel = class,
palette = the model's colours), the layout `atrous run DIR --output-dir` and
`atrous eval --gt` use. With --flat the images go in OUT itself (labels still in
OUT/labels), and --prefix names them PREFIXNNNN.png: the shipped samples are

    /usr/bin/python3 models/shapes_data.py models/samples --flat --prefix shapes_ --count 3 --seed 40 --min-size 160 --max-size 192

Training (train_shapes_gcn.py) draws its scenes with seeds 0 and 999 (validation);
use other seeds for held-out sets.
"""
import argparse
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ["background", "circle", "square", "triangle", "star"]
PALETTE = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200]]


def _colour(rng):
    return rng.randint(0, 256, 3).astype(np.float32)


def _texture(rng, h, w, contrast=1.0):
    """An RGB texture in [0, 255], float32 [h, w, 3]: plain, stripes, checks, dots or smooth
    noise in two random colours (`contrast` < 1 pulls the second towards the first)."""
    a = _colour(rng)
    b = a + (_colour(rng) - a) * contrast
    kind = rng.randint(5)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # plain
        t = np.zeros((h, w, 1), np.float32)
    elif kind == 1:  # stripes at a random angle
        ang, period = rng.uniform(0, math.pi), rng.uniform(4, 14)
        t = ((np.cos(ang) * xx + np.sin(ang) * yy) % period < period / 2).astype(np.float32)[..., None]
    elif kind == 2:  # checks
        s = rng.randint(3, 10)
        t = (((xx // s) + (yy // s)) % 2).astype(np.float32)[..., None]
    elif kind == 3:  # dots
        s = rng.randint(5, 12)
        t = (((xx % s) - s / 2) ** 2 + ((yy % s) - s / 2) ** 2 < (s / 3.5) ** 2).astype(np.float32)[..., None]
    else:  # smooth noise
        small = rng.rand(max(2, h // 8), max(2, w // 8)).astype(np.float32)
        t = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32)[..., None] / 255
    return a * (1 - t) + b * t


def _background(rng, h, w):
    """Gradients, smooth blotches, or a low-contrast texture."""
    kind = rng.randint(3)
    if kind == 0:  # gradient
        a, b = _colour(rng), _colour(rng)
        ang = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (np.cos(ang) * xx / w + np.sin(ang) * yy / h)
        t = ((t - t.min()) / max(1e-6, t.max() - t.min()))[..., None]
        return a * (1 - t) + b * t
    if kind == 1:  # blotches: big smooth noise
        small = rng.rand(4, 4, 3).astype(np.float32) * 255
        return np.asarray(Image.fromarray(small.astype(np.uint8)).resize((w, h), Image.BICUBIC), np.float32)
    return _texture(rng, h, w, contrast=0.35)


def _polygon(cx, cy, r, n, rot, inner=None):
    """A regular n-gon of radius r, or an n-pointed star (points at r, notches at inner)."""
    if inner is None:
        return [(cx + r * math.cos(rot + 2 * math.pi * i / n), cy + r * math.sin(rot + 2 * math.pi * i / n)) for i in range(n)]
    return [(cx + (r if i % 2 == 0 else inner) * math.cos(rot + math.pi * i / n),
             cy + (r if i % 2 == 0 else inner) * math.sin(rot + math.pi * i / n)) for i in range(2 * n)]


def _shape_mask(cls, h, w, cx, cy, r, rot):
    """The filled shape as a uint8 [h, w] mask."""
    m = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(m)
    if cls == 1:
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    elif cls == 2:
        d.polygon(_polygon(cx, cy, r, 4, rot), fill=1)
    elif cls == 3:
        d.polygon(_polygon(cx, cy, r, 3, rot), fill=1)
    else:
        d.polygon(_polygon(cx, cy, r, 5, rot, inner=r * 0.45), fill=1)
    return np.asarray(m)


def make_scene(rng, h, w, min_r=16, max_r=40, max_shapes=4):
    """One scene: (image uint8 [h, w, 3], labels uint8 [h, w])."""
    img = _background(rng, h, w)
    labels = np.zeros((h, w), np.uint8)
    area_scale = (h * w) / (128 * 128)
    n = rng.randint(2, max(3, int(round(max_shapes * min(2.5, area_scale)))) + 1)
    for _ in range(n):
        cls = rng.randint(1, len(CLASSES))
        r = rng.uniform(min_r, max_r)
        cx, cy = rng.uniform(0.05 * w, 0.95 * w), rng.uniform(0.05 * h, 0.95 * h)
        m = _shape_mask(cls, h, w, cx, cy, r, rng.uniform(0, 2 * math.pi)).astype(bool)
        ys, xs = np.nonzero(m)
        if len(ys) == 0:
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        box = m[y0:y1, x0:x1]
        img[y0:y1, x0:x1][box] = _texture(rng, int(y1 - y0), int(x1 - x0))[box]
        labels[m] = cls
    # sensor noise, sometimes a blur, a brightness change
    img = img * rng.uniform(0.7, 1.2) + rng.normal(0, rng.uniform(2, 10), img.shape)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if rng.rand() < 0.3:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return np.asarray(out), labels


def make_batch(rng, count, h, w):
    xs = np.zeros((count, h, w, 3), np.uint8)
    ys = np.zeros((count, h, w), np.uint8)
    for i in range(count):
        xs[i], ys[i] = make_scene(rng, h, w)
    return xs, ys


def label_image(labels):
    """An indexed PNG image of a label map: pixel = class index, palette = PALETTE."""
    im = Image.fromarray(labels, "L").convert("P")
    im.putpalette([c for rgb in PALETTE for c in rgb])
    return im


def write_set(out, count, seed, min_size, max_size, flat=False, prefix=""):
    rng = np.random.RandomState(seed)
    images = out if flat else os.path.join(out, "images")
    labels = os.path.join(out, "labels")
    os.makedirs(images, exist_ok=True)
    os.makedirs(labels, exist_ok=True)
    for i in range(count):
        h, w = rng.randint(min_size, max_size + 1, 2)
        img, lab = make_scene(rng, int(h), int(w))
        name = "%s%04d.png" % (prefix, i)
        Image.fromarray(img).save(os.path.join(images, name), optimize=True)
        label_image(lab).save(os.path.join(labels, name), optimize=True)
    return images, labels


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--min-size", type=int, default=96)
    ap.add_argument("--max-size", type=int, default=192)
    ap.add_argument("--flat", action="store_true", help="images in OUT itself instead of OUT/images")
    ap.add_argument("--prefix", default="", help="file name prefix (names are PREFIXNNNN.png)")
    a = ap.parse_args()
    if a.count < 1 or a.min_size < 16 or a.max_size < a.min_size:
        ap.error("need --count >= 1 and 16 <= --min-size <= --max-size")
    images, labels = write_set(a.out, a.count, a.seed, a.min_size, a.max_size, a.flat, a.prefix)
    print("wrote %d scenes (%d..%d px a side, seed %d) to %s and %s" %
          (a.count, a.min_size, a.max_size, a.seed, images, labels))
