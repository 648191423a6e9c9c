"""Reader for the IDX files that MNIST (and Fashion-MNIST, EMNIST, KMNIST) ship in.

IDX layout (big-endian): two zero bytes, one type byte, one byte with the number of
dimensions D, D uint32 sizes, then the data in C order. Gzipped files (``.gz``) are
recognised by their content, not their name.
"""
import gzip
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from workloads.datasets.prepared import DatasetError

# IDX type byte -> big-endian numpy dtype.
IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: Union[str, os.PathLike], expected_ndim: Optional[int] = None,
             expected_trailing_shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """An IDX file as a native-endian numpy array [d0, d1, ...].

    Args:
      path: an IDX file, optionally gzipped.
      expected_ndim: e.g. 3 for image files, 1 for label files.
      expected_trailing_shape: sizes after the first axis, e.g. (28, 28).

    Raises:
      DatasetError: naming the file, for a wrong magic number, unknown type byte, unexpected
        shape, or a data length that does not match the header (truncated or extra bytes).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DatasetError(f"{path}: cannot read IDX file ({e})")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (magic number {raw[:4].hex() or 'empty'}, "
                           f"expected 0000<type><ndim>)")
    type_byte, ndim = raw[2], raw[3]
    if type_byte not in IDX_DTYPES:
        raise DatasetError(f"{path}: unknown IDX data type 0x{type_byte:02x}")
    if expected_ndim is not None and ndim != expected_ndim:
        raise DatasetError(f"{path}: IDX file has {ndim} dimensions, expected {expected_ndim} "
                           f"(magic number {raw[:4].hex()}; images and labels swapped?)")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DatasetError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if expected_trailing_shape is not None and shape[1:] != tuple(expected_trailing_shape):
        raise DatasetError(f"{path}: IDX shape {list(shape)}, expected [N, "
                           f"{', '.join(map(str, expected_trailing_shape))}]")
    dtype = IDX_DTYPES[type_byte]
    want = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != want:
        problem = "truncated" if len(raw) < want else "has trailing bytes"
        raise DatasetError(f"{path}: {problem} ({len(raw)} bytes after decompression, header "
                           f"{list(shape)} needs {want})")
    data = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: Union[str, os.PathLike], array: np.ndarray, compress: bool = False) -> None:
    """Write ``array`` as an IDX file (``compress``: gzip). Used by tests and tools."""
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, codes[native], array.ndim]) + np.asarray(
        array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(native.newbyteorder(">")).tobytes()
    Path(path).write_bytes(gzip.compress(payload) if compress else payload)
