"""Draws devstack/assets/face.png, the cartoon face of the local stack's demo and tests.

Our own drawing, made with the standard library only (PNG = zlib + struct), so the repository holds no
third-party image and anyone can regenerate it: `python -m devstack.assets.make_face [output.png]`.
Each shape is a signed distance function; the distance gives one pixel of anti-aliasing at its edge.
"""

import math
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SIZE = 512
DEFAULT_OUTPUT = Path(__file__).with_name("face.png")

Color = tuple[int, int, int]
# Signed distance in pixels from (x, y) to a shape's edge: negative inside.
Distance = Callable[[float, float], float]

BACKGROUND: Color = (176, 214, 232)
HAIR: Color = (92, 58, 38)
SKIN: Color = (241, 196, 160)
SKIN_SHADE: Color = (222, 168, 132)
CHEEK: Color = (238, 150, 140)
SHIRT: Color = (46, 139, 132)
EYE_WHITE: Color = (252, 252, 250)
IRIS: Color = (70, 110, 60)
PUPIL: Color = (30, 26, 24)
MOUTH: Color = (150, 45, 55)
TEETH: Color = (250, 248, 240)


@dataclass(frozen=True)
class Shape:
    distance: Distance
    box: tuple[float, float, float, float]  # x0, y0, x1, y1: outside it the shape covers nothing


def ellipse(cx: float, cy: float, rx: float, ry: float) -> Shape:
    # The exact distance to an ellipse has no closed form; scaling the normalized radius by the smaller
    # semi-axis is close enough for one pixel of edge smoothing.
    def distance(x: float, y: float) -> float:
        return (math.hypot((x - cx) / rx, (y - cy) / ry) - 1.0) * min(rx, ry)

    return Shape(distance, (cx - rx - 1, cy - ry - 1, cx + rx + 1, cy + ry + 1))


def circle(cx: float, cy: float, r: float) -> Shape:
    return ellipse(cx, cy, r, r)


def below(shape: Shape, y_limit: float) -> Shape:
    """The part of `shape` under the line y = y_limit (a smile is the lower half of an ellipse)."""

    def distance(x: float, y: float) -> float:
        return max(shape.distance(x, y), y_limit - y)

    return Shape(distance, shape.box)


@dataclass(frozen=True)
class Layer:
    shape: Shape
    color: Color
    opacity: float = 1.0


def face_layers() -> list[Layer]:
    """Back to front."""
    layers = [
        Layer(ellipse(256, 585, 215, 150), SHIRT),
        Layer(ellipse(256, 440, 62, 80), SKIN_SHADE),  # neck
        Layer(ellipse(256, 230, 196, 175), HAIR),
        Layer(circle(88, 285, 36), SKIN),
        Layer(circle(424, 285, 36), SKIN),
        Layer(ellipse(256, 285, 168, 188), SKIN),
        Layer(ellipse(256, 128, 150, 58), HAIR),  # fringe
        Layer(circle(170, 345, 28), CHEEK, opacity=0.35),
        Layer(circle(342, 345, 28), CHEEK, opacity=0.35),
        Layer(ellipse(256, 318, 15, 22), SKIN_SHADE),  # nose
        Layer(below(ellipse(256, 372, 64, 40), 372), MOUTH),
        Layer(below(ellipse(256, 372, 48, 14), 372), TEETH),
    ]
    for eye_x in (190, 322):
        layers += [
            Layer(ellipse(eye_x, 215, 38, 8), HAIR),  # eyebrow
            Layer(ellipse(eye_x, 262, 33, 23), EYE_WHITE),
            Layer(circle(eye_x + 3, 264, 15), IRIS),
            Layer(circle(eye_x + 3, 264, 8), PUPIL),
            Layer(circle(eye_x + 8, 258, 4), EYE_WHITE),  # highlight
        ]
    return layers


def render(layers: list[Layer], size: int = SIZE) -> bytes:
    """RGB pixels, row by row. Each pixel looks only at the layers whose box holds it (a few, not all)."""
    pixels = bytearray()
    for row in range(size):
        y = row + 0.5
        in_row = [layer for layer in layers if layer.shape.box[1] <= y <= layer.shape.box[3]]
        for column in range(size):
            x = column + 0.5
            red, green, blue = (float(channel) for channel in BACKGROUND)
            for layer in in_row:
                x0, _, x1, _ = layer.shape.box
                if not x0 <= x <= x1:
                    continue
                coverage = min(1.0, max(0.0, 0.5 - layer.shape.distance(x, y))) * layer.opacity
                if coverage > 0.0:
                    red += (layer.color[0] - red) * coverage
                    green += (layer.color[1] - green) * coverage
                    blue += (layer.color[2] - blue) * coverage
            pixels += bytes((round(red), round(green), round(blue)))
    return bytes(pixels)


def png(rgb: bytes, width: int, height: int) -> bytes:
    """An 8-bit RGB PNG (filter type 0 on every row: flat colors compress well without filters)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    stride = width * 3
    raw = b"".join(b"\x00" + rgb[row * stride : (row + 1) * stride] for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, truecolor, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT
    output.write_bytes(png(render(face_layers()), SIZE, SIZE))
    print(f"{output}: {output.stat().st_size} bytes")


if __name__ == "__main__":
    main()
