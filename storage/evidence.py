"""The evidence store: photo files named by the SHA-256 of their bytes.

A WeCom media_id lives three days; a photo of a damaged parcel must outlive the
dispute, so every chat photo is kept here. Content addressing makes a redelivery
or a second upload of the same bytes land on the same file (written atomically),
and lets a URL name a file by its hash alone: `path` accepts 64 lowercase hex
digits and nothing else, so no request can walk out of the store. Writes are
blocking file I/O: callers run `put` in a worker thread.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
from dataclasses import dataclass
from pathlib import Path

_SHA256 = re.compile(r"[0-9a-f]{64}")
_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif"}
FOLDER = "sha256"


@dataclass(frozen=True, slots=True)
class Stored:
    sha256: str
    content_type: str
    size: int


def extension(content_type: str) -> str:
    kind = content_type.split(";")[0].strip().lower()
    return _EXTENSIONS.get(kind) or mimetypes.guess_extension(kind) or ".bin"


def is_sha256(value: str) -> bool:
    return _SHA256.fullmatch(value) is not None


class EvidenceStore:
    """`<root>/sha256/<first two hex digits>/<sha256><ext>`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str, content_type: str) -> Path:
        """The file for `sha256`; ValueError for anything that is not a SHA-256 in hex."""
        if not is_sha256(sha256):
            raise ValueError("not a SHA-256 digest")
        return self.root / FOLDER / sha256[:2] / f"{sha256}{extension(content_type)}"

    def put(self, content: bytes, content_type: str) -> Stored:
        """Keep `content` (blocking); the same bytes twice are one file."""
        kind = content_type.split(";")[0].strip().lower()[:64]
        digest = hashlib.sha256(content).hexdigest()
        path = self.path(digest, kind)
        if not path.exists() or path.stat().st_size != len(content):
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f"{path.suffix}.{os.getpid()}.part")
            try:
                partial.write_bytes(content)
                os.replace(partial, path)
            except OSError:
                # A full disk leaves what fitted: remove it, so failures do not eat
                # the space the admins were alerted to free.
                partial.unlink(missing_ok=True)
                raise
        return Stored(digest, kind, len(content))

    def read(self, sha256: str, content_type: str) -> bytes | None:
        """The stored bytes, or None when the file is missing (blocking)."""
        try:
            return self.path(sha256, content_type).read_bytes()
        except FileNotFoundError:
            return None
