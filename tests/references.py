"""Plain float64 numpy/scipy references for the compiled kernels and the metrics.

Written for clarity, not speed: loops are fine. Nothing here imports miakit, so the
tests compare miakit against an independent implementation of the methods as
docs/methods/ defines them.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

SIGNALS = ("scaled_confidence", "hinge", "loss", "confidence", "max_confidence", "correct",
           "grad_norm")


# --------------------------------------------------------------------------- signals
def signal(logits, labels, kind: str) -> np.ndarray:
    """Reference signal of every row of ``logits [..., C]`` (float64; bool for correct).

    ``labels`` broadcast against ``logits.shape[:-1]``; the other classes of a row are
    its logits with the true class masked to -inf.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.broadcast_to(np.asarray(labels, dtype=np.int64), z.shape[:-1])
    true = np.arange(z.shape[-1]) == y[..., None]
    zy = np.take_along_axis(z, y[..., None], axis=-1)[..., 0]
    others = np.where(true, -np.inf, z)
    lse = special.logsumexp(z, axis=-1)
    if kind == "scaled_confidence":
        return zy - special.logsumexp(others, axis=-1)
    if kind == "hinge":
        return zy - others.max(axis=-1)
    if kind == "loss":
        return lse - zy
    if kind == "confidence":
        return np.exp(zy - lse)
    if kind == "max_confidence":
        return np.exp(z.max(axis=-1) - lse)
    if kind == "correct":
        return np.argmax(z, axis=-1) == y
    if kind == "grad_norm":
        # ||p - e_y||: 1 - p_y as the others' total probability (no cancellation)
        p_others = np.exp(others - lse[..., None])
        one_minus_py = np.exp(special.logsumexp(others, axis=-1) - lse)
        return np.hypot(one_minus_py, np.sqrt((p_others**2).sum(axis=-1)))
    raise KeyError(kind)


# --------------------------------------------------------------------------- LiRA
def lira_fit(scores, keep, center="median", variance="per_example", min_std=1e-6):
    """Reference LiRA fit from scores ``[M, N, A]`` and ``keep [M, N]``.

    Each side's observations are the scores with the other side's entries set to NaN;
    the statistics are NaN-aware reductions over the model axis. Returns a dict with
    mu_in, mu_out, sigma_in, sigma_out ([N, A], clamped), the unclamped raw_sigma_*,
    n_in, n_out ([N]) and n_clamped.
    """
    s = np.asarray(scores, dtype=np.float64)
    k = np.asarray(keep).astype(bool)
    return _masked_fit(s, k, np.ones(k.shape, dtype=bool), center, variance, min_std)


def log_normal_pdf(x, mu, sigma):
    return stats.norm.logpdf(x, loc=mu, scale=sigma)


def lira_score(target, fit: dict, mode="online", offline="one_sided") -> np.ndarray:
    """Reference score of one target's observations ``[N, A]`` against a reference fit.

    Examples with an empty needed side score NaN.
    """
    t = np.asarray(target, dtype=np.float64)
    mo, so = fit["mu_out"], fit["sigma_out"]
    if mode == "online":
        obs = (log_normal_pdf(t, fit["mu_in"], fit["sigma_in"])
               - log_normal_pdf(t, mo, so))
    elif offline == "one_sided":
        obs = special.log_ndtr((t - mo) / so)
    else:
        obs = -log_normal_pdf(t, mo, so)
    out = obs.mean(axis=1)
    empty = fit["n_out"] == 0
    if mode == "online":
        empty = empty | (fit["n_in"] == 0)
    out[empty] = np.nan
    return out


def balanced_partner(keep, t, n):
    """The model balanced leave-one-out drops beside target t on example n: the pair
    partner t ^ 1 if it is on the other side, else the first model after t (cyclically)
    on the other side; None when there is none."""
    k = np.asarray(keep).astype(bool)
    n_models = k.shape[0]
    candidates = ([t ^ 1] if (t ^ 1) < n_models else []) + [
        (t + i) % n_models for i in range(1, n_models)]
    for j in candidates:
        if k[j, n] != k[t, n]:
            return j
    return None


