"""The Python package: compile, call, bundles, errors, dtypes, zero copy, DLPack, threads."""

from __future__ import annotations

import ctypes
import os
import pathlib
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import tk

ROOT = pathlib.Path(__file__).resolve().parents[2]

SAXPY = "kernel saxpy(a: f32, x: f32[n], y: f32[n]) -> f32[n] { a * x + y }"
SOFTMAX = """
kernel softmax(x: f32[b, n]) -> f32[b, n] {
    let e = exp(x - max(x, axis: 1, keep: true));
    e / sum(e, axis: 1, keep: true)
}
"""


def tk_binary() -> pathlib.Path:
    """The `tk` command of this checkout (scripts/test builds it before running pytest)."""
    p = pathlib.Path(os.environ.get("TK_BIN", ROOT / "target" / "debug" / "tk"))
    if not p.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{p} is missing: build it with `cargo build` (CI must not skip this)")
        pytest.skip(f"{p} is missing: run `cargo build` first")
    return p


def needed(module: str):
    """An optional module the tests need: CI installs it (its absence fails there), elsewhere the
    test is skipped with the reason."""
    if os.environ.get("CI") == "true":
        return __import__(module)
    return pytest.importorskip(module, reason=f"{module} is not installed (scripts/setup installs it)")


def test_compile_and_call_match_numpy():
    prog = tk.compile(SAXPY + SOFTMAX)
    assert prog.entries == ["saxpy", "softmax"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000).astype(np.float32)
    y = rng.standard_normal(1000).astype(np.float32)
    got = prog.saxpy(2.0, x, y)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_array_equal(got, np.float32(2.0) * x + y)
    m = rng.standard_normal((7, 33)).astype(np.float32)
    e = np.exp(m - m.max(axis=1, keepdims=True))
    np.testing.assert_allclose(prog["softmax"](m), e / e.sum(axis=1, keepdims=True), rtol=1e-6, atol=1e-7)
    # By name, and on the simulated GPU (the same function on every device).
    np.testing.assert_array_equal(prog.saxpy(x=x, y=y, a=2.0, device="sim:sm_86"), got)


def test_entries_signatures_docs_and_reprs():
    prog = tk.compile("kernel pair<h>(x: f32[n]) -> (f32[n, h], i32[n]) { ([i, j] => x[i], [i] => i as i32) }")
    e = prog.pair
    assert e.signature == "pair<h>(x: f32[n]) -> (f32[n, h], i32[n])"
    assert e.__doc__.startswith(e.signature)
    assert "pair<h>(x: f32[n])" in repr(prog) and "pair&lt;h&gt;(x: f32[n])" in prog._repr_html_()
    assert "pair" in dir(prog) and "pair" in prog
    a, b = prog.pair(np.arange(3, dtype=np.float32), dims={"h": 2})
    np.testing.assert_array_equal(a, [[0, 0], [1, 1], [2, 2]])
    np.testing.assert_array_equal(b, [0, 1, 2])
    with pytest.raises(AttributeError, match="no entry `nope`; the entries are: pair"):
        prog.nope
    with pytest.raises(tk.ArgumentError, match="dimension parameter `h`"):
        prog.pair(np.arange(3, dtype=np.float32))


