"""The generative models of ``miakit generative``: Gaussian mixtures of any capacity and a
small VAE, each fitted on training records and sampled (see
:mod:`miakit.studies.generative`).
"""

from __future__ import annotations

import numpy as np

from miakit._validation import (
    check_choice,
    check_int,
    check_records,
    check_seed,
    sklearn_random_state,
)

__all__ = ["parse_gmm", "fit_gmm", "fit_vae", "DEFAULT_GMMS", "DEFAULT_VAE_EPOCHS",
           "COVARIANCES"]

DEFAULT_GMMS = ("1:diag", "5:diag", "20:diag", "80:diag", "300:diag", "n:diag")
DEFAULT_VAE_EPOCHS = 60
COVARIANCES = ("full", "diag", "spherical", "tied")


def parse_gmm(spec: str, n_train: int) -> tuple[int, str]:
    """A Gaussian-mixture spec ``"K"`` or ``"K:covariance"`` as (components, covariance).

    ``K`` may be ``n``: as many components as training records (the model then stores
    the records, one tiny Gaussian on each). The covariance defaults to ``full``.

    Examples
    --------
    >>> from miakit.studies.generators import parse_gmm
    >>> parse_gmm("20", 900), parse_gmm("n:diag", 900)
    ((20, 'full'), (900, 'diag'))
    """
    n_train = check_int(n_train, "n_train", 1)
    k_str, _, cov = str(spec).partition(":")
    cov = cov or "full"
    if cov not in COVARIANCES:
        raise ValueError(f"gmms: expected a covariance in {list(COVARIANCES)} after ':', got "
                         f"{spec!r}")
    try:
        k = n_train if k_str == "n" else int(k_str)
    except ValueError as exc:
        raise ValueError(f"gmms: expected 'K' or 'K:covariance' with K an int or 'n', got "
                         f"{spec!r}") from exc
    if not 1 <= k <= n_train:
        raise ValueError(f"gmms: expected 1 <= K <= {n_train} (the training records), got "
                         f"{spec!r}")
    return k, cov


def _gmm_parameters(k: int, d: int, cov: str) -> int:
    per = {"full": k * d * (d + 1) // 2, "diag": k * d, "spherical": k,
           "tied": d * (d + 1) // 2}[cov]
    return k * d + per + k - 1


def fit_gmm(train: np.ndarray, k: int, cov: str, n_samples: int, seed: int
            ) -> tuple[np.ndarray, int]:
    """Fit a Gaussian mixture (k-means initialisation, scikit-learn defaults otherwise)
    and draw ``n_samples`` records in random order; returns (samples, parameters).

    Examples
    --------
    >>> import numpy as np
    >>> from miakit.studies.generators import fit_gmm
    >>> x = np.random.default_rng(0).normal(size=(50, 3))
    >>> samples, n_parameters = fit_gmm(x, 2, "diag", 40, seed=0)
    >>> samples.shape, n_parameters
    ((40, 3), 13)
    """
    from sklearn.mixture import GaussianMixture

    train = check_records(train, "train")
    n, d = train.shape
    k = check_int(k, "k", 1, n, what=f"1 <= k <= {n} (the training records)")
    check_choice(cov, "cov", COVARIANCES)
    n_samples = check_int(n_samples, "n_samples", 1)
    if n_samples * d > 2**31:
        raise ValueError(f"n_samples: {n_samples} samples of {d} values are more than 2**31 "
                         "values")
    seed = check_seed(seed)
    try:
        g = GaussianMixture(n_components=k, covariance_type=cov,
                            random_state=sklearn_random_state(seed),
                            max_iter=100).fit(train)
        x, _ = g.sample(n_samples)  # grouped by component: shuffle
    except ValueError as exc:  # values whose moments overflow: NaN weights or covariances
        raise ValueError(f"train: cannot fit a {k}-component Gaussian mixture to these "
                         f"records ({exc})") from None
    x = x[np.random.default_rng([seed, 3]).permutation(n_samples)]
    return x, _gmm_parameters(k, d, cov)


def fit_vae(train: np.ndarray, n_samples: int, seed: int, epochs: int = DEFAULT_VAE_EPOCHS,
            latent: int = 8, hidden: int = 128) -> tuple[np.ndarray, int]:
    """A small VAE (D-hidden-hidden-latent, mirrored decoder with sigmoid outputs,
    Bernoulli likelihood on pixels in [0, 1]) trained with Adam (lr 1e-3, minibatches of
    64) on the CPU, in one thread (faster for so small a network than several); samples
    are decoder means at ``z ~ N(0, I)``. Returns (samples, parameters).

    Examples
    --------
    >>> import numpy as np
    >>> from miakit.studies.generators import fit_vae
    >>> x = np.random.default_rng(0).uniform(size=(30, 4))
    >>> samples, n_parameters = fit_vae(x, 10, seed=0, epochs=1, latent=2, hidden=8)
    >>> samples.shape, bool(0 <= samples.min() <= samples.max() <= 1)
    ((10, 4), True)
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_vae(train, n_samples, seed, epochs, latent, hidden)
    finally:
        torch.set_num_threads(threads)


def _fit_vae(train: np.ndarray, n_samples: int, seed: int, epochs: int, latent: int,
             hidden: int) -> tuple[np.ndarray, int]:
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    d = train.shape[1]
    enc = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                        nn.ReLU(), nn.Linear(hidden, 2 * latent))
    dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                        nn.ReLU(), nn.Linear(hidden, d))
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    x = torch.as_tensor(np.clip(train, 0.0, 1.0), dtype=torch.float32)
    n = x.shape[0]
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(64):
            xb = x[idx]
            mu, logvar = enc(xb).chunk(2, dim=1)
            z = mu + torch.randn(mu.shape, generator=g) * (0.5 * logvar).exp()
            rec = nn.functional.binary_cross_entropy_with_logits(dec(z), xb,
                                                                 reduction="sum")
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = (rec + kl) / xb.shape[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        samples = torch.sigmoid(dec(torch.randn((n_samples, latent), generator=g)))
    return samples.double().numpy(), int(sum(p.numel() for p in params))
