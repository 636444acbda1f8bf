"""tk: compile kernels written in the .tk array language and call them on numpy arrays.

>>> import numpy as np, tk
>>> prog = tk.compile("kernel saxpy(a: f32, x: f32[n], y: f32[n]) -> f32[n] { a * x + y }")
>>> prog.saxpy(2.0, np.ones(3, np.float32), np.arange(3, dtype=np.float32))
array([2., 3., 4.], dtype=float32)

Arguments are numpy arrays (or anything with ``__array__`` or ``__dlpack__``) and Python numbers;
results are numpy arrays, or ``tk.Array`` objects that stay on their device with ``out="device"``.
On the CPU device, C-contiguous inputs are used in place and results are viewed without a copy.
See docs/python.md.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from . import _tk
from ._tk import ArgumentError, CompileError, DeviceError

__all__ = [
    "compile",
    "load",
    "devices",
    "Device",
    "Array",
    "Program",
    "Entry",
    "from_dlpack",
    "CompileError",
    "ArgumentError",
    "DeviceError",
]
__version__: str = _tk.__version__

try:  # bfloat16 arrays, when ml_dtypes is installed
    import ml_dtypes as _ml_dtypes

    _BF16: Any = np.dtype(_ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - depends on the environment
    _BF16 = None

# tk dtype name -> numpy dtype (bf16 through ml_dtypes).
_NUMPY = {
    "bool": np.dtype(np.bool_),
    "i8": np.dtype(np.int8),
    "i16": np.dtype(np.int16),
    "i32": np.dtype(np.int32),
    "i64": np.dtype(np.int64),
    "u8": np.dtype(np.uint8),
    "u32": np.dtype(np.uint32),
    "f16": np.dtype(np.float16),
    "f32": np.dtype(np.float32),
    "f64": np.dtype(np.float64),
}
_TK = {v: k for k, v in _NUMPY.items()}
if _BF16 is not None:
    _TK[_BF16] = "bf16"
_DLPACK_CPU = 1


def _numpy_dtype(name: str) -> np.dtype:
    if name == "bf16":
        if _BF16 is None:
            raise TypeError("a bf16 array needs the ml_dtypes package for numpy: pip install ml_dtypes")
        return _BF16
    return _NUMPY[name]


def _tk_dtype(dt: np.dtype, what: str) -> str:
    dt = np.dtype(dt)
    if _BF16 is not None and dt == _BF16:
        return "bf16"
    name = _TK.get(dt.newbyteorder("=")) if dt.byteorder not in ("=", "|") else _TK.get(dt)
    if name is None:
        supported = ", ".join(str(d) for d in _NUMPY.values())
        raise ArgumentError(
            f"{what}: numpy dtype {dt} has no tk dtype (tk has {supported}, and bfloat16 through ml_dtypes)"
        )
    return name


def _to_numpy(obj: Any, what: str) -> np.ndarray:
    if isinstance(obj, np.ndarray):
        return obj
    if isinstance(obj, Array):
        return obj.numpy()
    if hasattr(obj, "__array__") or hasattr(obj, "__array_interface__"):
        return np.asarray(obj)
    if hasattr(obj, "__dlpack__"):
        return np.from_dlpack(obj)
    raise ArgumentError(f"{what}: expected an array or a number, got {type(obj).__name__}")


def _host(a: np.ndarray, what: str) -> tuple[int, str, tuple[int, ...], np.ndarray]:
    """The (address, dtype, shape, owner) of C-contiguous, aligned, native-order elements of `a`:
    `a` itself when it already is so (no copy), else a copy."""
    name = _TK.get(a.dtype)  # native byte order only: '>f4' is not a key
    flags = a.flags
    if name is not None and flags.c_contiguous and flags.aligned:
        return (a.ctypes.data, name, a.shape, a)
    name = _tk_dtype(a.dtype, what)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    a = np.require(a, requirements=["C", "A"])
    return (a.ctypes.data, name, a.shape, a)


def _scalar(v: Any, dtype: str, what: str) -> np.ndarray:
    """A Python number as a rank-0 array of the parameter's dtype, refusing lossy conversions."""
    if isinstance(v, bool):
        if dtype != "bool":
            raise ArgumentError(f"{what}: expected {dtype}, got a bool ({v})")
        return np.asarray(v, dtype=np.bool_)
    if dtype == "bool":
        raise ArgumentError(f"{what}: expected bool, got {type(v).__name__} ({v!r})")
    if isinstance(v, float) and not dtype.startswith(("f", "bf")):
        raise ArgumentError(f"{what}: expected {dtype}, got a float ({v!r}); pass an integer")
    nd = _numpy_dtype(dtype)
    if isinstance(v, int) and nd.kind in "iu":
        info = np.iinfo(nd)
        if not info.min <= v <= info.max:
            raise ArgumentError(f"{what}: {v} is out of range for {dtype} ({info.min}..{info.max})")
    return np.asarray(v, dtype=nd)


_DEVICES: dict[str, Device] = {}


