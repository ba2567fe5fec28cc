"""Does this upload keep its content from the homeserver, or is it a file in clear?

Element encrypts every attachment in an encrypted room (AES-256-CTR; the key travels in
the Megolm-encrypted event), so what reaches the media store is random bytes. Any
client can still upload a plain file and link it from an encrypted message, and then
the server, its backups and every member server that fetches it hold the file in clear.
The media store therefore accepts only two kinds of upload:

- **Ciphertext**: no recognisable file signature, and every window of the file looks
  like random bytes. Two statistics per window of `WINDOW` bytes (the file's last
  window overlaps the one before, so every window is full unless the whole file is
  shorter): how many bytes are text bytes (printable ASCII, tab, line breaks, NUL: text,
  base64, hex, UTF-16 text are made of little else), and the Shannon entropy of the
  bytes (UTF-8 text in other scripts, UTF-16 text in any script, structured binary
  data). Both thresholds come from the statistics of random bytes, so that a real
  encrypted attachment of any size is refused with probability below `FALSE_REFUSAL`
  (about one in ten million); measurements are in the guard's README.
- **Pictures** for room and profile avatars (sent in clear by Element): PNG, JPEG, GIF
  or WebP up to `MAX_PICTURE` bytes, walked by `bridge.guard.images` so that no text
  rides beside the pixels.

Everything else is refused: documents, archives, compressed files, text of any kind.
What no server can rule out is a member who encrypts or encodes a file on purpose for an
accomplice, or a picture *of* text (a photographed page looks like any photograph).
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from statistics import NormalDist

from bridge.guard import images

WINDOW = 4096
# Avatars are shown small; 1 MiB is ample for a face or a logo at avatar resolution and
# keeps full-resolution scans of document pages (several MiB) out.
MAX_PICTURE = 1 << 20
# Chance that a real encrypted attachment is refused, whatever its size (split over the
# two statistics and all the windows of the file).
FALSE_REFUSAL = 1e-7
# The entropy statistic's lower tail is compared with a normal one (measured, README);
# the margin is widened by this factor to stay on the safe side of that approximation.
_ENTROPY_SAFETY = 1.5
# Below this many bytes the entropy of random bytes varies too much to tell anything;
# the text-byte count still judges these.
_ENTROPY_MIN = 256

_TEXT_BYTES = bytes([0x00, 0x09, 0x0A, 0x0D, *range(0x20, 0x7F)])
_P_TEXT = len(_TEXT_BYTES) / 256

# Signatures of file formats that carry documents, archives, compressed data, audio,
# video or databases. Each is at least four fixed bytes (or a check as strong), so that
# a random ciphertext matches one by chance less than once in a hundred million.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF", "PDF"),
    (0, b"PK\x03\x04", "ZIP (DOCX, ODT, XLSX...)"),
    (0, b"PK\x05\x06", "ZIP"),
    (0, b"PK\x07\x08", "ZIP"),
    (0, b"\x1f\x8b\x08", "gzip"),
    (0, b"BZh", "bzip2"),
    (0, b"\xfd7zXZ\x00", "xz"),
    (0, b"7z\xbc\xaf\x27\x1c", "7-Zip"),
    (0, b"Rar!\x1a\x07", "RAR"),
    (0, b"\x28\xb5\x2f\xfd", "zstd"),
    (0, b"\x04\x22\x4d\x18", "LZ4"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE (DOC, XLS, MSG)"),
    (0, b"{\\rtf", "RTF"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (4, b"ftyp", "ISO media (HEIC, MP4, MOV)"),
    (0, b"RIFF", "RIFF (WAV, AVI)"),
    (0, b"OggS", "Ogg"),
    (0, b"fLaC", "FLAC"),
    (0, b"ID3\x03\x00", "MP3"),
    (0, b"ID3\x04\x00", "MP3"),
    (0, b"\x1aE\xdf\xa3", "Matroska/WebM"),
    (0, b"SQLite format 3\x00", "SQLite"),
    (128, b"DICM", "DICOM"),
    (0, b"wOFF", "WOFF"),
    (0, b"wOF2", "WOFF2"),
    (0, b"\x00\x01\x00\x00\x00", "TrueType"),
    (0, b"OTTO", "OpenType"),
    (0, b"\x7fELF", "ELF"),
)
_PDF_SEARCH = 1024  # PDF readers accept the header anywhere in the first kilobyte
_ZIP_END = b"PK\x05\x06"
_ZIP_END_MAX = 22 + 0xFFFF  # end record plus the longest comment


def judge(data: bytes) -> str | None:
    """None when the upload may be stored, else why not (for the log, in English)."""
    if not data:
        return None  # an empty file carries nothing (Element encrypts empty files to b"")
    picture = _picture_check(data)
    if picture is not None:
        if len(data) > MAX_PICTURE:
            return f"picture larger than {MAX_PICTURE} bytes"
        return picture(data)
    known = signature_of(data)
    if known is not None:
        return f"{known} file"
    return not_random(data)


def _picture_check(data: bytes) -> Callable[[bytes], str | None] | None:
    if data.startswith(images.PNG_SIGNATURE):
        return images.check_png
    if data.startswith(images.JPEG_SIGNATURE):
        return images.check_jpeg
    if data[:6] in images.GIF_SIGNATURES:
        return images.check_gif
    if images.is_webp(data):
        return images.check_webp
    return None


def signature_of(data: bytes) -> str | None:
    """The name of the file format `data` starts with (or is recognisably), or None."""
    for offset, magic, name in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic and _confirmed(name, data):
            return name
    if b"%PDF-" in data[:_PDF_SEARCH]:
        return "PDF"
    if data[:2] == b"BM" and len(data) >= 6 and struct.unpack_from("<I", data, 2)[0] == len(data):
        return "BMP"
    if _ends_like_a_zip(data):
        return "ZIP"
    return None


def _confirmed(name: str, data: bytes) -> bool:
    """Three-byte signatures need one more fixed part to be as strong as four bytes."""
    if name == "bzip2":
        return data[3:4] in b"123456789"
    if name == "gzip":
        return len(data) > 3 and data[3] & 0xE0 == 0  # reserved flag bits
    return True


def _ends_like_a_zip(data: bytes) -> bool:
    """A ZIP can follow any prefix: readers find its end record from the file's end."""
    tail_start = max(0, len(data) - _ZIP_END_MAX)
    at = data.rfind(_ZIP_END, tail_start)
    while at >= 0:
        if at + 22 <= len(data):
            (comment,) = struct.unpack_from("<H", data, at + 20)
            if at + 22 + comment == len(data):
                return True
        at = data.rfind(_ZIP_END, tail_start, at)
    return False


