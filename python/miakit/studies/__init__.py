"""The studies: experiments built on the primitives, each behind a ``miakit`` command.

============== ======================= ================================================
module         command                 question
============== ======================= ================================================
budget         ``miakit budget``       how many shadow models an attack needs, by
                                       memorization, Hellinger distance and planted
                                       records (and the memorization-aware attack)
sweep          ``miakit sweep``        vulnerability against shots and classes: the
                                       shots/classes power law
ks_leakage     ``miakit leakage``      did the test set leak into training? the
                                       Kolmogorov-Smirnov experiment
generative     ``miakit generative``   membership risk of generative models and of
                                       synthetic data (MACE, DOMIAS)
dp_curvature   ``miakit dp-curvature`` memorization and input curvature of DP-SGD heads
                                       against epsilon
capacity       ``miakit capacity``     explicit memorization capacity: in/out
                                       discriminators against the set size n
partial_layers ``miakit                membership inference on a network truncated after
               partial-layers``        a block, its head retrained on public data
============== ======================= ================================================

Every study has the same shape: a frozen ``Config`` dataclass whose fields declare each
option once (default, allowed values, help: :mod:`miakit._params`, read by the command
line and the docs too); ``run(<data>, config=None, *, out_dir=None, progress=None,
**overrides)``, where arrays are positional and the options live in the config (keywords
override its fields); and a result (:class:`~miakit.studies._result.StudyResult`) that
reads as the report's mapping, with ``summary()`` (what the command prints),
``plot(path)``, ``write(out_dir)``, ``to_dict()`` and ``from_json(path)``.

Examples
--------
>>> from miakit.studies import dp_curvature
>>> dp_curvature.DpCurvatureConfig().models
32
"""

from miakit.studies import (
    budget,
    capacity,
    dp_curvature,
    generative,
    ks_leakage,
    partial_layers,
    sweep,
)
from miakit.studies._result import StudyResult

__all__ = ["budget", "sweep", "ks_leakage", "generative", "dp_curvature", "capacity",
           "partial_layers", "StudyResult"]
