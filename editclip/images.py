"""Opening the user's image files: one clear error naming the file and where it was listed for a file
that is missing, empty, truncated or not an image, and a pixel limit checked on the header before any
pixel is decoded, so that a small file claiming 20000x20000 pixels cannot take the machine down."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image

from .errors import EditclipError

DEFAULT_MAX_IMAGE_PIXELS = 89_478_485  # PIL's own default (about 0.25 GB of 24-bit pixels)
MAX_PIXELS_ENV = "EDITCLIP_MAX_IMAGE_PIXELS"
MAX_PIXELS_HINT = f"raise the limit with --max-image-pixels N or {MAX_PIXELS_ENV}=N if the image is genuine"


def max_image_pixels(value: int | None = None) -> int:
    """The pixel limit: `value`, else ``$EDITCLIP_MAX_IMAGE_PIXELS``, else PIL's default."""
    if value is None:
        text = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_IMAGE_PIXELS
        if not text.isascii() or not text.isdigit():
            raise EditclipError(f"{MAX_PIXELS_ENV}={text!r} is not a positive integer number of pixels")
        value = int(text)
    if value <= 0:
        raise EditclipError(f"the image pixel limit must be positive, got {value}")
    return value


def check_image(path: Path, where: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
    """Raise unless `path` is an image within the pixel limit whose file PIL can verify without decoding."""
    open_image(path, where, max_pixels, mode=None)


def open_image(
    path: Path, where: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, mode: str | None = "RGB"
) -> Image.Image | None:
    """The image at `path` converted to `mode` (None: only verified, nothing decoded, None returned);
    `where` says where it was listed (``row 7 of metadata.csv``)."""
    what = f"image {str(path)!r} ({where})"
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise EditclipError(f"{what} does not exist") from None
    except OSError as err:
        raise EditclipError(f"{what} cannot be read: {err.strerror or err}") from None
    if size == 0:
        raise EditclipError(f"{what} is an empty file (0 bytes)")
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # PIL's own check would stop Image.open; ours reads the header first
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise EditclipError(
                        f"{what} claims {width}x{height} = {width * height} pixels, more than the limit of "
                        f"{max_pixels}; {MAX_PIXELS_HINT}"
                    )
                if mode is None:
                    image.verify()
                    return None
                return image.convert(mode)
    except EditclipError:
        raise
    except Image.DecompressionBombError as err:
        raise EditclipError(f"{what}: {err}; {MAX_PIXELS_HINT}") from None
    except Image.UnidentifiedImageError:
        raise EditclipError(f"{what} is not an image file PIL can read (corrupt, or another format)") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise EditclipError(f"{what} is truncated or corrupt: {err}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
