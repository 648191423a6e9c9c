"""The prepared on-disk form that every dataset loader reads.

``algoperf data --dataset NAME`` converts a dataset once into this form; training then only
memory-maps arrays, so nothing is downloaded or decoded at training time.

Layout (one folder per dataset, under the ``--data_dir`` root)::

    <data_dir>/<name>/meta.json              format version, name, splits, array specs, extras
    <data_dir>/<name>/<split>/<array>.npy    one plain .npy file per array (memory-mappable)

``meta.json`` looks like::

    {"format": "algoperf-prepared", "format_version": 1, "name": "mnist",
     "splits": {"train": {"num_examples": 50000,
                          "arrays": {"images": {"shape": [50000, 28, 28], "dtype": "uint8",
                                                "per_example": true},
                                     "labels": {"shape": [50000], "dtype": "int64",
                                                "per_example": true}}}, ...},
     "extra": {...dataset-specific: source, split rule, generator settings...}}

A split's ``num_examples`` is its number of examples. Arrays whose leading axis has that length
are per-example arrays (``per_example: true``, the usual case); datasets with ragged parts
(graphs: a flat node array plus per-graph counts) pass ``num_examples`` explicitly and their
flat arrays keep any length.

Writes are atomic: everything goes to a temporary sibling folder, files are fsync'ed, and the
folder is renamed into place last, so a crash never leaves a half-written dataset under the
final name. Reads check the files against ``meta.json`` and raise one ``DatasetError`` that
names the file or folder and the problem.
"""
import errno
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

FORMAT = "algoperf-prepared"
FORMAT_VERSION = 1
META_FILE = "meta.json"

PathLike = Union[str, os.PathLike]
# Split and array names become file names: keep them to a safe, portable alphabet.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class DatasetError(ValueError):
    """A prepared dataset is missing or does not match its ``meta.json``."""


def prepare_command(name: str, data_dir: PathLike) -> str:
    """The command that prepares ``name`` under ``data_dir`` (for error messages)."""
    return f"algoperf data --dataset {name} --data_dir {data_dir}"


def dataset_dir(data_dir: PathLike, name: str) -> Path:
    """The folder of dataset ``name``: ``<data_dir>/<name>``.

    AlgoPerf users often pass the dataset's own folder as ``--data_dir``; when ``data_dir``
    itself holds the ``meta.json`` of ``name``, that folder is used instead.
    """
    data_dir = Path(data_dir).expanduser()
    own_meta = data_dir / META_FILE
    if not (data_dir / name).exists() and own_meta.is_file():
        try:
            if json.loads(own_meta.read_text()).get("name") == name:
                return data_dir
        except (OSError, ValueError):
            pass  # not ours to judge here: read_meta reports the real problem
    return data_dir / name


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"invalid {kind} name {name!r}: use letters, digits, '_', '-', '.'")


