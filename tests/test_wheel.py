"""What the compiled wheel holds: the GPU architectures it was built for (machine code and
PTX, read back from the CUDA fat binary inside the extension), and the check that refuses
a GPU the build does not cover, by name, before any kernel launches.

Without a GPU the check is exercised through ``_C.cuda_arch_error``, the function every
CUDA entry point calls; with one, through the test hook ``MIAKIT_TEST_CUDA_CAPABILITY``,
which makes the GPU report another compute capability (see docs/guide/install.md).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import miakit as mk
from miakit import _C

INFO = mk.backend_info()
needs_cuda_build = pytest.mark.skipif(not INFO["cuda_built"], reason="built without CUDA")


def _arch_number(arch: str) -> tuple[int, int]:
    """"86" -> (8, 6), "100f" -> (10, 0), "90a" -> (9, 0)."""
    n = int(re.match(r"\d+", arch).group())
    return n // 10, n % 10


# ------------------------------------------------------------------ the CUDA fat binary
FATBIN_MAGIC = 0xBA55ED50
KIND_PTX, KIND_ELF = 1, 2


def elf_section(path: Path, wanted: str) -> bytes | None:
    """The contents of section ``wanted`` of a 64-bit little-endian ELF file, or None."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not a 64-bit LE ELF"
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    for name_off, _type, _flags, _addr, offset, size in headers:
        start = names_at + name_off
        if data[start:data.index(b"\0", start)].decode() == wanted:
            return data[offset:offset + size]
    return None


def fatbin_archs(blob: bytes) -> tuple[set[str], set[str]]:
    """(machine-code archs, PTX archs) listed by the entries of the fat binaries in
    ``blob`` (the .nv_fatbin section): each container starts with a 16-byte header
    (magic, version, header size, payload size), each entry with its kind (1 PTX, 2 ELF),
    header size, payload size and, at byte 28, the architecture number."""
    elf, ptx = set(), set()
    pos = 0
    while pos + 16 <= len(blob):
        magic, _version, header, size = struct.unpack_from("<IHHQ", blob, pos)
        if magic != FATBIN_MAGIC:  # containers are 8-byte aligned; skip the padding
            pos += 8
            continue
        entry, end = pos + header, pos + header + size
        while entry < end:
            kind, _v, entry_header, payload = struct.unpack_from("<HHIQ", blob, entry)
            (arch,) = struct.unpack_from("<I", blob, entry + 28)
            {KIND_ELF: elf, KIND_PTX: ptx}[kind].add(str(arch))
            entry += entry_header + payload
        pos = end
    return elf, ptx


def _numbers(archs) -> set[str]:
    return {re.match(r"\d+", a).group() for a in archs}


@needs_cuda_build
def test_backend_info_splits_machine_code_and_ptx():
    real, virtual = INFO["cuda_real_archs"], INFO["cuda_virtual_archs"]
    assert real or virtual
    assert all(re.fullmatch(r"\d+[af]?", a) for a in real + virtual), (real, virtual)
    # cuda_archs is CMake's list: "NN-real" machine code, "NN-virtual" PTX, "NN" both
    want_real = {a.split("-")[0] for a in INFO["cuda_archs"] if not a.endswith("-virtual")}
    want_ptx = {a.split("-")[0] for a in INFO["cuda_archs"] if not a.endswith("-real")}
    assert set(real) == want_real and set(virtual) == want_ptx
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", INFO["cuda_compiler_version"])


@needs_cuda_build
def test_default_build_covers_ampere_to_blackwell_and_ships_ptx_of_the_newest():
    if os.environ.get("MIAKIT_CUDA_ARCHITECTURES"):
        pytest.skip("built for a chosen architecture list")
    real = _numbers(INFO["cuda_real_archs"])
    want = {"80", "86", "89", "90"}
    if tuple(map(int, INFO["cuda_compiler_version"].split(".")[:2])) >= (12, 8):
        want |= {"100", "120"}
    assert want <= real, INFO
    newest = max(_numbers(INFO["cuda_real_archs"] + INFO["cuda_virtual_archs"]), key=int)
    assert newest in _numbers(INFO["cuda_virtual_archs"]), INFO


@needs_cuda_build
def test_fat_binary_lists_each_architecture():
    lib = Path(_C.__file__)
    blob = elf_section(lib, ".nv_fatbin")
    assert blob, f"{lib} has no .nv_fatbin section"
    elf, ptx = fatbin_archs(blob)
    assert elf == _numbers(INFO["cuda_real_archs"]), (elf, INFO["cuda_real_archs"])
    assert ptx == _numbers(INFO["cuda_virtual_archs"]), (ptx, INFO["cuda_virtual_archs"])


