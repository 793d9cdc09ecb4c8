"""Draw the app icons (PNG) from simple shapes, with the standard library only.

Run `python -m patient_portal.pwa.make_icons` after changing the drawing; the PNGs in
static/icons/ are committed, so neither set-up nor tests need this script or an imaging library.
The drawing follows static/icons/icon.svg: a blue tile, a white ring and an amber dot.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

ICONS = Path(__file__).resolve().parents[2] / "static" / "icons"
BLUE = (0x1F, 0x4E, 0x79)
WHITE = (0xFF, 0xFF, 0xFF)
AMBER = (0xFF, 0xBF, 0x47)

# A shape is a signed distance in pixels (negative inside) for a pixel centre.
Shape = Callable[[float, float], float]


def rounded_square(size: float, radius: float) -> Shape:
    half = size / 2

    def distance(x: float, y: float) -> float:
        qx = abs(x - half) - (half - radius)
        qy = abs(y - half) - (half - radius)
        outside = math.hypot(max(qx, 0.0), max(qy, 0.0))
        return outside + min(max(qx, qy), 0.0) - radius

    return distance


def ring(cx: float, cy: float, radius: float, width: float) -> Shape:
    return lambda x, y: abs(math.hypot(x - cx, y - cy) - radius) - width / 2


def disc(cx: float, cy: float, radius: float) -> Shape:
    return lambda x, y: math.hypot(x - cx, y - cy) - radius


def draw(size: int, *, full_bleed: bool, content_scale: float) -> bytes:
    """RGBA rows of the icon; `content_scale` shrinks the ring and dot towards the centre."""
    unit = size / 64 * content_scale
    centre = size / 2
    tile = rounded_square(size, 0 if full_bleed else size * 14 / 64)
    layers = [
        (ring(centre, centre + unit, 12.5 * unit, 5 * unit), WHITE),
        (disc(centre, centre + unit, 4.5 * unit), AMBER),
    ]
    rows = bytearray()
    for row in range(size):
        rows.append(0)  # PNG filter type: none
        y = row + 0.5
        for column in range(size):
            x = column + 0.5
            alpha = 1.0 if full_bleed else min(max(0.5 - tile(x, y), 0.0), 1.0)
            colour: tuple[int, ...] = BLUE
            for shape, paint in layers:
                coverage = min(max(0.5 - shape(x, y), 0.0), 1.0)
                if coverage:
                    colour = tuple(
                        round(p * coverage + c * (1 - coverage))
                        for p, c in zip(paint, colour, strict=True)
                    )
            rows.extend((*colour, round(alpha * 255)))
    return bytes(rows)


def png(size: int, rows: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


# name: (size, full bleed, content scale). A maskable icon keeps its content in the central
# 80% circle, which every platform mask leaves visible; iOS rounds the corners itself.
VARIANTS = {
    "icon-192.png": (192, False, 1.0),
    "icon-512.png": (512, False, 1.0),
    "icon-maskable-512.png": (512, True, 0.8),
    "apple-touch-icon-180.png": (180, True, 0.9),
}


def main() -> None:
    for name, (size, full_bleed, scale) in VARIANTS.items():
        data = png(size, draw(size, full_bleed=full_bleed, content_scale=scale))
        (ICONS / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
