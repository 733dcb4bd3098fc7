"""The release audit end to end on the embedded digits: a small CNN trained as the
target, its references trained by ``miakit shadow --model``, then ``miakit audit
--target-logits`` and its exposed records."""

import csv
import json

import numpy as np
import pytest

import miakit as mk
from miakit.cli import main

CNN = '''
import torch

def make_model():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10))


def fit(model, x, y, seed):
    """The user's own training loop: full-batch Adam until it fits its examples."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model
'''


def test_a_small_cnn_is_audited_before_release(tmp_path, monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    (tmp_path / "cnn_models.py").write_text(CNN)
    monkeypatch.syspath_prepend(str(tmp_path))
    d = mk.datasets.digits(n_examples=300, views=1)
    x = (d.features.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    y = d.labels.astype(np.int64)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    # the references: 16 CNNs, each on a random half, trained from the command line by
    # the user's own loop (the recipe the target is trained with)
    assert main(["shadow", "--model", "cnn_models:make_model", "--train-fn",
                 "cnn_models:fit", "--data", str(tmp_path / "data.npz"), "--models", "16",
                 "--views", "identity", "--out", str(tmp_path / "refs"), "--quiet"]) == 0
    refs = mk.shadow.open_run(tmp_path / "refs")
    assert refs.n_models == 16 and refs.n_examples == 300 and refs.n_augmentations == 1
    # the target: the same architecture trained by the user's own loop on its own half
    import cnn_models

    torch.manual_seed(123)
    member = np.random.default_rng(7).random(300) < 0.5
    model = cnn_models.fit(cnn_models.make_model(), torch.from_numpy(x[member]),
                           torch.from_numpy(y[member]), seed=123)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    np.save(tmp_path / "t.npy", logits)
    np.save(tmp_path / "k.npy", member)
    assert main(["audit", "--run", str(tmp_path / "refs"), "--target-logits",
                 str(tmp_path / "t.npy"), "--target-keep", str(tmp_path / "k.npy"),
                 "--out", str(tmp_path / "audit")]) == 0
    out = capsys.readouterr().out
    assert "one target model, 300 examples" in out and "exposed records:" in out
    rep = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert set(rep["attacks"]) == set(mk.audit.TARGET_ATTACKS)
    assert rep["target"]["n_members"] == member.sum()
    # a model that fits its members leaks: LiRA beats chance
    assert rep["attacks"]["lira_online"]["auc"] > 0.55, rep["attacks"]["lira_online"]["auc"]
    rows = list(csv.DictReader((tmp_path / "audit" / "exposed.csv").read_text().splitlines()))
    assert len(rows) == member.sum()
    assert {int(r["example"]) for r in rows} == set(np.flatnonzero(member).tolist())
    for name in ("report.html", "roc.png"):
        assert (tmp_path / "audit" / name).is_file()