def windows(length: int) -> list[tuple[int, int]]:
    """(start, end) of each window; the last one overlaps so that all are full."""
    if length <= WINDOW:
        return [(0, length)]
    starts = [*range(0, length - WINDOW, WINDOW), length - WINDOW]
    return [(start, start + WINDOW) for start in starts]


def not_random(data: bytes) -> str | None:
    """Why `data` does not look like ciphertext, or None when it does."""
    if len(data) < _ENTROPY_MIN and _is_text(data):
        return "UTF-8 text"
    spans = windows(len(data))
    alpha = FALSE_REFUSAL / (2 * _bucket(len(spans)))
    for start, end in spans:
        window = data[start:end]
        size = len(window)
        text = size - len(window.translate(None, _TEXT_BYTES))
        if text == size or text >= text_limit(size, alpha):
            return f"text bytes at {start}: {text} of {size}"
        if size >= _ENTROPY_MIN and entropy(window) < entropy_limit(size, alpha):
            return f"low entropy at {start}"
    return None


def _is_text(data: bytes) -> bool:
    """Short text in any script (longer text fails the entropy test)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch.isspace() for ch in text)


def _bucket(count: int) -> int:
    """Window counts rounded up to a power of two: few distinct thresholds to cache."""
    return 1 << (count - 1).bit_length()


def entropy(window: bytes) -> float:
    """Shannon entropy of the bytes, in bits per byte."""
    size = len(window)
    return -sum(n / size * math.log2(n / size) for n in Counter(window).values())


def _log_pmf(size: int, k: int, p: float) -> float:
    return (
        math.lgamma(size + 1)
        - math.lgamma(k + 1)
        - math.lgamma(size - k + 1)
        + k * math.log(p)
        + (size - k) * math.log1p(-p)
    )


@lru_cache(maxsize=256)
def text_limit(size: int, alpha: float) -> int:
    """The fewest text bytes that random bytes reach with probability below `alpha`."""
    tail = 0.0
    for k in range(size, -1, -1):
        tail += math.exp(_log_pmf(size, k, _P_TEXT))
        if tail > alpha:
            return k + 1
    return size + 1


@lru_cache(maxsize=256)
def expected_entropy(size: int) -> float:
    """The mean Shannon entropy of `size` uniformly random bytes (exact)."""
    total, mean = 0.0, size / 256
    for k in range(1, size + 1):
        weight = math.exp(_log_pmf(size, k, 1 / 256))
        total += weight * (k / size) * math.log2(k / size)
        if k > mean and weight < 1e-18:
            break
    return -256 * total


@lru_cache(maxsize=256)
def entropy_limit(size: int, alpha: float) -> float:
    """Entropy below which random bytes fall with probability below `alpha` (normal
    approximation of the plug-in estimator, standard deviation sqrt(255/2)/(size ln 2),
    widened by `_ENTROPY_SAFETY`)."""
    deviation = math.sqrt(255 / 2) / (size * math.log(2))
    z = -NormalDist().inv_cdf(alpha)
    return expected_entropy(size) - _ENTROPY_SAFETY * z * deviation