def _dump_json(obj) -> str:
    """Indented JSON with lists of numbers (shapes) kept on one line, for people to read."""
    text = json.dumps(obj, indent=2)
    return re.sub(r"\[\s+([-\d.,\s]+?)\s+\]",
                  lambda m: "[" + ", ".join(m.group(1).replace(",", " ").split()) + "]",
                  text) + "\n"


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class PreparedWriter:
    """Writes one prepared dataset atomically; use as a context manager.

    Small datasets call ``add(split, array_name, array)``. Large ones (ImageNet) that do not fit
    in memory call ``create(split, array_name, shape, dtype)`` and fill the returned
    memory-mapped array in place. On a clean exit from the ``with`` block the files are
    flushed, ``meta.json`` is written and the folder is renamed to ``<out_dir>/<name>``; on an
    exception the temporary folder is deleted and nothing appears under the final name.

    Example::

        with PreparedWriter(data_dir, "mnist", extra_meta={"source": "tfds"}) as w:
            w.add("train", "images", train_images)      # uint8 [50000, 28, 28]
            w.add("train", "labels", train_labels)      # int64 [50000]
    """

    def __init__(self, out_dir: PathLike, name: str, extra_meta: Optional[Mapping] = None,
                 overwrite: bool = False):
        _check_name("dataset", name)
        self.out_dir = Path(out_dir).expanduser()
        self.name = name
        self.final_dir = self.out_dir / name
        self.extra_meta = dict(extra_meta or {})
        self.overwrite = overwrite
        self._tmp_dir: Optional[Path] = None
        # split -> array name -> np.memmap (or None once written), and explicit split sizes.
        self._arrays: Dict[str, Dict[str, Any]] = {}
        self._specs: Dict[str, Dict[str, Dict[str, Any]]] = {}
        self._num_examples: Dict[str, int] = {}

    def __enter__(self) -> "PreparedWriter":
        if self.final_dir.exists() and not self.overwrite:
            raise FileExistsError(f"{self.final_dir} already exists (pass overwrite=True, or "
                                  f"--overwrite, to rebuild it)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # A sibling of the final folder, so the last rename stays on one file system.
        self._tmp_dir = self.out_dir / f".{self.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._tmp_dir.mkdir()
        return self

    def _path(self, split: str, array_name: str) -> Path:
        return self._tmp_dir / split / f"{array_name}.npy"

    def _register(self, split: str, array_name: str, shape: Tuple[int, ...], dtype) -> Path:
        if self._tmp_dir is None:
            raise RuntimeError("use PreparedWriter inside a `with` block")
        _check_name("split", split)
        _check_name("array", array_name)
        dtype = np.dtype(dtype)
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            raise ValueError(f"{split}/{array_name}: only plain numeric dtypes, got {dtype}")
        if array_name in self._specs.get(split, {}):
            raise ValueError(f"{split}/{array_name} was already written")
        self._specs.setdefault(split, {})[array_name] = {
            "shape": [int(d) for d in shape], "dtype": dtype.name}
        path = self._path(split, array_name)
        path.parent.mkdir(exist_ok=True)
        return path

    def create(self, split: str, array_name: str, shape: Sequence[int], dtype) -> np.memmap:
        """A writable memory-mapped array [*shape] that becomes ``<split>/<array_name>.npy``."""
        # Little-endian on disk everywhere, so files move between machines unchanged.
        dtype = np.dtype(dtype).newbyteorder("<")
        path = self._register(split, array_name, tuple(shape), dtype)
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))
        self._arrays.setdefault(split, {})[array_name] = mm
        return mm

    def add(self, split: str, array_name: str, array: np.ndarray) -> None:
        """Write a whole in-memory array as ``<split>/<array_name>.npy``."""
        array = np.asarray(array)
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        path = self._register(split, array_name, array.shape, array.dtype)
        with open(path, "wb") as f:
            np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)
        self._arrays.setdefault(split, {})[array_name] = None

    def set_num_examples(self, split: str, num_examples: int) -> None:
        """Declare a split's size explicitly (needed only when its arrays are ragged)."""
        _check_name("split", split)
        self._num_examples[split] = int(num_examples)

    def _split_sizes(self) -> Dict[str, int]:
        sizes = {}
        for split, specs in self._specs.items():
            leading = {name: (s["shape"][0] if s["shape"] else None) for name, s in specs.items()}
            if split in self._num_examples:
                sizes[split] = self._num_examples[split]
            elif len(set(leading.values())) == 1 and None not in leading.values():
                sizes[split] = next(iter(leading.values()))
            else:
                raise ValueError(
                    f"split {split!r}: arrays have different leading sizes {leading}; "
                    f"call set_num_examples({split!r}, n) for ragged layouts")
        for split in self._num_examples:
            if split not in self._specs:
                raise ValueError(f"split {split!r} has a size but no arrays")
        return sizes

    def _commit(self) -> Path:
        if not self._specs:
            raise ValueError(f"dataset {self.name!r}: no arrays were written")
        sizes = self._split_sizes()
        for split, specs in self._specs.items():
            for spec in specs.values():
                # Recorded so that the reader can check per-example arrays against the split
                # size while leaving the flat arrays of ragged layouts alone.
                spec["per_example"] = bool(spec["shape"]) and spec["shape"][0] == sizes[split]
        for split, arrays in self._arrays.items():
            for array_name, mm in arrays.items():
                if mm is not None:
                    mm.flush()
                    del mm
                _fsync_file(self._path(split, array_name))
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "splits": {split: {"num_examples": sizes[split], "arrays": self._specs[split]}
                       for split in self._specs},
            "extra": self.extra_meta,
        }
        meta_path = self._tmp_dir / META_FILE
        meta_path.write_text(_dump_json(meta))
        _fsync_file(meta_path)
        self._arrays.clear()  # drop memmaps before renaming (needed on Windows)

        old = None
        if self.final_dir.exists() and self.overwrite:
            # Readers see no dataset (a clear error) between these two renames, never a mix.
            old = self.out_dir / f".{self.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.final_dir, old)
        try:
            # Renaming onto an existing non-empty folder fails, so of several processes
            # preparing the same dataset at once exactly one wins.
            os.replace(self._tmp_dir, self.final_dir)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY) or self.final_dir.exists():
                raise FileExistsError(f"{self.final_dir} already exists "
                                      f"(written by another process meanwhile)") from e
            raise
        _fsync_dir(self.out_dir)
        self._tmp_dir = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final_dir

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            self._arrays.clear()
            if self._tmp_dir is not None:
                shutil.rmtree(self._tmp_dir, ignore_errors=True)
                self._tmp_dir = None