@needs_cuda_build
def test_cuobjdump_agrees():
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    tool = shutil.which("cuobjdump") or shutil.which("cuobjdump", path=f"{cuda_home}/bin")
    if tool is None:
        pytest.skip("cuobjdump not found (CUDA toolkit without it)")
    lib = str(Path(_C.__file__))
    listed = {}
    for flag in ("--list-elf", "--list-ptx"):
        out = subprocess.run([tool, flag, lib], capture_output=True, text=True, check=True).stdout
        listed[flag] = set(re.findall(r"sm_(\d+)", out))
    assert listed["--list-elf"] == _numbers(INFO["cuda_real_archs"]), listed
    assert listed["--list-ptx"] == _numbers(INFO["cuda_virtual_archs"]), listed


# ------------------------------------------------------------- which GPUs the build runs on
@needs_cuda_build
def test_every_architecture_built_for_is_covered():
    for arch in INFO["cuda_real_archs"] + INFO["cuda_virtual_archs"]:
        assert _C.cuda_arch_error(*_arch_number(arch)) == "", arch


@needs_cuda_build
def test_later_minor_revisions_run_machine_code_of_their_major():
    for arch in INFO["cuda_real_archs"]:
        if arch.endswith("a"):
            continue
        major, minor = _arch_number(arch)
        assert _C.cuda_arch_error(major, minor + 1) == "", arch


@needs_cuda_build
def test_ptx_covers_later_gpus_only():
    ptx = [_arch_number(a) for a in INFO["cuda_virtual_archs"] if not a.endswith("a")]
    if not ptx:
        pytest.skip("built without portable PTX")
    assert _C.cuda_arch_error(max(ptx)[0] + 3, 0) == ""  # a GPU that does not exist yet


def _uncovered() -> tuple[int, int]:
    """An old compute capability that this build does not cover (5.0 ... 7.5)."""
    for major, minor in [(7, 5), (7, 0), (6, 1), (6, 0), (5, 2), (5, 0)]:
        if _C.cuda_arch_error(major, minor):
            return major, minor
    pytest.skip("this build covers every architecture tried")


@needs_cuda_build
def test_uncovered_gpu_message_names_both_architectures():
    major, minor = _uncovered()
    msg = _C.cuda_arch_error(major, minor)
    assert f"sm_{major}{minor}" in msg and f"compute capability {major}.{minor}" in msg
    for arch in INFO["cuda_real_archs"]:
        assert f"sm_{arch}" in msg
    for arch in INFO["cuda_virtual_archs"]:
        assert f"compute_{arch}" in msg
    assert "MIAKIT_CUDA_ARCHITECTURES" in msg


@needs_cuda_build
def test_a_major_without_code_is_not_covered():
    # 11.0 (Jetson Thor) between Blackwell data-centre (10.x) and desktop (12.x): machine
    # code for 10.0 does not run there, and PTX for 12.0 cannot be compiled for it.
    majors = {_arch_number(a)[0] for a in INFO["cuda_real_archs"]}
    ptx = [_arch_number(a) for a in INFO["cuda_virtual_archs"]]
    if 11 in majors or any(p <= (11, 0) for p in ptx):
        pytest.skip("this build covers 11.0")
    assert "sm_110" in _C.cuda_arch_error(11, 0)


def test_cpu_only_build_says_so():
    if INFO["cuda_built"]:
        assert INFO["cuda_real_archs"] or INFO["cuda_virtual_archs"]
    else:
        assert INFO["cuda_real_archs"] == INFO["cuda_virtual_archs"] == []
        assert INFO["cuda_compiler_version"] is None
        assert "no CUDA kernels" in _C.cuda_arch_error(9, 0)


def _gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available() and INFO["cuda_available"])


@pytest.mark.cuda
@pytest.mark.skipif(not _gpu(), reason="needs a CUDA GPU and a CUDA build")
def test_uncovered_gpu_fails_before_launch_with_the_test_hook():
    major, minor = _uncovered()
    code = textwrap.dedent(
        """
        import torch, miakit as mk
        z = torch.randn(4, 3, device="cuda")
        y = torch.tensor([0, 1, 2, 0], device="cuda")
        try:
            mk.signals.loss(z, y)
        except RuntimeError as e:
            print("ERROR", e)
        else:
            print("RAN")
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))

    def run(**extra):
        proc = subprocess.run([sys.executable, "-c", code], env={**env, **extra},
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    out = run(MIAKIT_TEST_CUDA_CAPABILITY=f"{major}.{minor}")
    assert out.startswith("ERROR"), out
    assert f"sm_{major}{minor}" in out and "cuda:0" in out, out
    assert all(f"sm_{a}" in out for a in INFO["cuda_real_archs"]), out
    # the device's own capability passes the check, and so does no override at all
    import torch

    cc = "{}.{}".format(*torch.cuda.get_device_capability(0))
    assert run(MIAKIT_TEST_CUDA_CAPABILITY=cc).startswith("RAN")
    assert run().startswith("RAN")