def _device(d: str | Device | None) -> Device:
    if isinstance(d, Device):
        return d
    name = "cpu" if d is None else d
    if not isinstance(name, str):
        raise TypeError(f"device: expected a device name or a tk.Device, got {type(d).__name__}")
    dev = _DEVICES.get(name)
    if dev is None:
        dev = _DEVICES[name] = Device(name)
    return dev


def devices() -> list[str]:
    """The names of the devices tk can use here (`cpu` first)."""
    return [name for name, _ in _tk.devices()]


class Device:
    """A compute device: ``tk.Device("cpu")``, ``tk.Device("sim:sm_86")``, ``tk.Device("cuda:0")``."""

    __slots__ = ("_d",)

    def __init__(self, name: str = "cpu") -> None:
        self._d = _tk.Device(name)

    @property
    def name(self) -> str:
        return self._d.name

    def upload(self, array: Any) -> Array:
        """The array on this device (on the CPU, a C-contiguous array is used in place)."""
        a = _to_numpy(array, "upload")
        return Array(self._d._upload(*_host(a, "upload")))

    def __repr__(self) -> str:
        return f"tk.Device({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


class _View:
    """The array interface of a CPU array, so numpy views it without a copy; numpy keeps this
    object (and so the array) alive as the view's base."""

    __slots__ = ("__array_interface__", "_keep")

    def __init__(self, keep: Any, address: int, shape: tuple[int, ...], typestr: str) -> None:
        self._keep = keep
        self.__array_interface__ = {"version": 3, "shape": shape, "typestr": typestr, "data": (address, False)}


