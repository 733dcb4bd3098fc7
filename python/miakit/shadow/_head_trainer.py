"""The trainer behind ``train_heads``: one chunk of heads at a time, on one device.

:class:`_Trainer` holds what every chunk of one ``train_heads`` call shares (the rows on
the device, the keep matrix, the L-BFGS setup with its warm start and preconditioner)
and trains a chunk with the batched L-BFGS of ``_linear`` (linear heads, full batches)
or the first-order loops of ``_firstorder``, handing back logits and parameters in the
caller's coordinates. The local loop and the Ray workers (``heads``) both use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from miakit.shadow._firstorder import (
    minibatch_plan,
    predict,
    train_dp_sgd,
    train_first_order,
)


class _Trainer:
    """Shared state of one ``train_heads`` call: device copies of the data, warm start."""

    def __init__(self, x: np.ndarray, y: np.ndarray, keep: np.ndarray, cfg: dict, dev: Any,
                 torch: Any):
        self.cfg, self.dev, self.torch = cfg, dev, torch
        n, a, d = x.shape
        self.n, self.a = n, a
        self.rows = torch.from_numpy(x.reshape(n * a, d)).to(dev)
        self.y_rows = torch.from_numpy(np.repeat(y, a) if a > 1 else y).to(dev)
        # [M, N * A]: every view of an example
        self.keep_rows = np.repeat(keep, a, axis=1) if a > 1 else keep
        self.keep = keep  # [M, N]: DP-SGD samples examples, not rows
        self._linear: Any = None

    def train(self, chunk: list[int], bar: Any) -> tuple[np.ndarray, dict, dict]:
        """Train the heads ``chunk``: (logits [K, N, A, C], diagnostics, parameters).

        The parameters are float32 numpy arrays stacked over the K heads in
        ``nn.Linear`` layout and the caller's feature coordinates: ``weight`` [K, C, D]
        and ``bias`` [K, C] for linear heads; ``weight1`` [K, H, D], ``bias1`` [K, H],
        ``weight2`` [K, C, H], ``bias2`` [K, C] for MLP heads.
        """
        cfg = self.cfg
        if cfg["optimizer"] == "lbfgs":
            z, info, params = self._train_lbfgs(chunk, bar)
        else:
            z, info, params = self._train_first_order(chunk, bar)
        c = cfg["n_classes"]
        logits = z.detach().contiguous().to("cpu").numpy()
        params = {k: v.detach().to("cpu", self.torch.float32).contiguous().numpy()
                  for k, v in params.items()}
        return logits.reshape(len(chunk), self.n, self.a, c), info, params

    # -- linear heads, batched L-BFGS --------------------------------------------------
    def _linear_setup(self) -> dict:
        if self._linear is not None:
            return self._linear
        torch, cfg = self.torch, self.cfg
        from miakit.shadow._linear import (
            SUB_ROWS,
            KroneckerPreconditioner,
            SoftmaxObjective,
            SubspacePreconditioner,
            lbfgs_heads,
        )

        x = self.rows
        r = x.shape[0]
        # Solve in centred, globally rescaled coordinates x' = (x - mu) / s: the same
        # problem exactly (the penalty becomes weight_decay / s^2, the centring moves into
        # the unpenalised bias) but free of the cancellation that large feature offsets
        # cause in float32. Per-feature scales are left to the preconditioner, whose
        # input factor E[x x^T] whitens them exactly; a per-feature rescaling would make
        # the penalty non-uniform, which a Kronecker-factored model cannot invert.
        # The bias is the solver's last weight row, its input the constant 1 (implied).
        mu = x.mean(0)  # float32 sums are pairwise: accurate, and twice as fast
        rms = float(torch.linalg.vector_norm(x)) / x.numel() ** 0.5
        spread = max(rms ** 2 - float(mu.square().mean()), 0.0) ** 0.5
        if float(mu.abs().max()) <= 0.25 * spread and 0.5 <= spread <= 2.0:
            # Already centred and of unit scale (standardised features): the solver's
            # coordinates are the caller's, and no copy of the rows is needed. Within
            # these bounds the offset costs no float32 accuracy worth a copy of the rows
            # (docs/methods/linear-heads.md).
            mu, s, xw = torch.zeros_like(mu), 1.0, x
        else:
            xw = x - mu
            s = float(torch.linalg.vector_norm(xw)) / xw.numel() ** 0.5
            s = s if s > 0 else 1.0
            xw.div_(s)
        n_feat = xw.shape[1]
        lam = torch.full((n_feat,), cfg["weight_decay"] / s ** 2, device=x.device)
        scale = torch.cat([torch.full((n_feat,), s, dtype=torch.float64),
                           torch.ones(1, dtype=torch.float64)]).to(x.device)
        g = torch.Generator().manual_seed(cfg["seed"])
        sub = torch.randperm(r, generator=g)[: min(r, SUB_ROWS)].to(x.device)
        kron = KroneckerPreconditioner(xw, lam)
        pre: KroneckerPreconditioner | SubspacePreconditioner = kron
        theta0 = torch.zeros(n_feat + 1, cfg["n_classes"], 1, device=x.device)
        if cfg["warm_start"]:
            w_all = torch.full((r, 1), 1.0 / r, device=x.device)
            obj = SoftmaxObjective(xw, self.y_rows, w_all, lam, cfg["n_classes"], sub)
            # The heads differ from this point by far more than a 10% residual, so
            # solving it further only costs time: each head's first gradient is the same
            # within 10%, and the heads still converge to tol in as many iterations.
            theta0 = lbfgs_heads(obj, theta0, tol=cfg["tol"], max_iter=cfg["epochs"],
                                 grad_scale=scale, pre=pre, rel_tol=1e-1).theta
            # Every head starts here and ends near here: one curvature model of this
            # point preconditions them all (see SubspacePreconditioner).
            pre = SubspacePreconditioner(xw, lam, theta0[:, :, 0], kron=kron)
        self._linear = {"xw": xw, "lam": lam, "scale": scale, "sub": sub, "theta0": theta0,
                        "mu": mu, "s": s,
                        "pre": pre, "solve": lbfgs_heads, "objective": SoftmaxObjective}
        return self._linear

    def _train_lbfgs(self, chunk: list[int], bar: Any):
        torch, cfg = self.torch, self.cfg
        s = self._linear_setup()
        kc = self.keep_rows[chunk]  # [K, R] bool
        # row weights [R, K]: 1 / n_k on the rows head k trains on
        inv_n = torch.from_numpy(1.0 / np.count_nonzero(kc, axis=1)).float()
        w = torch.empty(kc.shape[1], kc.shape[0]).copy_(torch.from_numpy(kc).T)
        w = w.mul_(inv_n).to(self.dev)
        obj = s["objective"](s["xw"], self.y_rows, w, s["lam"], cfg["n_classes"], s["sub"])
        theta0 = s["theta0"].expand(-1, -1, len(chunk)).contiguous()
        # The evaluation that finishes a head leaves its logits here (see lbfgs_heads).
        z = torch.empty(len(chunk), s["xw"].shape[0], cfg["n_classes"], device=self.dev)
        res = s["solve"](obj, theta0, tol=cfg["tol"], max_iter=cfg["epochs"],
                         grad_scale=s["scale"], pre=s["pre"], tick=bar.update,
                         shared_start=True, logits_out=z)
        missing = np.flatnonzero(~res.logits_written)
        if len(missing):
            idx = torch.from_numpy(missing).to(self.dev)
            z[idx] = obj.logits(res.theta[:, :, idx])  # [K, N * A, C]
        info = {"iterations": res.iterations, "converged": res.converged,
                "grad_max": res.grad_max, "loss": res.loss}
        # Back from the solver's coordinates x' = (x - mu) / s: x' t = x (t / s) - mu t / s.
        weight = (res.theta[:-1] / s["s"]).permute(2, 1, 0)  # [K, C, D]
        bias = res.theta[-1].T - weight @ s["mu"]  # [K, C]
        return z, info, {"weight": weight, "bias": bias}

    # -- first-order (Adam / SGD), linear or MLP ---------------------------------------
    def _train_first_order(self, chunk: list[int], bar: Any):
        cfg = self.cfg
        start = bar.n

        def tick(step: int, n_steps: int) -> None:
            if step == n_steps or step % max(1, n_steps // 50) == 0:
                bar.set_postfix_str(f"heads {chunk[0]}-{chunk[-1]}: step {step}/{n_steps}")

        plan = None
        if cfg.get("dp"):
            dp = cfg["dp"]
            heads = train_dp_sgd(
                self.rows, self.y_rows, self.keep[chunk], self.a, head=cfg["head"],
                hidden=cfg["hidden"] or 0, optimizer=cfg["optimizer"], lr=cfg["lr"],
                weight_decay=cfg["weight_decay"], seed=cfg["seed"], models=chunk,
                n_classes=cfg["n_classes"], noise_multiplier=dp["noise_multiplier"],
                clip=dp["clip"], sample_rate=dp["sample_rate"], steps=dp["steps"], tick=tick)
        else:
            if cfg["batch_size"] is not None:
                plan = minibatch_plan(self.keep_rows.sum(1), cfg["batch_size"], cfg["epochs"])
            heads = train_first_order(
                self.rows, self.y_rows, self.keep_rows[chunk], head=cfg["head"],
                hidden=cfg["hidden"] or 0, optimizer=cfg["optimizer"], epochs=cfg["epochs"],
                lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                batch_size=cfg["batch_size"], seed=cfg["seed"], models=chunk,
                n_classes=cfg["n_classes"], plan=plan, tick=tick)
        z = predict(heads, self.rows)
        bar.update(len(chunk) - (bar.n - start))
        n_steps = cfg["dp"]["steps"] if cfg.get("dp") else cfg["epochs"]
        info = {"iterations": np.full(len(chunk), n_steps, np.int64),
                "converged": np.ones(len(chunk), bool),
                "grad_max": np.full(len(chunk), np.nan), "loss": np.full(len(chunk), np.nan)}
        # StackedHeads keeps x @ W layouts [K, in, out]; hand back nn.Linear's [K, out, in].
        p = heads.p
        if cfg["head"] == "linear":
            params = {"weight": p["w1"].transpose(1, 2), "bias": p["b1"]}
        else:
            params = {"weight1": p["w1"].transpose(1, 2), "bias1": p["b1"],
                      "weight2": p["w2"].transpose(1, 2), "bias2": p["b2"]}
        return z, info, params
