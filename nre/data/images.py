"""Reading image files: a truncated JPEG or PNG is an error naming the file, never a partially decoded image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nre.errors import FileFormatError, InputError


def encoded_problem(data: bytes | np.ndarray) -> str | None:
    """Why an encoded JPEG or PNG file is incomplete (``None`` if it is complete, or of another format).

    OpenCV (libjpeg) decodes a truncated JPEG without an error, filling the missing part with grey: a partial image
    that gives confident wrong poses. JPEG: the marker segments are walked from SOI (their lengths skip EXIF
    thumbnails), each scan's entropy-coded data up to its next marker, until EOI; a file that ends first is truncated.
    PNG: the chunks are walked by their lengths up to IEND. Vectorised: ~0.1 ms for a 100 kB file."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    n = len(buf)
    if n >= 2 and buf[0] == 0xFF and buf[1] == 0xD8:
        return _jpeg_problem(buf)
    if n >= 8 and bytes(buf[:8]) == b"\x89PNG\r\n\x1a\n":
        return _png_problem(buf)
    return None


def _jpeg_problem(buf: np.ndarray) -> str | None:
    n = len(buf)
    # marker positions inside entropy-coded data: 0xFF followed by neither a stuffed 0x00, a restart marker, nor fill
    nxt = buf[1:]
    is_marker = (buf[:-1] == 0xFF) & (nxt != 0x00) & (nxt != 0xFF) & ~((nxt >= 0xD0) & (nxt <= 0xD7))
    marker_pos = np.flatnonzero(is_marker)
    pos = 2
    while True:
        if pos >= n:
            return f"truncated JPEG (ends at byte {n} without an end-of-image marker)"
        if buf[pos] != 0xFF:
            return f"corrupt JPEG (no marker at byte {pos} of {n})"
        while pos < n and buf[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            return f"truncated JPEG (ends at byte {n} without an end-of-image marker)"
        m = int(buf[pos])
        pos += 1
        if m == 0xD9:  # EOI: complete (trailing bytes after it are ignored by every decoder)
            return None
        if 0xD0 <= m <= 0xD7 or m == 0x01:  # standalone markers
            continue
        if pos + 2 > n:
            return f"truncated JPEG (ends at byte {n} inside a marker segment)"
        length = (int(buf[pos]) << 8) | int(buf[pos + 1])
        if length < 2:
            return f"corrupt JPEG (segment length {length} at byte {pos})"
        pos += length
        if pos > n:
            return f"truncated JPEG (ends at byte {n} inside a marker segment)"
        if m == 0xDA:  # start of scan: entropy-coded data up to the next marker
            k = int(np.searchsorted(marker_pos, pos))
            if k == len(marker_pos):
                return f"truncated JPEG (ends at byte {n} inside the image data)"
            pos = int(marker_pos[k])


def _png_problem(buf: np.ndarray) -> str | None:
    n, pos = len(buf), 8
    while pos + 8 <= n:
        length = int.from_bytes(bytes(buf[pos : pos + 4]), "big")
        kind = bytes(buf[pos + 4 : pos + 8])
        pos += 12 + length  # length, type, data, CRC
        if pos > n:
            return f"truncated PNG (ends at byte {n} inside a {kind.decode('latin-1')} chunk)"
        if kind == b"IEND":
            return None
    return f"truncated PNG (ends at byte {n} without an IEND chunk)"


def read_image_file(path: str | Path, flags: int | None = None) -> np.ndarray:
    """Decode an image file with OpenCV after checking that a JPEG or PNG is complete (``encoded_problem``); a
    missing, truncated or undecodable file raises an InputError (a ValueError) naming it. Same pixels as
    ``cv2.imread``."""
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        raise InputError(f"{path}: cannot read image ({e.strerror or e})") from e
    problem = encoded_problem(data)
    if problem is not None:
        raise FileFormatError(f"{path}: {problem}")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR if flags is None else flags) if len(data) else None
    if img is None:
        raise FileFormatError(f"{path}: cannot read image (not an image OpenCV can decode, or corrupt)")
    return img


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 (H, W, 3), with a clear error naming a missing, unreadable or truncated file (a truncated JPEG,
    which OpenCV would decode partially, is an error: ``nre.features.images.read_image_file``)."""
    import cv2

    return cv2.cvtColor(read_image_file(path), cv2.COLOR_BGR2RGB)