def calibrated_leave_one_out(scores, keep, targets, references="balanced") -> np.ndarray:
    """Reference calibrated leave-one-out, written out: target t's score of x less the
    plain mean of x's OUT references other than t and (balanced) its partner; NaN
    where none is left."""
    s = np.asarray(scores, dtype=np.float64)
    k = np.asarray(keep).astype(bool)
    rows = []
    for t in targets:
        row = []
        for j in range(s.shape[1]):
            drop = {t}
            if references == "balanced":
                drop.add(balanced_partner(k, t, j))
            outs = [s[i, j] for i in range(s.shape[0]) if i not in drop and not k[i, j]]
            row.append(s[t, j] - np.mean(outs) if outs else np.nan)
        rows.append(row)
    return np.array(rows)


def lira_leave_one_out(scores, keep, targets=None, mode="online", offline="one_sided",
                       center="median", variance="per_example", min_std=1e-6,
                       references="balanced") -> np.ndarray:
    """Reference leave-one-out: for each target, literally refit without the target and
    (``references="balanced"``) without its balanced partner of each example, as a per-
    example mask of the models."""
    s = np.asarray(scores, dtype=np.float64)
    k = np.asarray(keep).astype(bool)
    n_models, n_ex = s.shape[0], s.shape[1]
    targets = range(n_models) if targets is None else np.atleast_1d(targets)
    rows = []
    for t in targets:
        if references == "all":
            others = np.array([m for m in range(n_models) if m != t], dtype=np.int64)
            f = lira_fit(s[others], k[others], center, variance, min_std)
            rows.append(lira_score(s[t], f, mode, offline))
            continue
        # mask out (model, example) pairs: a masked pair counts on neither side
        use = np.ones((n_models, n_ex), dtype=bool)
        use[t] = False
        for n in range(n_ex):
            p = balanced_partner(k, t, n)
            if p is not None:
                use[p, n] = False
        f = _masked_fit(s, k, use, center, variance, min_std)
        rows.append(lira_score(s[t], f, mode, offline))
    return np.stack(rows)


def _masked_fit(s, k, use, center, variance, min_std):
    """lira_fit over the (model, example) pairs with ``use`` true."""
    n_aug = s.shape[2]
    res = {"n_clamped": 0}
    for side, mask in (("in", k & use), ("out", ~k & use)):
        vals = np.where(mask[:, :, None], s, np.nan)
        cnt = mask.sum(axis=0).astype(np.int64)
        empty = cnt == 0
        filled = np.where(empty[None, :, None], 0.0, vals)  # keeps nan-reductions quiet
        mu = np.nanmedian(filled, axis=0) if center == "median" else np.nanmean(filled, axis=0)
        mean = np.nanmean(filled, axis=0)
        m2 = np.nansum((filled - mean) ** 2, axis=0)
        m2[empty] = 0.0
        mu[empty] = np.nan
        if variance == "per_example":
            sd = np.sqrt(m2 / np.maximum(cnt, 1)[:, None])
            sd[empty] = np.nan
        else:
            total = cnt.sum() * n_aug  # every observation of this side, all examples
            sd = np.full(mu.shape, np.sqrt(m2.sum() / total) if total > 0 else np.nan)
        res[f"raw_sigma_{side}"] = sd.copy()
        low = ~empty[:, None] & (sd < min_std)
        res["n_clamped"] += int(low.sum())
        res[f"mu_{side}"] = mu
        res[f"sigma_{side}"] = np.where(low, min_std, sd)
        res[f"n_{side}"] = cnt
    return res


