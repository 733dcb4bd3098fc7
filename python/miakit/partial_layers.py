"""Membership inference when only the lower layers of a model are available (Sablayrolles
et al. 2018, "Déjà Vu", §5; docs/methods/partial-layers.md).

A model's top was replaced (it was fine-tuned for another task, or only its feature
extractor was released). The attack freezes the kept lower layers, retrains the missing
head on public data (disjoint from the model's training set) and attacks the resulting
full model with the two baselines of :mod:`miakit.thresholds`:

- the Bayes attack, "correct means member": ``1/2 + (p_train - p_test) / 2``
  (:func:`miakit.thresholds.bayes_baseline`);
- the maximum-accuracy loss threshold, MAT (:func:`miakit.thresholds.max_accuracy_threshold`).

Each accuracy comes with a Clopper-Pearson interval over the candidates' calls (exact for
balanced members and non-members; MAT's threshold is chosen on the same candidates, so
its accuracy is optimistic by the choice). The per-example logits, losses and correctness
are returned too, so that LiRA and RMIA can score the same model (with reference models
built the same way).

- :func:`partial_layers`: retrain a head on frozen lower layers, attack it;
- :func:`attack_logits`: the same attacks on logits already at hand (the untruncated
  model's softmax, the row every truncation is compared with).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from miakit import _arrays as ar
from miakit import thresholds
from miakit._validation import (
    check_bool_array,
    check_choice,
    check_int,
    check_labels,
    check_real,
    check_real_array,
    check_real_values,
    check_seed,
)

__all__ = ["partial_layers", "attack_logits", "PartialLayersResult", "train_head",
           "frozen_features"]


@dataclass(frozen=True)
class PartialLayersResult:
    """The attacks on a model rebuilt from its lower layers (or on a whole model's logits).

    Attributes
    ----------
    bayes_accuracy : float
        ``1/2 + (p_train - p_test) / 2`` of "correct means member".
    bayes_ci : (float, float)
        Its Clopper-Pearson interval.
    train_accuracy, test_accuracy : float
        ``p_train`` (on the members) and ``p_test`` (on the non-members) of the model.
    mat_accuracy : float
        The maximum-accuracy loss threshold's balanced accuracy.
    mat_ci : (float, float)
        Its Clopper-Pearson interval (the threshold is fitted on the same candidates).
    mat_threshold : float
        The loss threshold attaining it ("loss <= threshold means member").
    logits : numpy.ndarray [N, C] float32
        The rebuilt model's logits on the candidates.
    loss : numpy.ndarray [N] float64
        Per-candidate cross-entropy.
    correct : numpy.ndarray [N] bool
        Whether the rebuilt model classifies each candidate correctly.
    members : numpy.ndarray [N] bool
        The candidates' membership, as given.
    public_accuracy : float or None
        The retrained head's accuracy on its public training data (``None`` for
        :func:`attack_logits`).
    """

    bayes_accuracy: float
    bayes_ci: tuple[float, float]
    train_accuracy: float
    test_accuracy: float
    mat_accuracy: float
    mat_ci: tuple[float, float]
    mat_threshold: float
    logits: np.ndarray
    loss: np.ndarray
    correct: np.ndarray
    members: np.ndarray
    public_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The accuracies and intervals as JSON values (no per-example arrays)."""
        return {"bayes": {"accuracy": self.bayes_accuracy, "ci": list(self.bayes_ci),
                          "train_accuracy": self.train_accuracy,
                          "test_accuracy": self.test_accuracy},
                "mat": {"accuracy": self.mat_accuracy, "ci": list(self.mat_ci),
                        "threshold": self.mat_threshold},
                "public_accuracy": self.public_accuracy}


def _interval(accuracy: float, members: np.ndarray, level: float) -> tuple[float, float]:
    """Clopper-Pearson over the candidates' calls. The balanced accuracy counts
    ``accuracy * N`` right calls when members and non-members are balanced, which is the
    protocol; otherwise it is the nearest whole count (an approximation)."""
    from miakit.metrics import clopper_pearson

    n = int(members.size)
    return clopper_pearson(int(round(accuracy * n)), n, level)


