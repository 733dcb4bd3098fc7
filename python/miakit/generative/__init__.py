"""Membership risk of generative models (MACE, Xu et al.; docs/methods/generative.md).

A generative model trained on private records releases synthetic records. A *query*
maps each record to a scalar or a vector: the distance to the closest synthetic record
(:func:`dcr_query`), a discriminator score, a reconstruction loss, any function
(:func:`apply_query`). With the query on the training records and on hold-out records
of the same population:

- :func:`membership_advantage`: the optimal membership advantage, the total-variation
  distance between the two query distributions (it does not depend on how many members
  and non-members there are). Scalar queries: the Kolmogorov-Smirnov statistic (the best
  threshold's advantage), its threshold and direction, and a two-sample DKW interval;
  vector queries: a cross-fitted classifier two-sample estimate ``2 acc - 1`` on balanced
  folds with a Clopper-Pearson interval.
- :func:`individual_risk`: ``P(member | q) = pi f_in(q) / (pi f_in(q) + (1 - pi) f_out(q))``
  per record for any member prior ``pi``, the density ratio from kernel density
  estimates or a classifier; :func:`risk_attack` scores every training and hold-out
  record with cross-fitted risks and reports the attack's TPR at low FPR.
- :func:`domias_scores`: the density-ratio attack of DOMIAS (van Breugel et al. 2023),
  ``log p_synthetic(x) - log p_reference(x)``; :func:`attack_power` measures any attack's
  scores (AUC, TPR at low FPR with intervals).

The study behind ``miakit generative`` is :mod:`miakit.studies.generative`.

Every name is importable from ``miakit.generative``; each lives in one module:
``queries`` (:func:`dcr_query`, :func:`apply_query`), ``advantage``
(:func:`membership_advantage`, :func:`min_records`), ``risk`` (:func:`individual_risk`,
:func:`risk_attack`) and ``attacks`` (:func:`attack_power`, :func:`domias_scores`).
``advantage``, ``risk`` and ``attacks`` use ``_estimators`` (the query checks, the
classifiers, the kernel density estimate) and ``risk`` uses ``attacks``: no other
imports run between them.
"""

from miakit.generative._estimators import CLASSIFIERS
from miakit.generative.advantage import MembershipAdvantage, membership_advantage, min_records
from miakit.generative.attacks import AttackPower, attack_power, domias_scores
from miakit.generative.queries import apply_query, dcr_query
from miakit.generative.risk import RiskAttack, individual_risk, risk_attack
from miakit.neighbors import closest_distances

__all__ = ["closest_distances", "dcr_query", "apply_query", "min_records",
           "membership_advantage", "MembershipAdvantage", "individual_risk",
           "risk_attack", "RiskAttack", "attack_power", "AttackPower", "domias_scores",
           "CLASSIFIERS"]