# --------------------------------------------------------------------------- metrics
def roc_points(scores, members):
    """(fp, tp, threshold) for the threshold +inf and every distinct score, brute force."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(members).astype(bool).ravel()
    points = [(0, 0, np.inf)]
    for thr in np.unique(s)[::-1]:
        pred = s >= thr
        points.append((int((pred & ~y).sum()), int((pred & y).sum()), float(thr)))
    return points


def tpr_at_fpr(scores, members, fpr):
    """Largest TPR with FPR <= fpr, by trying every threshold; ties in TPR go to the
    lowest FPR. Returns (tpr, achieved fpr, tp, fp, threshold, n_pos, n_neg)."""
    y = np.asarray(members).astype(bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    best = None
    for fp, tp, thr in roc_points(scores, members):
        if fp / n_neg <= fpr:
            key = (tp, -fp)
            if best is None or key > best[0]:
                best = (key, tp, fp, thr)
    _, tp, fp, thr = best
    return tp / n_pos, fp / n_neg, tp, fp, thr, n_pos, n_neg


def auc_pairs(scores, members) -> float:
    """Mann-Whitney AUC over all (member, non-member) pairs, ties counted one half."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(members).astype(bool).ravel()
    pos, neg = s[y], s[~y]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (pos.size * neg.size))


def clopper_pearson(k: int, n: int, level: float = 0.95):
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def auc_se_clustered(scores, members, clusters):
    """Cluster-robust DeLong standard error of the AUC, by brute-force placements."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(members).astype(bool).ravel()
    c = np.asarray(clusters).ravel()
    pos, neg = s[y], s[~y]
    v = np.array([((neg < x).sum() + 0.5 * (neg == x).sum()) / neg.size for x in pos])
    w = np.array([((pos > x).sum() + 0.5 * (pos == x).sum()) / pos.size for x in neg])
    a = v.mean()
    total = {}
    for cid, val in zip(c[y], (v - a) / pos.size):
        total[cid] = total.get(cid, 0.0) + val
    for cid, val in zip(c[~y], (w - a) / neg.size):
        total[cid] = total.get(cid, 0.0) + val
    k = len(total)
    return a, np.sqrt(k / (k - 1) * sum(t * t for t in total.values()))


def korn_graubard(k, n, level=0.95, alternative="two-sided"):
    """Korn-Graubard interval of sum(k) / sum(n) from per-cluster counts, written out, with
    the t quantile's degrees of freedom from the effective number of clusters carrying
    the residuals (Satterthwaite: nu = (sum r^2)^2 / sum r^4, df = nu - 1 in [1, C - 1])."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    keep = n > 0
    k, n = k[keep], n[keep]
    c = k.size
    p = k.sum() / n.sum()
    r = k - p * n
    nu = np.sum(r**2) ** 2 / np.sum(r**4) if np.any(r != 0) else c
    df = min(max(nu - 1, 1), max(c - 1, 1))
    tail = (1 - level) / 2 if alternative == "two-sided" else 1 - level
    deff = 1.0
    if c > 1 and 0 < p < 1:
        var = c / (c - 1) * np.sum((k - p * n) ** 2) / n.sum() ** 2
        deff = max(1.0, var * n.sum() / (p * (1 - p)))
    n_eff = n.sum() / deff
    n_lo = n_hi = n_eff
    if c > 1 and deff > 1:
        # the bound towards 1/2 with the effective degrees of freedom, the other with c - 1
        n_few = n_eff * (stats.norm.isf(tail) / stats.t.isf(tail, df)) ** 2
        n_all = n_eff * (stats.norm.isf(tail) / stats.t.isf(tail, c - 1)) ** 2
        n_lo, n_hi = (n_few, n_all) if p > 0.5 else (n_all, n_few)
    x = p * n_lo
    lo = 0.0 if x == 0 else stats.beta.ppf(tail, x, n_lo - x + 1)
    x = p * n_hi
    hi = 1.0 if x >= n_hi else stats.beta.isf(tail, x + 1, n_hi - x)
    # a share u of the examples that c clusters miss with probability tail could be
    # called at every score: the bound towards 1/2 is at least that far from p
    u = 1 - tail ** (1 / c)
    if p <= 0.5:
        hi = max(hi, min(1.0, p + u))
    else:
        lo = min(lo, max(0.0, p - u))
    if alternative == "greater":
        hi = 1.0
    if alternative == "less":
        lo = 0.0
    return float(lo), float(hi), deff