def attack_logits(logits: Any, labels: Any, members: Any, *, level: float = 0.95,
                  public_accuracy: float | None = None) -> PartialLayersResult:
    """The Bayes attack and the maximum-accuracy loss threshold on a model's logits.

    Parameters
    ----------
    logits : array [N, C] float
        The model's outputs on the candidates.
    labels : array [N] int
    members : array [N] bool
        Whether each candidate is in the model's training set (both kinds needed).
    level : float
        Confidence level of the intervals.
    public_accuracy : float, optional
        Recorded as given (the head's accuracy on the data it was trained on).

    Returns
    -------
    PartialLayersResult

    Examples
    --------
    >>> import numpy as np
    >>> from miakit.partial_layers import attack_logits
    >>> z = np.array([[3., 0.], [0., 3.], [2., 0.], [0., 1.]])
    >>> r = attack_logits(z, [0, 1, 0, 0], [True, True, False, False])
    >>> r.bayes_accuracy, r.mat_accuracy
    (0.75, 1.0)
    """
    import torch

    level = check_real(level, "level", lo=0.0, hi=1.0, open_lo=True, open_hi=True)
    if public_accuracy is not None:
        public_accuracy = check_real(public_accuracy, "public_accuracy", 0.0, 1.0)
    z64 = check_real_array(logits.detach() if isinstance(logits, torch.Tensor) else logits,
                           "logits")
    if z64.ndim != 2:
        raise ValueError(f"logits: expected shape [N, C], got {z64.shape}")
    with np.errstate(over="ignore"):
        z = z64.astype(np.float32)
    if not np.isfinite(z).all():  # NaN, inf, or beyond float32 (the logits are kept so)
        raise ValueError(f"logits: expected values finite in float32, got "
                         f"{int((~np.isfinite(z)).sum())} that are not")
    y = np.asarray(labels)
    if y.shape != (z.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels: expected {z.shape[0]} integer labels, got shape {y.shape} "
                         f"of {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"labels: expected classes in [0, {z.shape[1]}), got "
                         f"[{y.min()}, {y.max()}]")
    m = check_bool_array(members.detach().cpu() if isinstance(members, torch.Tensor)
                         else members, "members", y.shape)
    # float64 log-softmax: the loss of a confidently right example is not rounded to 0
    z64 = z.astype(np.float64)
    shifted = z64 - z64.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(len(y)), y]
    correct = z.argmax(axis=1) == y
    bayes = thresholds.bayes_baseline(correct, m)
    mat = thresholds.max_accuracy_threshold(loss, m)
    return PartialLayersResult(
        bayes.accuracy, _interval(bayes.accuracy, m, level), bayes.train_accuracy,
        bayes.test_accuracy, mat.accuracy, _interval(mat.accuracy, m, level), mat.threshold,
        z, loss, correct, m, public_accuracy)


def _snapshot(module: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in module.state_dict(keep_vars=True).items()}


def frozen_features(lower: Any, x: Any, *, batch_size: int = 1024,
                    device: str | None = None) -> Any:
    """The kept layers' outputs, flattened to ``[N, D]`` float32 torch rows.

    A ``torch.nn.Module`` runs in eval mode without gradients (its training flags are
    restored afterwards), and its parameters and buffers are checked bit for bit after
    the pass: a lower layer that changes raises ``RuntimeError``. A plain function
    ``x -> features`` is called on batches of torch rows.

    Examples
    --------
    >>> import torch
    >>> from miakit.partial_layers import frozen_features
    >>> lower = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
    >>> tuple(frozen_features(lower, torch.zeros(5, 1, 8, 8)).shape)
    (5, 72)
    """
    import torch

    check_int(batch_size, "batch_size", lo=1)
    if not callable(lower):
        raise TypeError(f"lower: expected a torch.nn.Module or a function x -> features, "
                        f"got {type(lower).__name__}")
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    module = lower if isinstance(lower, torch.nn.Module) else None
    if device is None:
        params = list(module.parameters()) if module is not None else []
        device = str(params[0].device) if params else str(xt.device)
    before = _snapshot(module) if module is not None else None
    modes = {m: m.training for m in module.modules()} if module is not None else {}
    if module is not None:
        # frozen features: no dropout, BatchNorm from its running statistics (in training
        # mode a forward pass would also update them, changing the kept layers)
        module.eval()
    try:
        with torch.no_grad():
            out = [torch.as_tensor(lower(xt[i:i + batch_size].to(device, torch.float32)))
                   .reshape(min(batch_size, len(xt) - i), -1).float()
                   for i in range(0, len(xt), batch_size)]
    finally:
        for m, mode in modes.items():
            m.train(mode)
    if module is not None and before is not None:
        after = module.state_dict(keep_vars=True)
        changed = [k for k, v in before.items()
                   if k not in after or not torch.equal(v, after[k].detach())]
        if changed:
            raise RuntimeError(f"lower: the kept layers changed during the feature pass "
                               f"({', '.join(changed)}); they must stay frozen")
    if not out:
        raise ValueError("x: expected at least one example, got 0")
    return torch.cat(out)


