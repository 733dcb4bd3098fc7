"""Loading the compiled core and describing what it was built with."""

from __future__ import annotations

from typing import Any

from miakit import _C


def backend_info() -> dict[str, Any]:
    """Describe the compiled backend.

    Returns
    -------
    dict
        ``version`` (str), ``cuda_built`` (bool: CUDA kernels were compiled in),
        ``cuda_archs`` (list of str: GPU architectures compiled for), ``cuda_available``
        (bool: built with CUDA *and* a CUDA device is usable now), ``cuda_device_count``
        (int), ``openmp`` (bool) and ``openmp_threads`` (int: threads the CPU kernels use,
        from ``OMP_NUM_THREADS`` when set).

    Examples
    --------
    >>> import miakit as mk
    >>> info = mk.backend_info()
    >>> sorted(k for k in info if k.startswith("cuda"))
    ['cuda_archs', 'cuda_available', 'cuda_built', 'cuda_device_count']
    """
    info = dict(_C.backend_info())
    info["cuda_archs"] = list(info["cuda_archs"])
    info["cuda_available"] = bool(info["cuda_built"] and info["cuda_device_count"] > 0)
    return info