def write_prepared(out_dir: PathLike, name: str,
                   splits: Mapping[str, Mapping[str, np.ndarray]],
                   extra_meta: Optional[Mapping] = None, overwrite: bool = False,
                   num_examples: Optional[Mapping[str, int]] = None) -> Path:
    """Write ``splits`` (split -> array name -> array) as ``<out_dir>/<name>``, atomically.

    Args:
      out_dir: the data root (``--data_dir``); the dataset goes to ``<out_dir>/<name>``.
      name: dataset folder name, recorded in ``meta.json``.
      splits: e.g. ``{"train": {"images": uint8 [N, 28, 28], "labels": int64 [N]}, ...}``.
      extra_meta: JSON-serialisable dataset-specific facts, stored under ``"extra"``.
      overwrite: replace an existing ``<out_dir>/<name>``; otherwise ``FileExistsError``.
      num_examples: split sizes for ragged layouts; by default each split's arrays must share
        their leading size, which is the split size.

    Returns:
      The dataset folder.
    """
    json.dumps(dict(extra_meta or {}))  # fail before writing anything if not serialisable
    with PreparedWriter(out_dir, name, extra_meta, overwrite) as writer:
        for split, arrays in splits.items():
            for array_name, array in arrays.items():
                writer.add(split, array_name, array)
        for split, n in (num_examples or {}).items():
            writer.set_num_examples(split, n)
    return writer.final_dir


def read_meta(data_dir: PathLike, name: str, prepare_hint: Optional[str] = None) -> Dict:
    """The validated ``meta.json`` of dataset ``name`` under ``data_dir``."""
    folder = dataset_dir(data_dir, name)
    hint = prepare_hint or prepare_command(name, data_dir)
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} does not exist: prepare it with `{hint}`")
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path} is missing: {folder} is not a prepared dataset "
                           f"(re-run `{hint} --overwrite`)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{meta_path} is not valid JSON ({e}); re-run `{hint} --overwrite`")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DatasetError(f"{meta_path}: not an {FORMAT} meta file")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise DatasetError(f"{meta_path}: format_version {version!r}, this code reads "
                           f"{FORMAT_VERSION}; re-run `{hint} --overwrite`")
    if meta.get("name") != name:
        raise DatasetError(f"{meta_path}: holds dataset {meta.get('name')!r}, expected {name!r}")
    splits = meta.get("splits")
    if not isinstance(splits, dict) or not all(
            isinstance(s, dict) and isinstance(s.get("num_examples"), int)
            and isinstance(s.get("arrays"), dict) for s in splits.values()):
        raise DatasetError(f"{meta_path}: malformed 'splits' entry")
    return meta


def _npy_header(path: Path) -> Tuple[Tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, fortran_order, data offset) from a .npy header, without reading data."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        return tuple(shape), np.dtype(dtype), fortran, f.tell()


def read_prepared(data_dir: PathLike, name: str, split: str,
                  expected_num_examples: Optional[int] = None,
                  prepare_hint: Optional[str] = None) -> Dict[str, np.ndarray]:
    """The arrays of one split, memory-mapped read-only, checked against ``meta.json``.

    Args:
      data_dir: the data root (``<data_dir>/<name>``) or the dataset folder itself.
      name: dataset folder name.
      split: e.g. ``"train"``.
      expected_num_examples: the split size the caller relies on (e.g. 50,000 for MNIST train);
        a prepared split of another size is an error rather than a silently different dataset.
      prepare_hint: the command that prepares this dataset, quoted in errors (default:
        ``algoperf data --dataset <name> --data_dir <data_dir>``).

    Returns:
      array name -> read-only ``np.memmap`` (a plain array for empty arrays).

    Raises:
      DatasetError: naming the folder or file and what is wrong with it.
    """
    hint = prepare_hint or prepare_command(name, data_dir)
    meta = read_meta(data_dir, name, prepare_hint=hint)
    folder = dataset_dir(data_dir, name)
    meta_path = folder / META_FILE
    if split not in meta["splits"]:
        raise DatasetError(f"{meta_path}: no split {split!r} (has {sorted(meta['splits'])})")
    entry = meta["splits"][split]
    num_examples = entry["num_examples"]
    if expected_num_examples is not None and num_examples != expected_num_examples:
        raise DatasetError(
            f"{meta_path}: split {split!r} has {num_examples} examples, expected "
            f"{expected_num_examples}; re-run `{hint} --overwrite`")

    arrays = {}
    for array_name, spec in entry["arrays"].items():
        path = folder / split / f"{array_name}.npy"
        if not path.is_file():
            raise DatasetError(f"{path} is missing (listed in {meta_path}); "
                               f"re-run `{hint} --overwrite`")
        try:
            shape, dtype, fortran, offset = _npy_header(path)
        except (OSError, ValueError) as e:
            raise DatasetError(f"{path}: not a readable .npy file ({e})")
        want_shape = tuple(spec.get("shape", ()))
        if shape != want_shape:
            raise DatasetError(f"{path}: shape {list(shape)}, {META_FILE} says "
                               f"{list(want_shape)}")
        if dtype.name != spec.get("dtype"):
            raise DatasetError(f"{path}: dtype {dtype.name}, {META_FILE} says {spec.get('dtype')}")
        if dtype.hasobject or fortran:
            raise DatasetError(f"{path}: object or Fortran-ordered arrays are not supported")
        want_bytes = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        have_bytes = path.stat().st_size
        if have_bytes != want_bytes:
            problem = "truncated" if have_bytes < want_bytes else "has trailing bytes"
            raise DatasetError(f"{path}: {problem} ({have_bytes} bytes, expected {want_bytes}); "
                               f"re-run `{hint} --overwrite`")
        if spec.get("per_example", False) and (not shape or shape[0] != num_examples):
            raise DatasetError(f"{path}: per-example array with {shape[0] if shape else 0} "
                               f"rows, but split {split!r} has num_examples={num_examples} "
                               f"in {META_FILE}")
        # mmap cannot map zero bytes; empty arrays are read normally.
        arrays[array_name] = np.load(path, mmap_mode="r" if have_bytes > offset else None,
                                     allow_pickle=False)
    return arrays