def train_head(features: Any, labels: Any, n_classes: int, *, head: str = "linear",
               hidden: int = 128, epochs: int = 100, lr: float = 1e-2,
               batch_size: int = 128, weight_decay: float = 1e-4, seed: int = 0) -> Any:
    """A new top for frozen features: a linear or one-hidden-layer ReLU head trained with
    Adam on cross-entropy (mini-batches, reshuffled every epoch); returns the module in
    eval mode, on the features' device.

    Examples
    --------
    >>> import torch
    >>> from miakit.partial_layers import train_head
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(40, 3); y = (x[:, 0] > 0).long()
    >>> h = train_head(x, y, 2, epochs=200)
    >>> bool((h(x).argmax(1) == y).float().mean() > 0.9)
    True
    """
    import torch

    check_choice(head, "head", ("linear", "mlp"))
    check_int(n_classes, "n_classes", lo=2)
    check_int(hidden, "hidden", lo=1)
    check_int(epochs, "epochs", lo=1)
    check_int(batch_size, "batch_size", lo=1)
    check_real(lr, "lr", lo=0.0, open_lo=True)
    check_real(weight_decay, "weight_decay", lo=0.0)
    check_seed(seed)
    x = (check_real_values(features, "features") if isinstance(features, torch.Tensor)
         else torch.as_tensor(check_real_array(features, "features"))).float()
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"features: expected [N, D] rows, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("features: expected values finite in float32, got NaN or inf")
    width = max(int(x.shape[1]), hidden if head == "mlp" else 0)
    for name, size in (("n_classes", n_classes), ("hidden", hidden if head == "mlp" else 1)):
        if size * width > 2**31:  # the head's weight matrices
            raise ValueError(f"{name}: a head of {size} x {width} weights is too large")
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels
    lab = ar.to_numpy(check_labels(lab, n_classes))
    if lab.shape != (x.shape[0],):
        raise ValueError(f"labels: expected shape ({x.shape[0]},) (one per feature row), got "
                         f"{lab.shape}")
    y = torch.as_tensor(lab.astype(np.int64)).to(x.device)
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    d = x.shape[1]
    model: torch.nn.Module = (
        torch.nn.Linear(d, n_classes) if head == "linear" else
        torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(),
                            torch.nn.Linear(hidden, n_classes))).to(x.device)
    # features on very different scales (raw conv activations) train badly without it
    scale = x.std(dim=0, keepdim=True).clamp_min(1e-6)
    shift = x.mean(dim=0, keepdim=True)
    net = _standardized(model, shift, scale)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    net.train()
    with torch.enable_grad():  # the caller may hold no_grad (features are computed so)
        _fit(net, opt, x, y, epochs, batch_size, gen)
    return net.eval()


def _fit(net: Any, opt: Any, x: Any, y: Any, epochs: int, batch_size: int, gen: Any) -> None:
    import torch

    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen).to(x.device)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()


def _standardized(inner: Any, shift: Any, scale: Any) -> Any:
    """``inner`` behind a fixed standardization of its inputs (the public features'
    moments), as one module."""
    import torch

    class Standardized(torch.nn.Module):
        """A head that standardizes its inputs with fixed (training-set) moments."""

        def __init__(self, inner: Any, shift: Any, scale: Any) -> None:
            super().__init__()
            self.inner = inner
            self.register_buffer("shift", shift)
            self.register_buffer("scale", scale)

        def forward(self, x: Any) -> Any:
            return self.inner((x - self.shift) / self.scale)

    return Standardized(inner, shift, scale)