class Array:
    """An array on a device, from ``Device.upload``, ``tk.from_dlpack`` or a call with
    ``out="device"``. ``numpy()`` gives a numpy array (a view on the CPU, a copy elsewhere)."""

    __slots__ = ("_a",)

    def __init__(self, native: Any) -> None:
        self._a = native

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._a.shape)

    @property
    def dtype(self) -> str:
        """The tk dtype (`f32`, `i64`, `bf16`, ...)."""
        return self._a.dtype

    @property
    def device(self) -> str:
        return self._a.device

    def numpy(self) -> np.ndarray:
        """The elements as a numpy array: a view of the same memory on the CPU, a copy from other
        devices."""
        native = self._a
        address = native._host_address()
        if address is None:
            native = native._to_host()
            address = native._host_address()
        nd = _numpy_dtype(self.dtype)
        raw = nd if nd != _BF16 else np.dtype(np.uint16)
        view = np.asarray(_View(native, address, tuple(native.shape), raw.str))
        return view if raw == nd else view.view(nd)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        a = self.numpy()
        if dtype is not None and np.dtype(dtype) != a.dtype:
            return a.astype(dtype)
        return a.copy() if copy else a

    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any:
        if self._a._host_address() is None:
            raise BufferError(
                f"this array is on {self.device}; DLPack exchange is for CPU arrays: call .numpy() to copy it"
            )
        return self.numpy().__dlpack__(stream=stream, max_version=max_version, dl_device=dl_device, copy=copy)

    def __dlpack_device__(self) -> tuple[int, int]:
        if self._a._host_address() is not None:
            return (_DLPACK_CPU, 0)
        if self.device.startswith("cuda:"):
            return (2, int(self.device.split(":", 1)[1]))
        return (12, 0)  # kDLExtDev: memory this process cannot address

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a rank-0 array")
        return self.shape[0]

    def __repr__(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"tk.Array({self.dtype}[{dims}] on {self.device})"


def from_dlpack(obj: Any) -> Array:
    """A tk array on the CPU from any DLPack producer (numpy >= 2.1 arrays, PyTorch CPU tensors):
    the same memory when it is C-contiguous and aligned, else a copy."""
    return Device("cpu").upload(np.from_dlpack(obj))


def _type(dtype: str, dims: Sequence[str]) -> str:
    return f"{dtype}[{', '.join(dims)}]" if dims else dtype


class Entry:
    """An entry point of a program. Call it with its arguments in order (or by name), and the
    keyword arguments ``device`` (a name or tk.Device; default ``"cpu"``), ``dims`` (values of
    dimension parameters no argument binds, ``{"n": 4}``) and ``out`` (``"device"`` to keep the
    results on the device as tk.Array)."""

    def __init__(self, program: Program, name: str) -> None:
        inputs, outputs, dims = program._p._signature(name)
        self._p = program._p
        self.name = name
        self.inputs: list[tuple[str, str, list[str]]] = inputs
        self.outputs: list[tuple[str, str, list[str]]] = outputs
        self.dims: list[str] = dims
        params = ", ".join(f"{n}: {_type(d, s)}" for n, d, s in inputs)
        outs = [_type(d, s) for _, d, s in outputs]
        ret = outs[0] if len(outs) == 1 else f"({', '.join(outs)})"
        generic = f"<{', '.join(dims)}>" if dims else ""
        self.signature = f"{name}{generic}({params}) -> {ret}"
        self.__doc__ = (
            f"{self.signature}\n\n"
            f"Arguments: {', '.join(n for n, _, _ in inputs) or 'none'} (arrays or numbers, in order or by name).\n"
            "Keywords: device='cpu' (or a tk.Device), dims={...} for dimension parameters, "
            "out='device' to keep the results on the device.\n"
            f"Returns {'a numpy array' if len(outs) == 1 else f'a tuple of {len(outs)} numpy arrays'}."
        )

    def __call__(
        self,
        *args: Any,
        device: str | Device | None = None,
        dims: Mapping[str, int] | None = None,
        out: str | None = None,
        **named: Any,
    ) -> Any:
        if out is not None and out not in ("numpy", "device"):
            raise ValueError(f"out: expected None, 'numpy' or 'device', got {out!r}")
        values = args if not named and len(args) == len(self.inputs) else self._bind(args, named)
        dev = _device(device)
        call = []
        for (pname, dtype, shape), v in zip(self.inputs, values):
            if isinstance(v, Array):
                call.append(v._a)
            elif (
                isinstance(v, np.ndarray)
                and (name := _TK.get(v.dtype)) is not None
                and v.flags.c_contiguous
                and v.flags.aligned
            ):
                call.append((v.ctypes.data, name, v.shape, v))  # used in place on the CPU
            else:
                what = f"argument `{pname}` of `{self.name}`"
                if isinstance(v, (bool, int, float)) and not shape:
                    v = _scalar(v, dtype, what)
                call.append(_host(_to_numpy(v, what), what))
        d = {}
        if dims:
            for k, v in dims.items():
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                    raise ArgumentError(f"dims[{k!r}]: expected an integer, got {v!r}")
                d[str(k)] = int(v)
        results = self._p._call(self.name, dev._d, call, d)
        if out == "device":
            results = [Array(r) for r in results]
        else:
            results = [Array(r).numpy() for r in results]
        return results[0] if len(results) == 1 else tuple(results)

    def _bind(self, args: tuple[Any, ...], named: dict[str, Any]) -> list[Any]:
        names = [n for n, _, _ in self.inputs]
        if len(args) > len(names):
            raise ArgumentError(f"`{self.name}` takes {len(names)} argument(s) ({', '.join(names)}), got {len(args)}")
        values: dict[str, Any] = dict(zip(names, args))
        for k, v in named.items():
            if k not in names:
                raise ArgumentError(f"`{self.name}` has no parameter `{k}`; its parameters are: {', '.join(names)}")
            if k in values:
                raise ArgumentError(f"argument `{k}` of `{self.name}` given twice")
            values[k] = v
        missing = [n for n in names if n not in values]
        if missing:
            raise ArgumentError(f"`{self.name}` is missing argument(s): {', '.join(missing)} ({self.signature})")
        return [values[n] for n in names]

    def __repr__(self) -> str:
        return f"<tk entry {self.signature}>"


class Program:
    """A checked `.tk` program (``tk.compile``, ``tk.load`` of a `.tk` file) or a bundle
    (``tk.load`` of a `.tkb`). Its entries are attributes (``prog.saxpy``) and items
    (``prog["saxpy"]``); each compiles for a device the first time it is called there."""

    def __init__(self, native: Any) -> None:
        self._p = native
        self._entries: dict[str, Entry] = {}

    @property
    def entries(self) -> list[str]:
        """The entries' names, in source order."""
        return list(self._p.entries)

    def __getitem__(self, name: str) -> Entry:
        if name not in self._entries:
            if name not in self._p.entries:
                raise KeyError(f"no entry `{name}`; the entries are: {', '.join(self.entries)}")
            self._entries[name] = Entry(self, name)
        return self._entries[name]

    def __getattr__(self, name: str) -> Entry:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(e.args[0]) from None

    def __contains__(self, name: object) -> bool:
        return name in self._p.entries

    def __iter__(self) -> Iterator[Entry]:
        return (self[n] for n in self.entries)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.entries))

    def __repr__(self) -> str:
        lines = "\n".join(f"  {self[n].signature}" for n in self.entries)
        return f"<tk.Program with {len(self.entries)} entr{'y' if len(self.entries) == 1 else 'ies'}:\n{lines}>"

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<tr><td><code>{html.escape(n)}</code></td><td><code>{html.escape(self[n].signature)}</code></td></tr>"
            for n in self.entries
        )
        return f"<b>tk.Program</b><table><tr><th>entry</th><th>signature</th></tr>{rows}</table>"


def compile(source: str, name: str = "<string>") -> Program:
    """Checks `.tk` source; diagnostics name it `name`. Raises tk.CompileError with `.code`,
    `.file`, `.line` and `.column` of the first error."""
    if not isinstance(source, str):
        raise TypeError(f"source: expected str, got {type(source).__name__} (use tk.load for a file)")
    return Program(_tk.compile(source, name))


def load(path: str | os.PathLike[str]) -> Program:
    """A `.tk` file (checked; its `use` paths resolve relative to it) or a `.tkb` bundle made by
    `tk build` (recognised by its first bytes)."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            magic = f.read(8)
    except OSError as e:
        raise OSError(f"{p}: {e.strerror or e}") from e
    if magic == b"TKBUNDLE":
        return Program(_tk.load_bundle(p))
    return Program(_tk.compile_file(p))