def read_image_classification(data_dir: PathLike, name: str, split: str,
                              image_shape: Tuple[int, ...], splits: Tuple[str, ...],
                              expected_num_examples: Optional[int] = None,
                              prepare_hint: Optional[str] = None) -> Dict[str, np.ndarray]:
    """A split of an image-classification dataset: ``{"images": uint8 [N, *image_shape],
    "labels": int64 [N]}`` (read-only memory maps), with one clear error per problem."""
    if split not in splits:
        raise ValueError(f"unknown split {split!r}; {name} has {splits}")
    arrays = read_prepared(data_dir, name, split, expected_num_examples=expected_num_examples,
                           prepare_hint=prepare_hint)
    folder = dataset_dir(data_dir, name)
    for key, dtype, trailing in (("images", np.uint8, tuple(image_shape)),
                                 ("labels", np.int64, ())):
        if key not in arrays:
            raise DatasetError(f"{folder}: split {split!r} has no {key!r} array")
        a = arrays[key]
        if a.dtype != dtype or a.shape[1:] != trailing:
            want = ", ".join(["N", *map(str, trailing)])
            raise DatasetError(f"{folder}/{split}/{key}.npy: {a.dtype} {list(a.shape)}, "
                               f"expected {np.dtype(dtype).name} [{want}]")
    return {"images": arrays["images"], "labels": arrays["labels"]}


# ----------------------------------------------------------------------------------------
# Generated (tiny-tier) datasets
# ----------------------------------------------------------------------------------------

def generated_name(base: str, default_sizes: Mapping[str, int], seed: int = 0,
                   sizes: Optional[Mapping[str, int]] = None) -> str:
    """Folder name of a generated dataset: ``base`` for the default seed and sizes, else
    ``<base>-seed<s>-<train>-<validation>-<test>``."""
    sizes = dict(default_sizes, **(sizes or {}))
    if int(seed) == 0 and sizes == dict(default_sizes):
        return base
    return f"{base}-seed{int(seed)}-{sizes['train']}-{sizes['validation']}-{sizes['test']}"


def ensure_generated(data_dir: PathLike, base: str, default_sizes: Mapping[str, int],
                     generator_version: int, seed: int, sizes: Optional[Mapping[str, int]],
                     overwrite: bool, write: Callable[[str, Dict[str, int], Dict, bool], Path],
                     description: str) -> Path:
    """Generate a tiny-tier dataset into ``<data_dir>/<generated_name(...)>`` unless it is
    already there with the same generator version, seed and sizes (recorded in its
    ``meta.json``); a damaged or foreign copy is regenerated. ``write(name, sizes, extra_meta,
    overwrite)`` generates and writes it. Safe for concurrent processes: each writes a private
    temporary folder, the first rename wins and the others reuse its result.
    """
    sizes = dict(default_sizes, **(sizes or {}))
    name = generated_name(base, default_sizes, seed, sizes)
    settings = {"generator_version": generator_version, "seed": int(seed),
                "sizes": {s: int(n) for s, n in sizes.items()}}
    folder = Path(data_dir).expanduser() / name
    if folder.exists() and not overwrite:
        try:
            if read_meta(data_dir, name)["extra"].get("generator") == settings:
                return folder
        except DatasetError:
            pass  # damaged or foreign: regenerate below
        overwrite = True
    extra = {"source": "generated", "generator": settings, "description": description}
    try:
        return write(name, sizes, extra, overwrite)
    except FileExistsError:
        return folder  # another process generated it first
