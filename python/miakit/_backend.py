"""Loading the compiled core and describing what it was built with."""

from __future__ import annotations

from typing import Any

import miakit._C as _C


def backend_info() -> dict[str, Any]:
    """Describe the compiled backend.

    Returns
    -------
    dict
        ``version`` (str), ``cuda_built`` (bool: CUDA kernels were compiled in),
        ``cuda_archs`` (list of str: the GPU architectures as the build was given them,
        in CMake's syntax: ``"90-real"`` machine code only, ``"120-virtual"`` PTX only,
        ``"120"`` both), ``cuda_real_archs`` (list of str: architectures with machine
        code, ``"86"`` for sm_86), ``cuda_virtual_archs`` (list of str: architectures with
        PTX, which the driver compiles for that GPU and any later one),
        ``cuda_compiler_version`` (str, or None without CUDA), ``cuda_available`` (bool:
        built with CUDA *and* a CUDA device is usable now), ``cuda_device_count`` (int),
        ``openmp`` (bool) and ``openmp_threads`` (int: threads the CPU kernels use, from
        ``OMP_NUM_THREADS`` when set).

    Notes
    -----
    A GPU runs this build when there is machine code for its major architecture with a
    minor revision no higher than its own (sm_86 code runs on an sm_89 GPU), or PTX for
    its architecture or an earlier one. On any other GPU every CUDA kernel raises
    ``RuntimeError`` naming the GPU's architecture and the build's, before launching.

    Examples
    --------
    >>> import miakit as mk
    >>> info = mk.backend_info()
    >>> sorted(k for k in info if k.startswith("cuda"))  # doctest: +NORMALIZE_WHITESPACE
    ['cuda_archs', 'cuda_available', 'cuda_built', 'cuda_compiler_version',
     'cuda_device_count', 'cuda_real_archs', 'cuda_virtual_archs']
    """
    info = dict(_C.backend_info())
    for key in ("cuda_archs", "cuda_real_archs", "cuda_virtual_archs"):
        info[key] = list(info[key])
    info["cuda_available"] = bool(info["cuda_built"] and info["cuda_device_count"] > 0)
    return info
