"""Downloading and safely unpacking a public dataset archive.

``urllib`` only (no extra dependency). The archive is streamed to a temporary file next to its
destination, its md5 is checked against the published value, and it is unpacked member by member
after checking that no member escapes the destination (absolute paths, ``..``, links, devices).
"""
from __future__ import annotations

import hashlib
import logging
import tarfile
from pathlib import Path, PurePosixPath
from urllib import request

from ..errors import BadInputError
from ..io import atomic_writer

log = logging.getLogger(__name__)

_TIMEOUT_S = 60  # per socket operation, not for the whole download


def fetch(url: str, dest_dir: Path, md5: str) -> Path:
    """Download ``url`` into ``dest_dir`` (temporary name, then renamed) and check its md5.

    Any network error or checksum mismatch is a :class:`BadInputError` that says which URL failed and
    where to put the file by hand.
    """
    name = url.rsplit("/", 1)[-1]
    target = dest_dir / name
    manual = f"download {url} by hand (md5 {md5}) and extract it into {dest_dir}"
    digest = hashlib.md5()
    try:
        with atomic_writer(target, suffix=".part") as out:
            log.warning("downloading %s to %s", url, dest_dir)
            with request.urlopen(url, timeout=_TIMEOUT_S) as resp:
                while chunk := resp.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != md5:
                raise BadInputError(
                    f"download of {url} is corrupt (md5 {digest.hexdigest()}, expected {md5}); {manual}"
                )
    except BadInputError:
        raise
    except Exception as e:  # noqa: BLE001 - offline, DNS, HTTP error, timeout, disk full: all one message
        raise BadInputError(f"could not download {url} ({type(e).__name__}: {e}); {manual}") from None
    return target


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    parts = PurePosixPath(member.name).parts
    if member.name.startswith(("/", "\\")) or PurePosixPath(member.name).is_absolute() or ".." in parts:
        raise BadInputError(f"refusing to extract {archive}: member {member.name!r} would escape the folder")
    if not (member.isfile() or member.isdir()):
        raise BadInputError(f"refusing to extract {archive}: member {member.name!r} is a link or device")


def safe_extract(archive: Path, dest_dir: Path) -> None:
    """Unpack a (gzipped) tar ``archive`` into ``dest_dir``; unsafe members are a :class:`BadInputError`."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(m, archive)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(dest_dir, members=members, **kwargs)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BadInputError(f"cannot extract {archive}: {type(e).__name__}: {e}") from None


def download_and_extract(url: str, dest_dir: Path, md5: str) -> None:
    """Fetch ``url`` (md5-checked) into ``dest_dir``, unpack it there, then delete the archive."""
    archive = fetch(url, dest_dir, md5)
    safe_extract(archive, dest_dir)
    archive.unlink(missing_ok=True)
    log.info("extracted %s into %s", archive.name, dest_dir)