def partial_layers(lower: Any, public_x: Any, public_y: Any, candidates_x: Any,
                   candidates_y: Any, members: Any, *, head: str = "linear",
                   hidden: int = 128, epochs: int = 100, lr: float = 1e-2,
                   batch_size: int = 128, weight_decay: float = 1e-4,
                   n_classes: int | None = None, seed: int = 0, level: float = 0.95,
                   device: str | None = None) -> PartialLayersResult:
    """Membership attacks on a model of which only the lower layers are kept.

    The lower layers stay frozen (a module's parameters and buffers are checked bit for bit
    afterwards); a new head is trained on their features of the public data, and the Bayes
    attack and the maximum-accuracy loss threshold are run on the rebuilt model's outputs
    for the candidates.

    Parameters
    ----------
    lower : torch.nn.Module or callable
        The kept layers, or a function ``x -> features`` (torch rows in, torch out).
    public_x, public_y : arrays
        Data the attacker owns, disjoint from the model's training set, and its labels.
    candidates_x, candidates_y : arrays
        The examples attacked and their labels.
    members : array [N] bool
        Which candidates are in the model's training set (both kinds needed; balanced
        for exact intervals).
    head : {"linear", "mlp"}
        The retrained top: a linear layer, or one hidden ReLU layer of ``hidden`` units.
    hidden, epochs, lr, batch_size, weight_decay, seed
        Its training (Adam, cross-entropy, inputs standardized on the public features).
    n_classes : int, optional
        Classes of the head (default: ``max(public_y) + 1``).
    level : float
        Confidence level of the Clopper-Pearson intervals.
    device : str, optional
        Where features and head live (default: the lower layers' device).

    Returns
    -------
    PartialLayersResult
        Bayes and MAT accuracy with intervals, the per-candidate logits, losses and
        correctness, and the head's accuracy on the public data.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from miakit.partial_layers import partial_layers
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 4)).astype(np.float32); y = (x[:, 0] > 0).astype(int)
    >>> lower = torch.nn.Linear(4, 8)
    >>> r = partial_layers(lower, x[:100], y[:100], x[100:], y[100:],
    ...                    np.arange(100) < 50, epochs=20)
    >>> 0.0 <= r.bayes_accuracy <= 1.0 and r.mat_ci[0] <= r.mat_accuracy <= r.mat_ci[1]
    True
    """
    import torch

    check_choice(head, "head", ("linear", "mlp"))
    check_seed(seed)  # before the features are computed
    py = np.asarray(public_y.cpu() if isinstance(public_y, torch.Tensor) else public_y)
    cy = np.asarray(candidates_y.cpu() if isinstance(candidates_y, torch.Tensor)
                    else candidates_y)
    m = np.asarray(members.cpu() if isinstance(members, torch.Tensor) else members)
    if cy.shape != m.shape:
        raise ValueError(f"members: expected one flag per candidate, shape {cy.shape}, got "
                         f"{m.shape}")
    classes = (int(py.max()) + 1 if n_classes is None
               else check_int(n_classes, "n_classes", lo=2))
    pub = frozen_features(lower, public_x, device=device)
    if pub.shape[0] != py.shape[0]:
        raise ValueError(f"public_y: expected {pub.shape[0]} labels (one per public "
                         f"example), got {py.shape[0]}")
    cand = frozen_features(lower, candidates_x, device=device)
    if cand.shape[0] != cy.shape[0]:
        raise ValueError(f"candidates_y: expected {cand.shape[0]} labels (one per "
                         f"candidate), got {cy.shape[0]}")
    top = train_head(pub, py, classes, head=head, hidden=hidden, epochs=epochs, lr=lr,
                     batch_size=batch_size, weight_decay=weight_decay, seed=seed)
    with torch.no_grad():
        public_acc = float((top(pub).argmax(1).cpu().numpy() == py).mean())
        z = top(cand).cpu().numpy()
    return attack_logits(z, cy.astype(np.int64), m.astype(bool), level=level,
                         public_accuracy=public_acc)

