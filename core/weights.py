"""Reading weights files safely: every damaged file is a :class:`WeightsFileError` that says what is wrong.

Users copy run folders between machines, disks fill up and sync tools leave partial files; the
libraries underneath answer with ``SafetensorError: Error while deserializing header`` or a zip
error. Every weights file the suite reads goes through this module instead:

- :func:`read_safetensors` checks a ``.safetensors`` file's structure before loading it (the
  header's length, its JSON, each tensor's byte range against the file's size), so a truncated
  copy says how many bytes it should have and how many it has, and random bytes say "not a
  safetensors file";
- :func:`read_torch_file` reads a torch file with ``weights_only=True`` and reports a damaged or
  truncated zip in the same words;
- :func:`check_weights_fit` compares loaded tensors with a model's own (shape, floating point or
  not) before ``load_state_dict``, so a file of another size of model names the tensor;
- :func:`write_checksums` / :func:`verify_directory` record and check each file's size and SHA-256
  (training checkpoints carry a ``checksums.json``), and verify any model or checkpoint directory
  file by file, with or without one.

One exception to catch: :class:`WeightsFileError` (a ``ValueError``, so the command line reports it
as one line like any other bad input).
"""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CHECKSUMS_NAME",
    "FileReport",
    "SafetensorsHeader",
    "WeightsFileError",
    "check_weights_fit",
    "directory_problems",
    "read_safetensors",
    "read_safetensors_header",
    "read_torch_file",
    "verify_directory",
    "verify_file",
    "write_checksums",
]

CHECKSUMS_NAME = "checksums.json"
_ADVICE = "copy the file again from where it came from (or re-run the step that wrote it)"
# Bytes per element of each safetensors dtype.
_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}  # fmt: skip
_MAX_HEADER = 100_000_000  # safetensors' own limit on the header's size


class WeightsFileError(ValueError):
    """A weights file that cannot be used: missing, damaged, truncated, of another format, or not fitting the model.

    Attributes:
        path: the file.
        problem: what is wrong, in plain words.
    """

    def __init__(self, path: str | Path, problem: str, advice: str | None = _ADVICE):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" + (f"; {advice}" if advice else ""))


def _size(path: Path) -> int:
    if not path.is_file():
        raise WeightsFileError(path, "file not found", advice=None)
    return path.stat().st_size


@dataclass(frozen=True)
class SafetensorsHeader:
    """What a ``.safetensors`` file's header says: tensor names -> (dtype, shape), metadata, expected size."""

    tensors: dict[str, tuple[str, tuple[int, ...]]]
    metadata: dict[str, str]
    expected_bytes: int


def read_safetensors_header(path: str | Path) -> SafetensorsHeader:
    """Parse and check the header of a ``.safetensors`` file without reading its tensors.

    Raises:
        WeightsFileError: no such file; not a safetensors file (random bytes, a torch pickle, text);
            a header that contradicts itself; or fewer (or more) bytes than the header promises.
    """
    path = Path(path)
    size = _size(path)
    not_safetensors = "not a safetensors file (its first bytes are not a safetensors header)"
    if size < 8:
        raise WeightsFileError(path, f"{not_safetensors}: only {size} bytes")
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length < 2 or length > _MAX_HEADER:
            raise WeightsFileError(path, not_safetensors)
        if 8 + length > size:
            raise WeightsFileError(path, f"truncated: the header alone needs {8 + length:,} bytes, found {size:,}")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WeightsFileError(path, not_safetensors) from None
    if not isinstance(header, dict):
        raise WeightsFileError(path, not_safetensors)
    metadata = header.pop("__metadata__", None) or {}
    tensors, end = {}, 0
    for name, entry in header.items():
        try:
            dtype, shape, (begin, stop) = entry["dtype"], tuple(int(d) for d in entry["shape"]), entry["data_offsets"]
            count = 1
            for dim in shape:
                count *= dim
            consistent = dtype in _DTYPE_BYTES and 0 <= begin <= stop and stop - begin == count * _DTYPE_BYTES[dtype]
        except (KeyError, TypeError, ValueError):
            consistent = False
        if not consistent:
            raise WeightsFileError(path, f"damaged header: the entry of tensor {name!r} is inconsistent")
        tensors[name] = (dtype, shape)
        end = max(end, stop)
    expected = 8 + length + end
    if size < expected:
        raise WeightsFileError(path, f"truncated: expected {expected:,} bytes, found {size:,}")
    if size > expected:
        raise WeightsFileError(path, f"damaged: {size - expected:,} bytes more than its header describes")
    return SafetensorsHeader(tensors, dict(metadata), expected)


def read_safetensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, after :func:`read_safetensors_header` has checked it.

    Raises:
        WeightsFileError: see :func:`read_safetensors_header`; or safetensors itself refuses the file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    read_safetensors_header(path)
    try:
        return load_file(str(path), device=str(device))
    except SafetensorError as err:
        raise WeightsFileError(path, f"damaged ({err})") from None


