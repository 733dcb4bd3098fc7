"""Many linear or one-hidden-layer MLP heads trained together by Adam or SGD.

The parameters of all K heads are stacked along a leading axis (``W1 [K, D, H]``, ...),
so one optimizer step updates every head: Adam and SGD act elementwise, hence a stacked
tensor behaves exactly like K independent optimizers. The loss is the sum over heads of
each head's mean loss, so no head's gradient depends on another's.

Full batch (``batch_size=None``): every head sees all its training rows each step and
the first layer is one wide product ``X @ [W1_1 ... W1_K]``. Minibatch: each head draws
its own batches from its own stream of shuffled training rows (``batch_rows``), seeded
by ``(seed, model)``, and the heads run as one batched matrix product on the gathered rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from miakit import _arrays as ar
from miakit._validation import check_choice, check_int, check_int_array, check_seed
from miakit.shadow._runtime import model_seed

_ROW_BUDGET_BYTES = 256 << 20

_MAX_PARAMS = 2**31
"""The most parameters (and batch-stream rows) one head may hold: beyond, the arrays
would not fit in memory, so the sizes are refused by name rather than failing in
the allocator."""


def initial_params(head: str, n_features: int, n_classes: int, hidden: int, seed: int,
                   model: int) -> dict[str, Any]:
    """The initial parameters of one head, as ``torch.nn.Linear`` would draw them.

    Weights and biases are uniform in ``+-1/sqrt(fan_in)``, drawn from a generator seeded
    by ``(seed, model)`` in the order weight 1, bias 1 (, weight 2, bias 2), with weights
    drawn in nn.Linear's ``[out, in]`` layout and returned transposed (``x @ W``).

    Examples
    --------
    >>> from miakit.shadow.heads import initial_params
    >>> p = initial_params("mlp", 4, 3, hidden=5, seed=0, model=2)
    >>> [tuple(v.shape) for v in p.values()]
    [(4, 5), (5,), (5, 3), (3,)]
    """
    import torch

    check_choice(head, "head", ("linear", "mlp"))
    n_features = check_int(n_features, "n_features", 1, _MAX_PARAMS)
    n_classes = check_int(n_classes, "n_classes", 2, _MAX_PARAMS)
    if head == "mlp":
        hidden = check_int(hidden, "hidden", 1, _MAX_PARAMS)
        if hidden * (n_features + n_classes) > _MAX_PARAMS:
            raise ValueError(f"hidden: a head of {hidden} hidden units on {n_features} "
                             f"features and {n_classes} classes holds more than "
                             f"{_MAX_PARAMS} parameters")
    elif n_features * n_classes > _MAX_PARAMS:
        raise ValueError(f"n_features: a head on {n_features} features and {n_classes} "
                         f"classes holds more than {_MAX_PARAMS} parameters")
    seed = check_seed(seed)
    model = check_int(model, "model", 0)
    g = torch.Generator().manual_seed(model_seed(seed, model, 0))
    sizes = [(n_features, n_classes)] if head == "linear" else \
        [(n_features, hidden), (hidden, n_classes)]
    out: dict[str, Any] = {}
    for i, (fan_in, fan_out) in enumerate(sizes, start=1):
        bound = 1.0 / math.sqrt(fan_in)
        out[f"w{i}"] = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=g).T
        out[f"b{i}"] = torch.empty(fan_out).uniform_(-bound, bound, generator=g)
    return out


def batch_rows(train_rows: np.ndarray, batch_size: int, n_steps: int, seed: int,
               model: int) -> np.ndarray:
    """Row indices ``[n_steps, batch_size]`` one head trains on, step by step.

    The stream concatenates independent shuffles of the head's training rows (one per
    epoch), drawn from ``(seed, model)``; step t takes the next ``batch_size`` rows.

    Examples
    --------
    >>> import numpy as np
    >>> from miakit.shadow.heads import batch_rows
    >>> b = batch_rows(np.array([3, 5, 7]), batch_size=2, n_steps=3, seed=0, model=0)
    >>> b.shape, sorted(b.ravel()[:3].tolist())
    ((3, 2), [3, 5, 7])
    """
    train_rows = ar.to_numpy(check_int_array(train_rows, "train_rows"))
    if train_rows.ndim != 1 or train_rows.size == 0 or train_rows.min() < 0:
        raise ValueError(f"train_rows: expected a non-empty 1-D array of row indices >= 0, "
                         f"got {train_rows!r}")
    batch_size = check_int(batch_size, "batch_size", 1)
    n_steps = check_int(n_steps, "n_steps", 1)
    if batch_size * n_steps > _MAX_PARAMS:
        raise ValueError(f"n_steps: {n_steps} steps of batch_size {batch_size} take more "
                         f"than {_MAX_PARAMS} rows")
    rng = np.random.default_rng(model_seed(check_seed(seed), check_int(model, "model", 0), 1))
    need = batch_size * n_steps
    n_epochs = -(-need // len(train_rows))
    stream = np.concatenate([rng.permutation(train_rows) for _ in range(n_epochs)])
    return stream[:need].reshape(n_steps, batch_size)


class StackedHeads:
    """Parameters of K heads stacked on a leading axis, with batched forward passes."""

    def __init__(self, head: str, params: list[dict[str, Any]], device: Any):
        import torch

        self.head = head
        self.p = {k: torch.stack([p[k] for p in params]).to(device).contiguous()
                  .requires_grad_(True) for k in params[0]}

    def weights(self) -> list[Any]:
        return [v for k, v in self.p.items() if k.startswith("w")]

    def biases(self) -> list[Any]:
        return [v for k, v in self.p.items() if k.startswith("b")]

    def forward_shared(self, x: Any) -> Any:
        """Logits ``[K, R, C]`` of every head on the same rows ``x [R, D]``."""
        import torch

        k = self.p["w1"].shape[0]
        w1 = self.p["w1"].permute(1, 0, 2).reshape(x.shape[1], -1)  # [D, K * H]
        # One wide product for the first layer of every head, bias fused into the GEMM.
        h = torch.addmm(self.p["b1"].reshape(1, -1), x, w1)
        h = h.view(x.shape[0], k, -1).permute(1, 0, 2)  # [K, R, H], a view
        if self.head == "linear":
            return h
        return torch.baddbmm(self.p["b2"][:, None, :], torch.relu(h), self.p["w2"])

    def forward_own(self, xb: Any) -> Any:
        """Logits ``[K, B, C]`` of head k on its own rows ``xb[k]`` (``xb [K, B, D]``)."""
        import torch

        h = torch.baddbmm(self.p["b1"][:, None, :], xb, self.p["w1"])
        if self.head == "linear":
            return h
        return torch.baddbmm(self.p["b2"][:, None, :], torch.relu(h), self.p["w2"])


def _weighted_ce(logits: Any, y: Any, w: Any) -> Any:
    """sum_k sum_r w[k, r] * CE(logits[k, r], y[k or -, r])."""
    import torch

    logp = torch.log_softmax(logits, dim=-1)
    if y.dim() == 1:
        y = y.expand(logits.shape[0], -1)
    nll = -logp.gather(-1, y[..., None])[..., 0]
    return (nll * w).sum()


def minibatch_plan(rows_per_head: np.ndarray, batch_size: int, epochs: int) -> tuple[int, int]:
    """(batch size, number of steps) shared by every head of a ``train_heads`` call.

    Computed from all M heads, never from one chunk, so that a head's training does not
    depend on which heads share its batch: the batch is capped by the smallest head, and
    ``epochs`` passes over the mean head size set the steps.

    Examples
    --------
    >>> import numpy as np
    >>> from miakit.shadow.heads import minibatch_plan
    >>> minibatch_plan(np.array([50, 48, 52]), batch_size=10, epochs=3)
    (10, 15)
    """
    rows = ar.to_numpy(check_int_array(rows_per_head, "rows_per_head"))
    if rows.ndim != 1 or rows.size == 0 or rows.min() < 1:
        raise ValueError(f"rows_per_head: expected a non-empty 1-D array of positive row "
                         f"counts, got {rows!r}")
    batch_size = check_int(batch_size, "batch_size", 1)
    epochs = check_int(epochs, "epochs", 1)
    b = int(min(batch_size, rows.min()))
    return b, max(1, int(round(epochs * float(rows.mean()) / b)))


def train_first_order(x: Any, y: Any, keep_rows: np.ndarray, *, head: str, hidden: int,
                      optimizer: str, epochs: int, lr: float, weight_decay: float,
                      batch_size: int | None, seed: int, models: list[int],
                      n_classes: int, plan: tuple[int, int] | None = None,
                      tick: Any = None) -> StackedHeads:
    """Train heads ``models`` (global indices, for their seeds) on rows of ``x``.

    ``keep_rows [K, R]`` marks the rows each head trains on; ``plan`` is the minibatch
    ``(batch size, steps)`` from :func:`minibatch_plan` over all heads (default: from
    these heads); ``tick(step, n_steps)`` is called after each step.
    """
    import torch

    dev = x.device
    params = [initial_params(head, x.shape[1], n_classes, hidden, seed, m) for m in models]
    heads = StackedHeads(head, params, dev)
    groups = [{"params": heads.weights(), "weight_decay": weight_decay},
              {"params": heads.biases(), "weight_decay": 0.0}]
    if optimizer == "adam":
        opt = _adam(groups, lr, torch)
    else:
        opt = torch.optim.SGD(groups, lr=lr, momentum=0.9)
    n_rows = keep_rows.sum(1)
    if batch_size is None:
        w = torch.from_numpy((keep_rows / n_rows[:, None]).astype(np.float32)).to(dev)
        for step in range(epochs):
            opt.zero_grad(set_to_none=True)
            _weighted_ce(heads.forward_shared(x), y, w).backward()
            opt.step()
            if tick is not None:
                tick(step + 1, epochs)
        return heads
    b, n_steps = plan if plan is not None else minibatch_plan(n_rows, batch_size, epochs)
    streams = np.stack([batch_rows(np.flatnonzero(keep_rows[i]), b, n_steps, seed, m)
                        for i, m in enumerate(models)])  # [K, steps, B]
    streams_t = torch.from_numpy(streams).to(dev)
    wb = torch.full((len(models), b), 1.0 / b, device=dev)
    for step in range(n_steps):
        idx = streams_t[:, step]  # [K, B]
        opt.zero_grad(set_to_none=True)
        _weighted_ce(heads.forward_own(x[idx]), y[idx], wb).backward()
        opt.step()
        if tick is not None:
            tick(step + 1, n_steps)
    return heads


def _adam(groups: list[dict], lr: float, torch: Any) -> Any:
    # The fused kernel updates every parameter in one pass instead of ~10 elementwise
    # passes; it exists on CUDA and, since torch 2.4, on the CPU.
    try:
        return torch.optim.Adam(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(groups, lr=lr)


def predict(heads: StackedHeads, x: Any) -> Any:
    """Logits ``[K, R, C]`` of every head on all rows, in blocks of rows."""
    import torch

    k = heads.p["w1"].shape[0]
    width = heads.p["w1"].shape[2]
    block = max(256, _ROW_BUDGET_BYTES // (4 * k * max(width, 1)))
    with torch.no_grad():
        parts = [heads.forward_shared(x[s:s + block]) for s in range(0, x.shape[0], block)]
    return torch.cat(parts, dim=1)


# --------------------------------------------------------------------------- DP-SGD
def _per_example_sq_norms(heads: StackedHeads, xb: Any, yb: Any) -> Any:
    """Squared norms ``[K, B]`` float64 of every sampled example's gradient.

    ``xb [K, B, A, D]`` holds each head's sampled examples with all their views; an
    example's loss is its cross-entropy averaged over the views. Its gradient with
    respect to one layer of the head, with inputs ``u_a`` (a constant 1 appended for the
    bias) and output residuals ``r_a``, is ``sum_a u_a r_a^T``, whose squared norm is
    ``sum_{a,b} (r_a . r_b)(u_a . u_b)``: the closed form, summed over the layers,
    without materialising any per-example gradient (docs/methods/bounds.md).
    """
    import torch

    k, b, a, d = xb.shape
    p = heads.p

    def term(u: Any, r: Any) -> Any:
        uu = u.double().reshape(k, b, a, -1)
        rr = r.reshape(k, b, a, -1)
        gram_u = uu @ uu.transpose(-1, -2) + 1.0  # + 1: the bias's constant input
        return (gram_u * (rr @ rr.transpose(-1, -2))).sum((-1, -2))

    with torch.no_grad():
        flat = xb.reshape(k, b * a, d)
        pre = torch.baddbmm(p["b1"][:, None, :], flat, p["w1"])
        if heads.head == "linear":
            z = pre
        else:
            hid = torch.relu(pre)
            z = torch.baddbmm(p["b2"][:, None, :], hid, p["w2"])
        prob = torch.softmax(z.double(), dim=-1)
        onehot = torch.nn.functional.one_hot(yb.reshape(k, b * a), z.shape[-1]).double()
        r_out = (prob - onehot) / a  # d(mean over views of CE) / d logits
        if heads.head == "linear":
            return term(flat, r_out)
        delta = (r_out @ p["w2"].double().transpose(1, 2)) * (pre > 0).double()
        return term(hid, r_out) + term(flat, delta)


def train_dp_sgd(x: Any, y: Any, keep: np.ndarray, n_views: int, *, head: str, hidden: int,
                 optimizer: str, lr: float, weight_decay: float, seed: int,
                 models: list[int], n_classes: int, noise_multiplier: float, clip: float,
                 sample_rate: float, steps: int, tick: Any = None) -> StackedHeads:
    """DP-SGD for stacked heads: Poisson sampling, per-example clipping, Gaussian noise.

    ``keep [K, N]`` marks each head's training examples; ``x [N * A, D]`` holds every
    example's A views (rows ``n * A + a``). Each step, head k includes each of its
    examples independently with probability ``sample_rate`` (its own generator, seeded
    by ``(seed, model)``), clips each example's gradient (of its loss averaged over the
    views, with respect to all the head's parameters) to norm ``clip`` using the closed
    form of :func:`_per_example_sq_norms` and one weighted backward pass, adds Gaussian
    noise of standard deviation ``noise_multiplier * clip`` to the sum (drawn from the
    head's own generator), divides by the expected batch size ``sample_rate * n_k``, and
    takes an optimizer step (weight decay acts on the parameters, after the noise: a
    post-processing of the private gradient).
    """
    import torch

    dev = x.device
    params = [initial_params(head, x.shape[1], n_classes, hidden, seed, m) for m in models]
    heads = StackedHeads(head, params, dev)
    groups = [{"params": heads.weights(), "weight_decay": weight_decay},
              {"params": heads.biases(), "weight_decay": 0.0}]
    opt = _adam(groups, lr, torch) if optimizer == "adam" else torch.optim.SGD(
        groups, lr=lr, momentum=0.9)
    k_heads = len(models)
    own = [np.flatnonzero(keep[i]) for i in range(k_heads)]
    expected = torch.tensor([sample_rate * len(o) for o in own], device=dev,
                            dtype=torch.float32)
    samplers = [np.random.default_rng(model_seed(seed, m, 2)) for m in models]
    noisers = [torch.Generator().manual_seed(model_seed(seed, m, 3)) for m in models]
    a = n_views
    views = torch.arange(a, device=dev)
    for step in range(steps):
        picks = [o[s.random(len(o)) < sample_rate] for o, s in zip(own, samplers)]
        b = max(1, max(len(p_) for p_ in picks))
        idx = np.zeros((k_heads, b), dtype=np.int64)
        mask = np.zeros((k_heads, b), dtype=np.float32)
        for i, p_ in enumerate(picks):
            idx[i, :len(p_)] = p_
            mask[i, :len(p_)] = 1.0
        ex = torch.from_numpy(idx).to(dev)
        rows = ex[..., None] * a + views  # [K, B, A]
        xb = x[rows]  # [K, B, A, D]
        yb = y[rows]
        sq = _per_example_sq_norms(heads, xb, yb)
        scale = torch.clamp(clip / (sq.sqrt() + 1e-12), max=1.0).float()
        w = scale * torch.from_numpy(mask).to(dev) / a  # each view carries 1 / A
        opt.zero_grad(set_to_none=True)
        logits = heads.forward_own(xb.reshape(k_heads, b * a, -1))
        _weighted_ce(logits, yb.reshape(k_heads, b * a), w.repeat_interleave(a, dim=1)
                     ).backward()
        with torch.no_grad():
            for prm in heads.p.values():
                noise = torch.stack([torch.randn(prm.shape[1:], generator=g) for g in noisers])
                grad = prm.grad
                assert grad is not None  # every head parameter enters the loss above
                grad.add_(noise.to(dev), alpha=noise_multiplier * clip)
                grad.div_(expected.view(-1, *([1] * (prm.dim() - 1))))
        opt.step()
        if tick is not None:
            tick(step + 1, steps)
    return heads