def test_a_bundle_gives_the_same_results(tmp_path):
    src = tmp_path / "k.tk"
    src.write_text(SAXPY + SOFTMAX)
    out = tmp_path / "k.tkb"
    r = subprocess.run([tk_binary(), "build", src, "--target", "cpu", "-o", out], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    bundle = tk.load(out)
    source = tk.load(src)
    assert bundle.entries == source.entries == ["saxpy", "softmax"]
    assert bundle.saxpy.signature == source.saxpy.signature
    x = np.linspace(-3, 3, 37, dtype=np.float32)
    np.testing.assert_array_equal(bundle.saxpy(0.5, x, x), source.saxpy(0.5, x, x))
    m = np.outer(x, x[:5]).astype(np.float32)
    np.testing.assert_array_equal(bundle.softmax(m), source.softmax(m))


def test_compile_errors_carry_the_place():
    with pytest.raises(tk.CompileError) as e:
        tk.compile("kernel k(x: f32[n]) -> f32[n] {\n    x + yy\n}", "model.tk")
    err = e.value
    assert (err.code, err.file, err.line, err.column) == ("E0100", "model.tk", 2, 9)
    assert "model.tk:2:9" in str(err) and "cannot find `yy`" in str(err)
    with pytest.raises(tk.CompileError) as e:
        tk.compile("kernel k(x: f32[n]) -> f32[n] { x }\nkernel k(x: f32[n]) -> f32[n] { x }")
    assert e.value.file == "<string>" and e.value.code == "E0102" and e.value.line == 2


def test_a_file_reports_its_own_name(tmp_path):
    f = tmp_path / "bad.tk"
    f.write_text("kernel k(x: f32[n]) -> f32[n] { x * }\n")
    with pytest.raises(tk.CompileError) as e:
        tk.load(f)
    assert e.value.file == str(f) and e.value.line == 1
    with pytest.raises(OSError, match="missing.tk"):
        tk.load(tmp_path / "missing.tk")


def test_argument_errors_name_the_parameter():
    prog = tk.compile(SAXPY)
    x = np.ones(4, np.float32)
    with pytest.raises(tk.ArgumentError, match=r"argument `x`: expected f32\[n\], got f64\[4\]"):
        prog.saxpy(1.0, x.astype(np.float64), x)
    with pytest.raises(tk.ArgumentError, match=r"dimension `n` is 3 here but 4"):
        prog.saxpy(1.0, x, x[:3])
    with pytest.raises(tk.ArgumentError, match="expected f32, got a bool"):
        prog.saxpy(True, x, x)
    with pytest.raises(tk.ArgumentError, match="missing argument"):
        prog.saxpy(1.0, x)
    with pytest.raises(tk.ArgumentError, match="no parameter `z`"):
        prog.saxpy(1.0, x, x, z=x)
    with pytest.raises(tk.ArgumentError, match="numpy dtype complex64 has no tk dtype"):
        prog.saxpy(1.0, x.astype(np.complex64), x)
    with pytest.raises(tk.ArgumentError, match="device `tpu:0`"):
        prog.saxpy(1.0, x, x, device="tpu:0")
    i = tk.compile("kernel shift(x: i32[n], k: i32) -> i32[n] { x + k }")
    with pytest.raises(tk.ArgumentError, match="got a float"):
        i.shift(np.zeros(2, np.int32), 1.5)
    with pytest.raises(tk.ArgumentError, match="out of range for i32"):
        i.shift(np.zeros(2, np.int32), 2**40)
    # A bad index found while running is an IndexError.
    g = tk.compile("kernel gather(t: f32[v], i: i32[n]) -> f32[n] { [k] => t[i[k]] }")
    with pytest.raises(IndexError, match="out of range"):
        g.gather(np.ones(3, np.float32), np.array([0, 5], np.int32))


@pytest.mark.parametrize("name", ["bool", "i8", "i16", "i32", "i64", "u8", "u32", "f16", "f32", "f64", "bf16"])
def test_every_dtype_round_trips(name):
    if name == "bf16":
        dt = np.dtype(needed("ml_dtypes").bfloat16)
    else:
        dt = np.dtype({"bool": "bool", "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64", "u8": "uint8",
                       "u32": "uint32", "f16": "float16", "f32": "float32", "f64": "float64"}[name])
    prog = tk.compile(f"kernel same(x: {name}[a, b]) -> {name}[b, a] {{ [j, i] => x[i, j] }}")
    x = (np.arange(12) % 5).reshape(3, 4).astype(dt)
    got = prog.same(x)
    assert got.dtype == dt and got.shape == (4, 3)
    np.testing.assert_array_equal(got.astype(np.float64), x.T.astype(np.float64))
    a = tk.Device("cpu").upload(x)
    assert a.dtype == name and a.shape == (3, 4) and a.device == "cpu"


def test_inputs_on_the_cpu_are_used_in_place_and_others_are_copied():
    x = np.arange(8, dtype=np.float32)
    a = tk.Device("cpu").upload(x)
    assert np.shares_memory(a.numpy(), x)
    # Not C-contiguous, not native byte order: copied, with the right values.
    strided = np.arange(16, dtype=np.float32)[::2]
    b = tk.Device("cpu").upload(strided)
    assert not np.shares_memory(b.numpy(), strided)
    np.testing.assert_array_equal(b.numpy(), strided)
    big_endian = np.arange(4, dtype=">f4")
    np.testing.assert_array_equal(tk.compile(SAXPY).saxpy(1.0, big_endian, big_endian), [0, 2, 4, 6])
    # A result on the CPU is viewed, not copied: the view keeps the array alive.
    r = tk.compile(SAXPY).saxpy(1.0, x, x, out="device")
    v = r.numpy()
    del r
    np.testing.assert_array_equal(v, 2 * x)


def test_resident_arrays_and_other_devices():
    prog = tk.compile(SAXPY)
    for dev in [tk.Device("cpu"), tk.Device("sim:sm_86")]:
        x = dev.upload(np.arange(5, dtype=np.float32))
        y = prog.saxpy(3.0, x, x, device=dev, out="device")
        assert isinstance(y, tk.Array) and y.device == dev.name and y.shape == (5,) and y.dtype == "f32"
        z = prog.saxpy(1.0, y, x, device=dev)
        np.testing.assert_array_equal(z, 5 * np.arange(5, dtype=np.float32))
        np.testing.assert_array_equal(np.asarray(y), 4 * np.arange(5, dtype=np.float32))
    sim = tk.Device("sim:sm_86").upload(np.ones(3, np.float32))
    with pytest.raises(tk.ArgumentError, match="an array on sim:sm_86 passed to a call on cpu"):
        prog.saxpy(1.0, sim, sim)
    with pytest.raises(BufferError, match="call .numpy"):
        sim.__dlpack__()
    assert "cpu" in tk.devices() and all(not d.endswith(":-") for d in tk.devices())


def _capsule_name(capsule) -> bytes:
    get = ctypes.pythonapi.PyCapsule_GetName
    get.restype, get.argtypes = ctypes.c_char_p, [ctypes.py_object]
    return get(capsule)


def test_dlpack_round_trips_with_numpy():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    a = tk.from_dlpack(x)
    assert a.shape == (3, 4) and a.dtype == "f32"
    assert np.shares_memory(a.numpy(), x)
    back = np.from_dlpack(a)
    assert np.shares_memory(back, x)
    np.testing.assert_array_equal(back, x)
    assert a.__dlpack_device__() == (1, 0)
    assert _capsule_name(a.__dlpack__(max_version=(1, 0))) == b"dltensor_versioned"
    assert _capsule_name(a.__dlpack__()) == b"dltensor"
    # A result goes out through DLPack and comes back without a copy.
    r = tk.compile(SAXPY).saxpy(2.0, x.ravel(), x.ravel(), out="device")
    y = np.from_dlpack(r)
    assert np.shares_memory(tk.from_dlpack(y).numpy(), y)
    np.testing.assert_array_equal(y, 3 * x.ravel())


def test_entries_are_callable_from_several_threads():
    prog = tk.compile(SOFTMAX + SAXPY)
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((5, 17)).astype(np.float32) for _ in range(16)]
    want = [prog.softmax(m) for m in inputs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda m: prog.softmax(m), inputs))
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)


def test_the_gil_is_released_while_a_kernel_runs():
    prog = tk.compile("kernel mm(a: f32[m, k], b: f32[k, n]) -> f32[m, n] { a @ b }")
    a = np.ones((128, 128), np.float32)
    ticks = 0
    done = threading.Event()

    def run():
        prog.mm(a, a, device="sim:sm_86")  # about a second on the PTX simulator
        done.set()

    t = threading.Thread(target=run)
    t.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    t.join()
    assert ticks > 20, f"the main thread ran only {ticks} times while the kernel ran"