# --------------------------------------------------------------------------- RMIA
def rmia_dense_share(x_ratio, pop_ratio, self_index, gamma):
    """Dense RMIA count: for each x, the share of the population z with x / z > gamma;
    ``self_index[i]`` is the position of x_i's own entry in the population (-1: none),
    which is left out of its count and denominator."""
    x = np.asarray(x_ratio, dtype=np.float64)
    z = np.asarray(pop_ratio, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        beats = x[:, None] / z[None, :] > gamma  # [N, Z]
    out = np.empty(x.size)
    for i in range(x.size):
        keep = np.ones(z.size, dtype=bool)
        if self_index[i] >= 0:
            keep[self_index[i]] = False
        out[i] = beats[i, keep].sum() / keep.sum() if keep.sum() else np.nan
    return out


def rmia_leave_one_out(q, keep, targets=None, offline=False, a=0.3, gamma=1.0,
                       aggregate="mean", population=None, references="balanced"):
    """Reference RMIA leave-one-out from probabilities q [M, N, A], written out: per
    target and example, the reference models listed, their mean taken directly."""
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(keep).astype(bool)
    n_models, n_ex, _ = q.shape
    qa = q.mean(2, keepdims=True) if aggregate == "mean" else q
    pq = None
    if population is not None:
        pq = np.asarray(population, dtype=np.float64)
        pq = pq.mean(2, keepdims=True) if aggregate == "mean" else pq
    targets = range(n_models) if targets is None else np.atleast_1d(targets)
    rows = []
    for t in targets:
        ratio = np.full((n_ex, qa.shape[2]), np.nan)
        for n in range(n_ex):
            refs = [m for m in range(n_models) if m != t]
            if references == "balanced":
                p = balanced_partner(k, t, n)
                refs = [m for m in refs if m != p]
            if offline:
                refs = [m for m in refs if not k[m, n]]
                if not refs:
                    continue
                pr = 0.5 * ((1 + a) * qa[refs, n].mean(0) + (1 - a))
            else:
                if not refs:  # two models, balanced: none left, the ratio stays NaN
                    continue
                pr = qa[refs, n].mean(0)
            # every reference at probability 0 (underflow): +inf where the target is
            # not, 1 where it is too
            ratio[n] = np.where(pr == 0, np.where(qa[t, n] > 0, np.inf, 1.0),
                                qa[t, n] / np.where(pr == 0, 1.0, pr))
        score = np.zeros(n_ex)
        for r in range(qa.shape[2]):
            if pq is None:
                pop_idx = np.flatnonzero(~k[t] & ~np.isnan(ratio[:, r]))
                pop = ratio[pop_idx, r]
                where = {z: i for i, z in enumerate(pop_idx)}
                self_index = [where.get(n, -1) for n in range(n_ex)]
            else:
                others = [m for m in range(n_models) if m != t]
                ppr = pq[others, :, r].mean(0)
                if offline:
                    ppr = 0.5 * ((1 + a) * ppr + (1 - a))
                pop = np.where(ppr == 0, np.where(pq[t, :, r] > 0, np.inf, 1.0),
                               pq[t, :, r] / np.where(ppr == 0, 1.0, ppr))
                self_index = [-1] * n_ex
            score += rmia_dense_share(ratio[:, r], pop, self_index, gamma)
        score /= qa.shape[2]
        score[np.isnan(ratio).any(1)] = np.nan
        rows.append(score)
    return np.stack(rows)


def knn_sq(queries, reference, k, exclude_self=False):
    """Exact k nearest squared Euclidean distances, float64, by a dense matrix: sorted
    ascending, the lower reference index first on ties."""
    q = np.asarray(queries, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    d2 = ((q[:, None, :] - r[None, :, :]) ** 2).sum(-1)
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(r.shape[0]), d2.shape), d2), axis=-1)
    idx = order[:, :k]
    return np.take_along_axis(d2, idx, axis=1), idx


