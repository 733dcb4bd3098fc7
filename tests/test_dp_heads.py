"""DP-SGD heads (mk.shadow.train_heads(..., dp=...)): per-example norms, determinism,
the recorded epsilon, bad input, and an audit that stays within the guarantee."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import miakit as mk
from miakit.shadow._firstorder import StackedHeads, _per_example_sq_norms, initial_params

pytest.importorskip("dp_accounting")


@pytest.mark.parametrize("head", ["linear", "mlp"])
@pytest.mark.parametrize("views", [1, 3])
def test_closed_form_norms_equal_autograd_per_example(head, views):
    torch.manual_seed(0)
    k, b, d, c = 2, 5, 4, 3
    heads = StackedHeads(head, [initial_params(head, d, c, 6, 0, m) for m in range(k)], "cpu")
    xb = torch.randn(k, b, views, d)
    yb = torch.randint(0, c, (k, b, views))
    yb[:] = yb[:, :, :1]  # every view of an example has its label
    got = _per_example_sq_norms(heads, xb, yb)
    for h in range(k):
        for i in range(b):
            for prm in heads.p.values():
                prm.grad = None
            z = heads.forward_own(xb[:, i].reshape(k, views, d))[h]
            loss = torch.nn.functional.cross_entropy(z, yb[h, i])  # mean over views
            grads = torch.autograd.grad(loss, list(heads.p.values()), allow_unused=True)
            want = sum(float((g[h].double() ** 2).sum()) for g in grads if g is not None)
            assert float(got[h, i]) == pytest.approx(want, rel=1e-5)


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 2, 5)) + y[:, None, None]).astype(np.float32)
    return x, y


DP = dict(noise_multiplier=1.0, clip=1.0, sample_rate=0.2, steps=30)


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_dp_heads_are_reproducible_per_head_and_record_epsilon(head, tmp_path):
    x, y = _data()
    keep = mk.shadow.balanced_keep(4, 120, seed=0)
    kw = dict(head=head, hidden=8, lr=0.1, seed=3, dp=DP, return_info=True)
    z1, info = mk.shadow.train_heads(x, y, keep, **kw)
    z2, _ = mk.shadow.train_heads(x, y, keep, heads_per_chunk=1, **kw)
    np.testing.assert_allclose(z1, z2, rtol=1e-5, atol=1e-5)  # chunking changes nothing
    want = mk.bounds.dpsgd_epsilon(1.0, 0.2, 30, 1e-5)
    assert info["dp"]["epsilon"] == want and info["iterations"].tolist() == [30] * 4
    run_z = mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / "run", head=head, hidden=8,
                                  lr=0.1, seed=3, dp=DP, progress=False)
    run = mk.shadow.open_run(tmp_path / "run")
    assert run.config["dp"]["epsilon"] == want and run.config["dp"]["clip"] == 1.0
    np.testing.assert_allclose(np.asarray(run_z), z1, rtol=1e-5, atol=1e-5)
    z3, _ = mk.shadow.train_heads(x, y, keep, **{**kw, "seed": 4})
    assert not np.allclose(z1, z3)


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_without_clipping_noise_or_sampling_it_is_full_batch_sgd(head):
    """sample_rate 1, a clip no gradient reaches and vanishing noise: every step is the
    full-batch gradient of each head's mean loss, as plain SGD takes it."""
    x, y = _data(200)
    keep = mk.shadow.balanced_keep(2, 200, seed=1)
    kw = dict(head=head, hidden=8, lr=0.2, weight_decay=1e-3, seed=5)
    with pytest.warns(RuntimeWarning, match="RDP"):
        z = mk.shadow.train_heads(x, y, keep, dp=dict(noise_multiplier=1e-12, clip=1e6,
                                                      sample_rate=1.0, steps=40), **kw)
    plain = mk.shadow.train_heads(x, y, keep, optimizer="sgd", epochs=40, **kw)
    np.testing.assert_allclose(z, plain, rtol=1e-4, atol=1e-4)


def test_bad_dp_settings_name_the_key():
    x, y = _data(40)
    keep = mk.shadow.balanced_keep(2, 40, seed=0)
    cases = [({**DP, "clip": 0.0}, "clip"), ({**DP, "noise_multiplier": -1.0},
                                             "noise_multiplier"),
             ({**DP, "sample_rate": 0.0}, "sample_rate"), ({**DP, "sample_rate": 1.5},
                                                          "sample_rate"),
             ({**DP, "steps": 0}, "steps"), ({**DP, "delta": 1.0}, "delta"),
             ({"clip": 1.0}, "missing"), ({**DP, "epsilon": 1.0}, "unknown")]
    for dp, match in cases:
        with pytest.raises(ValueError, match=match):
            mk.shadow.train_heads(x, y, keep, dp=dp)
    with pytest.raises(ValueError, match="dp"):
        mk.shadow.train_heads(x, y, keep, dp=DP, optimizer="lbfgs")
    with pytest.raises(ValueError, match="dp"):
        mk.shadow.train_heads(x, y, keep, dp=DP, batch_size=8)
    with pytest.raises(TypeError, match="dp"):
        mk.shadow.train_heads(x, y, keep, dp=[1.0])


def test_audit_of_dp_heads_stays_within_the_guarantee(tmp_path):
    """Smaller epsilon, weaker attack; the empirical epsilon never exceeds the claim."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    x = (rng.normal(size=(300, 1, 16)) + 0.8 * np.eye(16)[y * 4][:, None]).astype(np.float32)
    keep = mk.shadow.balanced_keep(8, 300, seed=0)
    aucs = {}
    for eps in (1.0, 16.0):
        z = mk.bounds.dpsgd_noise(eps, 1e-5, 0.1, 300)
        mk.shadow.train_heads(x, y, keep, lr=0.5, weight_decay=0.0, run_dir=tmp_path / f"{eps}",
                              dp=dict(noise_multiplier=z, clip=1.0, sample_rate=0.1,
                                      steps=300), progress=False)
        run = mk.shadow.open_run(tmp_path / f"{eps}")
        report = mk.audit.audit(run, plot=False, attacks=["lira_online", "loss"],
                                dp_epsilon=run.config["dp"]["epsilon"])
        assert report["privacy"]["consistent"] is True
        aucs[eps] = report["attacks"]["lira_online"]["auc"]
    plain = mk.shadow.train_heads(x, y, keep, optimizer="sgd", lr=0.5, epochs=100,
                                  weight_decay=0.0)
    auc_plain = mk.metrics.auc(mk.lira.leave_one_out(plain, keep, labels=y,
                                                     variance="global"), keep)
    assert aucs[1.0] < aucs[16.0] + 0.02 and aucs[16.0] < auc_plain
