"""miakit.backend_info, OpenMP threads, and running with no GPU and no CUDA driver."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import miakit as mk


def run_python(code: str, **env_overrides: str) -> str:
    """Run ``code`` in a fresh interpreter (same sys.path as this one) and return stdout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.update(env_overrides)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_backend_info_keys_and_types():
    info = mk.backend_info()
    assert isinstance(info, dict)
    assert isinstance(info["version"], str) and info["version"] == mk.__version__
    assert isinstance(info["cuda_built"], bool)
    assert isinstance(info["cuda_archs"], list)
    assert all(isinstance(a, str) and a for a in info["cuda_archs"])
    assert isinstance(info["cuda_available"], bool)
    assert isinstance(info["openmp_threads"], int) and info["openmp_threads"] >= 1
    if not info["cuda_built"]:
        assert info["cuda_archs"] == [] and info["cuda_available"] is False
    else:
        # "80", "90a", "sm_80", "80-real": the default build covers 80 and 90 at least
        archs = {re.search(r"\d+", a).group() for a in info["cuda_archs"]}
        assert {"80", "90"} <= archs, info["cuda_archs"]
    if info["cuda_available"]:
        assert info["cuda_built"]
    # a fresh dict each call: callers may modify it
    info["version"] = "changed"
    assert mk.backend_info()["version"] == mk.__version__


def test_backend_info_is_json_serialisable():
    json.dumps(mk.backend_info())


@pytest.mark.parametrize("threads", [1, 3])
def test_openmp_threads_follow_env(threads):
    out = run_python(
        """
        import miakit as mk
        print(mk.backend_info()["openmp_threads"])
        """,
        OMP_NUM_THREADS=str(threads),
    )
    assert int(out.strip()) == threads


def test_results_do_not_depend_on_thread_count():
    """One thread and several give the same values: bit-identical per-row kernels, and the
    pooled (global) variance up to the order of a parallel sum."""
    code = """
        import json
        import numpy as np, miakit as mk
        rng = np.random.default_rng(5)
        keep = mk.shadow.balanced_keep(8, 301, seed=2)
        labels = rng.integers(0, 10, size=301)
        z = rng.normal(size=(8, 301, 3, 10)).astype(np.float32)
        s = mk.signals.scaled_confidence(z, labels[:, None])
        loo = mk.lira.leave_one_out(z, keep, labels=labels, variance="global")
        loo_pe = mk.lira.leave_one_out(z, keep, labels=labels)
        print(json.dumps({"s": s.astype(float).tolist(), "loo": loo.tolist(),
                          "loo_pe": loo_pe.tolist(), "mu": mk.lira.fit(s, keep).mu_in.tolist()}))
    """
    one = json.loads(run_python(code, OMP_NUM_THREADS="1"))
    three = json.loads(run_python(code, OMP_NUM_THREADS="3"))
    for key in ("s", "loo_pe", "mu"):
        assert one[key] == three[key], key
    # A different summation order moves the pooled spread by a few ulps of the terms
    # summed, so the bound is relative to the scores' scale, not to each (possibly
    # near-zero) score.
    scale = float(np.abs(one["loo"]).max())
    np.testing.assert_allclose(one["loo"], three["loo"], rtol=1e-12, atol=1e-12 * scale)


def test_imports_and_runs_with_no_gpu_and_no_driver():
    """No visible GPU and no library path to a CUDA driver or toolkit: the package imports,
    says CUDA is unavailable, and the CPU kernels give correct values."""
    out = run_python(
        """
        import json, sys
        import numpy as np
        import miakit as mk
        info = mk.backend_info()
        z = np.array([[40.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
        s = mk.signals.scaled_confidence(z, np.array([0, 2]))
        keep = mk.shadow.balanced_keep(4, 3, seed=0)
        sc = np.arange(24, dtype=np.float64).reshape(4, 3, 2) % 5
        loo = mk.lira.leave_one_out(sc, keep, mode="offline", min_std=0.1)
        print(json.dumps({"available": info["cuda_available"], "count": info["cuda_device_count"],
                          "s": s.tolist(), "finite": bool(np.isfinite(loo).all()),
                          "torch_modules": [m for m in sys.modules if "torch" in m]}))
        """,
        CUDA_VISIBLE_DEVICES="",
        LD_LIBRARY_PATH="",
    )
    res = json.loads(out)
    assert res["available"] is False
    assert res["count"] == 0
    assert res["s"][0] == pytest.approx(40.0 - np.log(2.0), rel=1e-14)
    assert res["s"][1] == pytest.approx(3.0 - np.logaddexp(1.0, 2.0), rel=1e-14)
    assert res["finite"]
    assert res["torch_modules"] == []  # numpy-only use never imports torch


def _extension_path() -> Path:
    from miakit import _C

    return Path(_C.__file__)


def test_extension_has_no_dynamic_cuda_runtime_dependency():
    if shutil.which("readelf") is None:
        pytest.skip("readelf is not installed")
    so = _extension_path()
    assert so.name.startswith("_C") and so.suffix == ".so"
    out = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True,
                         check=True).stdout
    needed = [ln.split("[", 1)[1].rstrip("]") for ln in out.splitlines() if "(NEEDED)" in ln]
    assert needed, out
    for lib in needed:
        assert not lib.startswith(("libcudart", "libcuda.", "libcuda-")), needed
        assert "torch" not in lib and "c10" not in lib, needed  # never links libtorch


def test_tests_use_the_installed_package():
    """The package source tree (python/miakit) is not what these tests import."""
    src = Path(__file__).resolve().parent.parent / "python" / "miakit"
    assert Path(mk.__file__).resolve().parent != src.resolve()


def test_public_api_names():
    for name in ("scaled_confidence", "hinge", "loss", "confidence", "max_confidence",
                 "correct"):
        assert callable(getattr(mk.signals, name))
    for name in ("fit", "score", "leave_one_out"):
        assert callable(getattr(mk.lira, name))
    for name in ("roc", "auc", "tpr_at_fpr"):
        assert callable(getattr(mk.metrics, name))
    assert callable(mk.shadow.balanced_keep)
    assert np.asarray(mk.signals.hinge([[1.0, 0.0]], [0])).tolist() == [1.0]
