"""Is this upload a plain picture, with no room for text beside the pixels?

Room and profile avatars are uploaded in clear (Element encrypts attachments, not
avatars), so the media store accepts four picture formats, walked structurally with the
standard library: every byte must belong to a part of the format that holds pixels or
how to show them. The places where software writes human text (PNG text chunks, JPEG
comments, XMP and IPTC, EXIF descriptions and comments, GIF comments and plain-text
extensions, WebP EXIF/XMP chunks) and anything after the end of the picture are refused.

Each function returns None for an acceptable picture, or a short English reason for the
log (never shown to users: Synapse answers media refusals with its own fixed text).
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
GIF_SIGNATURES = (b"GIF87a", b"GIF89a")

# PNG chunks that hold pixels, palette, transparency or colour/size information.
# iCCP (an ICC colour profile) is allowed like JPEG's ICC segment: phones and screens
# write one. Text chunks (tEXt, zTXt, iTXt), eXIf, private and unknown chunks are refused.
_PNG_ALLOWED = frozenset(
    {
        b"IHDR",
        b"PLTE",
        b"IDAT",
        b"IEND",
        b"tRNS",
        b"gAMA",
        b"cHRM",
        b"sRGB",
        b"iCCP",
        b"sBIT",
        b"bKGD",
        b"pHYs",
        b"hIST",
        b"cICP",
        b"mDCV",
        b"cLLI",
    }
)

# EXIF tags that hold free text (TIFF/EXIF 2.32, Windows XP tags), or whole documents
# (XMP, IPTC). Other ASCII values longer than _EXIF_ASCII_MAX are refused too.
_EXIF_TEXT_TAGS = frozenset(
    {
        0x010D,  # DocumentName
        0x010E,  # ImageDescription
        0x011D,  # PageName
        0x013B,  # Artist
        0x02BC,  # XMP packet
        0x83BB,  # IPTC
        0x8298,  # Copyright
        0x9286,  # UserComment
        0x9C9B,  # XPTitle
        0x9C9C,  # XPComment
        0x9C9D,  # XPAuthor
        0x9C9E,  # XPKeywords
        0x9C9F,  # XPSubject
        0xA430,  # CameraOwnerName
    }
)
_EXIF_SUB_IFDS = frozenset({0x8769, 0x8825, 0xA005})  # Exif, GPS, Interoperability
_EXIF_ASCII_MAX = 64  # Make, Model, Software, dates: short
_EXIF_MAX_IFDS = 8


def check_png(data: bytes) -> str | None:
    if not data.startswith(PNG_SIGNATURE):
        return "not a PNG"
    at, first, seen_idat = len(PNG_SIGNATURE), True, False
    while at + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, at)
        kind = data[at + 4 : at + 8]
        end = at + 12 + length
        if end > len(data):
            return "truncated PNG chunk"
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(data[at + 4 : end - 4]) != crc:
            return "PNG chunk with a wrong CRC"
        if first and kind != b"IHDR":
            return "PNG without IHDR first"
        first = False
        if kind not in _PNG_ALLOWED:
            return f"PNG chunk {kind!r} not allowed"
        seen_idat = seen_idat or kind == b"IDAT"
        at = end
        if kind == b"IEND":
            if at != len(data):
                return "data after the PNG's IEND"
            return None if seen_idat else "PNG without pixels"
    return "PNG without IEND"


def check_jpeg(data: bytes) -> str | None:
    if not data.startswith(JPEG_SIGNATURE):
        return "not a JPEG"
    at = 2
    while at < len(data):
        if data[at] != 0xFF:
            return "JPEG bytes outside any segment"
        while at < len(data) and data[at] == 0xFF:  # fill bytes
            at += 1
        if at >= len(data):
            break
        marker = data[at]
        at += 1
        if marker == 0xD9:  # EOI
            return None if at == len(data) else "data after the JPEG's end"
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        if at + 2 > len(data):
            break
        (length,) = struct.unpack_from(">H", data, at)
        body = data[at + 2 : at + length]
        if length < 2 or len(body) != length - 2:
            return "truncated JPEG segment"
        at += length
        reason = _jpeg_segment(marker, body)
        if reason is not None:
            return reason
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            at = _end_of_scan(data, at)
    return "JPEG without its end"


def _jpeg_segment(marker: int, body: bytes) -> str | None:
    if marker == 0xFE:
        return "JPEG comment"
    if 0xC0 <= marker <= 0xCF or marker in (0xDA, 0xDB, 0xDD, 0xDC):
        return None  # frames, Huffman/arithmetic tables, scans, quantisation, restarts
    if marker == 0xE0 and body[:5] in (b"JFIF\x00", b"JFXX\x00"):
        return None
    if marker == 0xE1 and body.startswith(b"Exif\x00\x00"):
        return check_exif(body[6:])
    if marker == 0xE2 and body.startswith(b"ICC_PROFILE\x00"):
        return None
    if marker == 0xEE and body.startswith(b"Adobe") and len(body) == 12:
        return None  # colour transform flags
    return f"JPEG segment 0x{marker:02X} not allowed"


def _end_of_scan(data: bytes, at: int) -> int:
    while True:
        at = data.find(b"\xff", at)
        if at < 0 or at + 1 >= len(data):
            return len(data)
        following = data[at + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            at += 1 if following == 0xFF else 2
            continue
        return at


def check_exif(tiff: bytes) -> str | None:
    """EXIF (a TIFF structure): refuse text tags and long ASCII values in every IFD."""
    if tiff[:4] == b"II*\x00":
        order = "<"
    elif tiff[:4] == b"MM\x00*":
        order = ">"
    else:
        return "EXIF without a TIFF header"
    (first,) = struct.unpack_from(order + "I", tiff, 4)
    pending: list[int] = [first]
    seen: set[int] = set()
    while pending:
        offset = pending.pop()
        if offset == 0:
            continue
        if offset in seen or len(seen) >= _EXIF_MAX_IFDS or offset + 2 > len(tiff):
            return "EXIF with a bad directory"
        seen.add(offset)
        (count,) = struct.unpack_from(order + "H", tiff, offset)
        end = offset + 2 + 12 * count
        if end + 4 > len(tiff):
            return "EXIF with a bad directory"
        for entry in range(offset + 2, end, 12):
            tag, kind, n, value = struct.unpack_from(order + "HHII", tiff, entry)
            if tag in _EXIF_TEXT_TAGS:
                return f"EXIF text tag 0x{tag:04X}"
            if kind == 2 and n > _EXIF_ASCII_MAX:
                return f"EXIF long text in tag 0x{tag:04X}"
            if tag in _EXIF_SUB_IFDS:
                pending.append(value)
        pending.append(struct.unpack_from(order + "I", tiff, end)[0])
    return None


def check_gif(data: bytes) -> str | None:
    if data[:6] not in GIF_SIGNATURES or len(data) < 13:
        return "not a GIF"
    flags = data[10]
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while at < len(data):
        block = data[at]
        if block == 0x3B:  # trailer
            return None if at + 1 == len(data) else "data after the GIF's end"
        if block == 0x2C:  # image: descriptor, local colour table, LZW size, sub-blocks
            if at + 10 > len(data):
                break
            local = data[at + 9]
            at += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
        elif block == 0x21 and at + 1 < len(data):
            label = data[at + 1]
            at += 2
            if label == 0xFF:
                size = data[at] if at < len(data) else 0
                if data[at + 1 : at + 1 + size] not in (b"NETSCAPE2.0", b"ANIMEXTS1.0"):
                    return "GIF application extension not allowed"
            elif label != 0xF9:  # graphic control only; comment 0xFE, plain text 0x01
                return f"GIF extension 0x{label:02X} not allowed"
        else:
            return "GIF bytes outside any block"
        at = _skip_sub_blocks(data, at)
        if at < 0:
            break
    return "GIF without its end"


def _skip_sub_blocks(data: bytes, at: int) -> int:
    while at < len(data):
        size = data[at]
        at += 1 + size
        if size == 0:
            return at if at <= len(data) else -1
    return -1


# Still pictures only: an animation frame (ANMF) nests chunks of its own.
_WEBP_ALLOWED = frozenset({b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ICCP"})


def is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def check_webp(data: bytes) -> str | None:
    if not is_webp(data):
        return "not a WebP"
    (size,) = struct.unpack_from("<I", data, 4)
    if size + 8 != len(data):
        return "WebP whose size is not the file's"
    at, pixels = 12, False
    while at < len(data):
        if at + 8 > len(data):
            return "truncated WebP chunk"
        kind = data[at : at + 4]
        (length,) = struct.unpack_from("<I", data, at + 4)
        if kind not in _WEBP_ALLOWED:
            return f"WebP chunk {kind!r} not allowed"
        pixels = pixels or kind in (b"VP8 ", b"VP8L")
        at += 8 + length + (length & 1)
    if at != len(data):
        return "truncated WebP chunk"
    return None if pixels else "WebP without pixels"
