"""Type stubs of the Python package `tk` (see docs/python.md)."""

import os
from typing import Any, Iterator, Mapping

import numpy as np

__version__: str

class CompileError(Exception):
    """A `.tk` program has errors. The message is the rendered diagnostics."""

    code: str | None
    """The first error's code (`E0100`), or None when the error is not a diagnostic."""
    file: str
    """The file of the first error (the `name` given to `tk.compile`, or the path)."""
    line: int
    """The 1-based line of the first error (0 when it has no place)."""
    column: int
    """The 1-based column (in characters) of the first error (0 when it has no place)."""
    diagnostics: str

class ArgumentError(ValueError):
    """An argument does not match the entry's signature (the message names the parameter, the
    expected and the given type)."""

class DeviceError(RuntimeError):
    """A device failed to compile or run an entry."""

def compile(source: str, name: str = "<string>") -> Program: ...
def load(path: str | os.PathLike[str]) -> Program: ...
def devices() -> list[str]: ...
def from_dlpack(obj: Any) -> Array: ...

class Device:
    def __init__(self, name: str = "cpu") -> None: ...
    @property
    def name(self) -> str: ...
    def upload(self, array: Any) -> Array: ...

class Array:
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def device(self) -> str: ...
    def numpy(self) -> np.ndarray: ...
    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray: ...
    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...
    def __len__(self) -> int: ...

class Entry:
    name: str
    signature: str
    inputs: list[tuple[str, str, list[str]]]
    outputs: list[tuple[str, str, list[str]]]
    dims: list[str]
    def __call__(
        self,
        *args: Any,
        device: str | Device | None = None,
        dims: Mapping[str, int] | None = None,
        out: str | None = None,
        **named: Any,
    ) -> Any: ...

class Program:
    @property
    def entries(self) -> list[str]: ...
    def __getitem__(self, name: str) -> Entry: ...
    def __getattr__(self, name: str) -> Entry: ...
    def __contains__(self, name: object) -> bool: ...
    def __iter__(self) -> Iterator[Entry]: ...
    def _repr_html_(self) -> str: ...
