"""The members of a zip archive, read within the limits (member count, total
uncompressed size) so that a zip bomb is refused before anything is inflated."""

from __future__ import annotations

import io
import zipfile
import zlib

from ..errors import BadImport
from .items import Limits


def members(data: bytes, limits: Limits) -> dict[str, bytes]:
    """Every file in the archive by its name (directories left out)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, NotImplementedError, ValueError) as exc:
        raise BadImport(f"the file is not a zip archive ({exc})") from exc
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        if len(infos) > limits.max_zip_members:
            raise BadImport(f"the zip archive holds more than {limits.max_zip_members} files")
        if sum(info.file_size for info in infos) > limits.max_unzipped_bytes:
            raise BadImport(f"the zip archive unpacks to more than {limits.max_unzipped_bytes} bytes")
        contents: dict[str, bytes] = {}
        for info in infos:
            try:
                # zipfile stops at the declared size and checks the CRC, so the sizes
                # summed above bound what is inflated.
                contents[info.filename] = archive.read(info)
            except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, ValueError, EOFError) as exc:
                raise BadImport(f"{info.filename} in the zip archive cannot be read ({exc})") from exc
        return contents