def ranked_roc(scores, members, clusters=None):
    """The ROC points of one ranking, the running cluster sums behind every point's
    cluster-robust variance, and the clustered AUC standard error, by numpy sorts and
    bincounts: (thresholds, tp, fp, var_tpr, var_fpr, auc_se)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(members, dtype=bool).ravel()
    c = np.arange(s.size) if clusters is None else np.asarray(clusters).ravel()
    order = np.argsort(-s, kind="stable")
    s, y, c = s[order], y[order], c[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tp = np.r_[0, np.cumsum(y)[last]]
    fp = np.r_[0, (last + 1) - tp[1:]]
    thr = np.r_[np.inf, s[last]]
    n_clusters = int(c.max()) + 1
    var = []
    for cls, k in ((True, tp), (False, fp)):
        sel = y == cls
        n_c = np.bincount(c[sel], minlength=n_clusters).astype(np.float64)
        total = n_c.sum()
        # k_c^2 and k_c n_c summed over clusters after each element, by brute force
        kc = np.zeros(n_clusters)
        s2, skn = np.zeros(s.size), np.zeros(s.size)
        acc2 = acck = 0.0
        for i in range(s.size):
            if sel[i]:
                acc2 += 2 * kc[c[i]] + 1
                acck += n_c[c[i]]
                kc[c[i]] += 1
            s2[i], skn[i] = acc2, acck
        s2, skn = np.r_[0.0, s2[last]], np.r_[0.0, skn[last]]
        p = k / total
        ssq = np.maximum(s2 - 2 * p * skn + p * p * (n_c ** 2).sum(), 0.0)
        used = int((n_c > 0).sum())
        var.append(used / (used - 1) * ssq / total ** 2 if used > 1 else np.zeros_like(ssq))
    se = auc_se_clustered(s, y, c)[1] if np.unique(c).size > 1 else np.nan  # one cluster
    return thr, tp, fp, var[0], var[1], se


# --------------------------------------------------------------------------- DP-SGD RDP
def sampled_gaussian_rdp(q: float, sigma: float, alpha: int) -> float:
    """RDP at integer order ``alpha >= 2`` of one Poisson-sampled Gaussian mechanism
    (sampling rate ``q``, noise multiplier ``sigma``; Mironov, Talwar and Zhang 2019):
    ``log(sum_k C(alpha, k) (1 - q)^(alpha - k) q^k exp((k^2 - k) / (2 sigma^2))) /
    (alpha - 1)``, the closed binomial sum, summed in log space."""
    k = np.arange(alpha + 1, dtype=np.float64)
    log_binom = special.gammaln(alpha + 1) - special.gammaln(k + 1) - special.gammaln(
        alpha - k + 1)
    terms = (log_binom + (alpha - k) * np.log1p(-q) + k * np.log(q)
             + (k * k - k) / (2.0 * sigma * sigma))
    return float(special.logsumexp(terms) / (alpha - 1))


def rdp_epsilon(orders, rdp, delta: float) -> tuple[float, float]:
    """(epsilon, order) from RDP values at ``orders`` (each ``> 1``) by the conversion
    ``eps(a) = rdp(a) + log((a - 1) / a) - (log(delta) + log(a)) / (a - 1)`` (Balle et al.
    2020, Theorem 21), minimized over the orders."""
    a = np.asarray(orders, dtype=np.float64)
    eps = np.asarray(rdp, dtype=np.float64) + np.log((a - 1) / a) - (
        np.log(delta) + np.log(a)) / (a - 1)
    i = int(np.argmin(eps))
    return max(float(eps[i]), 0.0), float(a[i])