def read_torch_file(path: str | Path) -> Any:
    """A torch file (``.pt``, ``.bin``, ``.pth``) read with ``weights_only=True`` (nothing in it runs).

    Raises:
        WeightsFileError: no such file; a truncated or damaged zip; or not a torch file at all.
    """
    path = Path(path)
    size = _size(path)
    if zipfile.is_zipfile(path):
        problem = _zip_problem(path)
        if problem:
            raise WeightsFileError(path, problem)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling and stream errors have many types
        if not zipfile.is_zipfile(path):
            if not size:
                raise WeightsFileError(path, "empty (0 bytes)") from None
            detail = (str(err).splitlines() or [""])[0][:200]
            raise WeightsFileError(path, f"truncated or not a torch file ({type(err).__name__}: {detail})") from None
        problem = f"cannot be read as plain tensors (weights_only=True): {err}"
        raise WeightsFileError(path, problem, advice=None) from None


def _zip_problem(path: Path) -> str | None:
    """What is wrong with a zip file (torch's format): a member whose bytes fail their CRC, or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"damaged torch file ({err})"
    return f"damaged: the bytes of {bad!r} inside it fail their checksum" if bad else None


def check_weights_fit(own: dict[str, torch.Tensor], loaded: dict[str, torch.Tensor], source: str | Path) -> None:
    """Check that tensors ``loaded`` from ``source`` can go into a model whose state dict is ``own``.

    Names are the caller's business (missing and unexpected names are reported by ``load_weights``);
    this checks shapes, and that a floating-point parameter gets floating-point numbers (half, bf16
    and float32 files are all fine: they are cast on load).

    Raises:
        WeightsFileError: the first tensor that does not fit, with both shapes or dtypes.
    """
    for name, tensor in loaded.items():
        target = own.get(name)
        if target is None:
            continue
        if tuple(tensor.shape) != tuple(target.shape):
            raise WeightsFileError(
                source,
                f"tensor {name} has shape {list(tensor.shape)}, the model needs {list(target.shape)}",
                advice="the file holds a model of another size: check config.json against the weights",
            )
        if target.is_floating_point() and not tensor.is_floating_point():
            raise WeightsFileError(
                source,
                f"tensor {name} has dtype {tensor.dtype}, the model needs floating-point numbers ({target.dtype})",
                advice="these are not the weights of this model",
            )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(directory: str | Path) -> Path:
    """Record the size and SHA-256 of every file under ``directory`` in ``directory/checksums.json``."""
    directory = Path(directory)
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != CHECKSUMS_NAME)
    entries = {p.relative_to(directory).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    target = directory / CHECKSUMS_NAME
    target.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
    return target


@dataclass(frozen=True)
class FileReport:
    """One file's verdict from :func:`verify_directory`: ``problem`` is None when it is intact."""

    path: Path
    problem: str | None
    how: str  # what was checked: "checksum", "structure" or "readable"

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_file(path: str | Path) -> FileReport:
    """Check one file by its structure: safetensors header and size, a torch zip's CRCs, JSON that parses."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            read_safetensors_header(path)
        elif path.suffix in (".pt", ".pth", ".bin") and zipfile.is_zipfile(path):
            problem = _zip_problem(path)
            if problem:
                raise WeightsFileError(path, problem)
        elif path.suffix in (".pt", ".pth", ".bin"):
            read_torch_file(path)  # an old-style pickle: only loading it tells
        elif path.suffix == ".json":
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                return FileReport(path, f"not valid JSON ({err})", "structure")
        else:
            return FileReport(path, None, "readable")
    except WeightsFileError as err:
        return FileReport(path, err.problem, "structure")
    return FileReport(path, None, "structure")


def verify_directory(directory: str | Path, hashes: bool = True) -> list[FileReport]:
    """Check every file of a model, checkpoint or run directory (recursively).

    Files listed in a ``checksums.json`` (each training checkpoint has one) are checked against
    their recorded size and (with ``hashes``) SHA-256, and a listed file that is gone is reported;
    the others by their structure (:func:`verify_file`). Symbolic links (``latest``, ``best``) and
    hidden temporary leftovers are skipped.
    """
    directory = Path(directory)
    reports, covered = [], set()
    for checksums in sorted(directory.rglob(CHECKSUMS_NAME)):
        if _hidden(checksums, directory):
            continue
        covered.add(checksums)
        try:
            recorded = json.loads(checksums.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            reports.append(FileReport(checksums, f"not valid JSON ({err})", "structure"))
            continue
        for name, entry in sorted(recorded.items()):
            covered.add(checksums.parent / name)
            reports.append(_check_recorded(checksums.parent / name, entry, hashes))
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink() and path not in covered and not _hidden(path, directory):
            reports.append(verify_file(path))
    return sorted(reports, key=lambda report: str(report.path))


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _check_recorded(path: Path, entry: dict[str, Any], hashes: bool) -> FileReport:
    """One file against its ``checksums.json`` entry (size, then SHA-256 or, without ``hashes``, structure)."""
    if not path.is_file():
        return FileReport(path, "missing (listed in checksums.json)", "checksum")
    size, expected = path.stat().st_size, int(entry.get("bytes", -1))
    if size != expected:
        kind = "truncated" if size < expected else "damaged"
        return FileReport(path, f"{kind}: expected {expected:,} bytes, found {size:,}", "checksum")
    if not hashes:
        return verify_file(path)
    if _sha256(path) != entry.get("sha256"):
        return FileReport(path, "damaged: its SHA-256 differs from the one recorded when it was written", "checksum")
    return FileReport(path, None, "checksum")


def directory_problems(directory: str | Path) -> list[str]:
    """``"file: problem"`` for each damaged file of ``directory`` (empty when every file is intact)."""
    return [f"{r.path}: {r.problem}" for r in verify_directory(directory) if not r.ok]
