"""The fuzzer's table: every public callable of miakit, with a valid baseline call and the
kind of each argument (tests/_fuzz_core.py mutates one argument at a time), or a reason
why it is not called here (:data:`NOT_FUZZED`).

A case's name is the callable's public name (its first appearance in ``miakit.__all__``
or a public submodule's ``__all__``); methods are ``Class.method``, and a second baseline
of the same callable is ``name#variant``. tests/test_fuzz.py checks that every public
callable is in the table or in :data:`NOT_FUZZED`, so a new public function cannot escape.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import pathlib
import pkgutil
import sys
from typing import Any

import numpy as np
from _fuzz_core import Arg, Case, Lazy

import miakit as mk

# Public callables that are not called by the library fuzzer, and why.
NOT_FUZZED: dict[str, str] = {
    # commands: the CLI fuzz (tests/_fuzz_cli.py) runs ~200 bad command lines through them
    "miakit.cli.main": "the entry point: covered by the CLI fuzz",
    "miakit.cli.audit.add_parser": "argparse wiring: every CLI fuzz line goes through it",
    "miakit.cli.shadow.add_parser": "argparse wiring: every CLI fuzz line goes through it",
    "miakit.cli.studies.add_parser": "argparse wiring: every CLI fuzz line goes through it",
    # training loops: their options are fuzzed through their Config (validated before any
    # training) and their commands' bad command lines
    "miakit.shadow.train_models": "trains torch models: covered by the CLI fuzz (shadow "
                                  "--model) and ModelRunConfig",
    "miakit.shadow.train_default": "trains a run: TrainingConfig and the CLI fuzz (shadow)",
    "miakit.shadow.train_model_run": "trains torch models: ModelRunConfig and the CLI fuzz",
    "miakit.shadow.train.default_train": "the torch training loop of train_models: covered "
                                         "by the CLI fuzz (shadow --model)",
    "miakit.partial_layers.partial_layers": "trains a network's heads (seconds a call): "
                                            "PartialLayersConfig and the CLI fuzz",
    "miakit.partial_layers.frozen_features": "runs a torch module: covered with "
                                             "partial_layers by the CLI fuzz",
    "miakit.studies.capacity.run": "trains networks: CapacityConfig and the CLI fuzz",
    "miakit.studies.capacity.capacity": "trains networks: CapacityConfig and the CLI fuzz",
    "miakit.studies.dp_curvature.run": "trains DP heads: DpCurvatureConfig and the CLI fuzz",
    "miakit.studies.dp_curvature.dp_curvature": "trains DP heads: DpCurvatureConfig and "
                                                "the CLI fuzz",
    "miakit.studies.ks_leakage.run": "trains heads per seed: KsLeakageConfig and the CLI fuzz",
    "miakit.studies.ks_leakage.leakage_experiment": "trains heads per seed: KsLeakageConfig "
                                                    "and the CLI fuzz",
    "miakit.studies.partial_layers.run": "trains networks: PartialLayersConfig and the CLI fuzz",
    "miakit.studies.sweep.run": "trains shadow heads per cell: SweepConfig and the CLI fuzz",
    "miakit.studies.sweep.sweep": "trains shadow heads per cell: SweepConfig and the CLI fuzz",
    "miakit.studies.generative.fit_vae": "trains a VAE: GenerativeConfig and the CLI fuzz",
    "miakit.studies.StudyResult": "the abstract base of the studies' results: from_json "
                                  "is fuzzed on each study's result class",
    # exceptions and result records: built by the library, not by users
    "miakit.shadow.RunMismatchError": "an exception class",
    "miakit.shadow.IncompleteRunError": "an exception class",
    "miakit.shadow.CorruptModelError": "an exception class",
    "miakit.shadow.CorruptModelWarning": "a warning class",
    "miakit.shadow.RunLockedError": "an exception class",
    "miakit.shadow.RunWriteError": "an exception class",
}

# Calls the fuzzer found failing, now fixed: every run makes them, whatever the budget
# picks. (case, argument, mutation label of tests/_fuzz_core.py)
PINNED: list[tuple[str, str, str]] = [
    # audit: each was accepted, gave NaN or an error naming another argument (or none)
    ("miakit.audit.audit", "extra", "list"),
    ("miakit.audit.audit", "level", "1e-300"),
    ("miakit.audit.audit", "out_dir", "int"),
    ("miakit.audit.audit_target", "out_dir", "int"),
    ("miakit.audit.audit_target", "target_logits", "torch bfloat16"),
    ("miakit.audit.baselines", "keep", "NaN"),
    ("miakit.audit.baselines", "labels", "None"),
    ("miakit.audit.baselines", "logits", "empty"),
    ("miakit.audit.curvature_attack", "curvature", "empty"),
    ("miakit.audit.curvature_attack", "keep", "value 0.5"),
    ("miakit.audit.evaluate", "attacks", "str"),
    ("miakit.audit.evaluate", "dp_delta", "complex"),
    ("miakit.audit.evaluate", "fprs", "'0.1'"),
    ("miakit.audit.evaluate", "keep", "str"),
    ("miakit.audit.evaluate", "level", "1e-300"),
    ("miakit.audit.head_matrices", "features", "torch conj"),
    ("miakit.audit.head_quantities", "features", "torch bfloat16"),
    ("miakit.audit.head_quantities", "params", "None"),
    ("miakit.audit.iter_attacks", "variance", "int"),
    ("miakit.audit.load_report", "path", "garbage"),
    ("miakit.audit.plot_roc", "path", "int"),
    ("miakit.audit.plot_roc", "title", "int"),
    ("miakit.audit.privacy_summary", "dp_delta", "NaN"),
    ("miakit.audit.privacy_summary", "dp_epsilon", "-1"),
    ("miakit.audit.privacy_summary", "results", "list"),
    ("miakit.audit.references_info", "keep", "None"),
    ("miakit.audit.references_info", "references", "empty string"),
    ("miakit.audit.run_attacks", "keep", "all True"),
    ("miakit.audit.run_attacks", "logits", "empty"),
    ("miakit.audit.strongest", "results", "str"),
    ("miakit.audit.strongest", "verdict", "str"),
    ("miakit.audit.summarize", "report", "None"),
    ("miakit.audit.summary_sections", "report", "None"),
    ("miakit.audit.target.target_scores", "attacks", "None"),
    ("miakit.audit.target.target_scores", "labels", "list"),
    ("miakit.audit.target.target_scores", "ref_keep", "shorter"),
    ("miakit.audit.target.target_scores", "ref_logits", "None"),
    ("miakit.audit.target.target_scores", "target_keep", "list"),
    ("miakit.audit.target.target_scores", "target_logits", "bool"),
    ("miakit.audit.target.target_scores", "target_logits", "NaN"),  # named lira's logits
    ("miakit.audit.target.target_scores", "target_logits", "+inf"),
    ("miakit.audit.target.target_scores", "ref_logits", "NaN"),
    ("miakit.audit.target.target_scores", "ref_logits", "-inf"),
    ("miakit.audit.target.target_scores", "ref_keep", "all True"),  # was all-NaN scores
    # one scale for every example squared the others' deviations to 0 (clamped spreads);
    # now refused by name
    ("miakit.audit.vulnerability", "logits", "huge 1e300"),
    ("miakit.lira.fit", "shadow_scores", "huge 1e300"),
    ("miakit.lira.leave_one_out", "shadow_scores", "huge 1e300"),
    ("miakit.audit.target.target_scores", "target_logits", "huge 1e300"),
    ("miakit.audit.target.target_scores", "ref_logits", "huge 1e300"),
    ("miakit.audit.audit_target", "target_logits", "huge 1e300"),
    ("miakit.audit.curvature_attack", "curvature", "huge 1e300"),
    ("miakit.studies.budget.run", "logits", "huge 1e300"),
    ("miakit.studies.budget.shadow_budget", "logits", "huge 1e300"),
    ("miakit.audit.to_html", "report", "{}"),
    ("miakit.audit.verdict", "alpha", "True"),
    ("miakit.audit.verdict", "results", "list"),
    ("miakit.audit.vulnerability", "keep", "all True"),
    ("miakit.audit.vulnerability", "labels", "object()"),
    ("miakit.audit.vulnerability", "lira_scores", "bool"),
    ("miakit.audit.vulnerability", "logits", "object()"),
    ("miakit.audit.write_html", "path", "int"),
    ("miakit.audit.write_html", "report", "None"),
    ("miakit.audit.curvature_attack", "curvature", "NaN"),  # named "shadow_scores"
    ("miakit.audit.load_report", "path", "None"),  # a TypeError naming nothing
    ("miakit.audit.baselines", "keep", "all True"),  # named "members"
    ("miakit.audit.evaluate", "keep", "all False"),  # named "members"
    ("miakit.thresholds.max_confidence", "logits", "None"),  # was an IndexError
    ("miakit.thresholds.calibrated", "ref_keep", "all True"),  # was all NaN
    ("miakit.thresholds.calibrated_leave_one_out", "keep", "all True"),  # was all NaN
    ("miakit.ks.ks_2samp", "axis", "2**40"),  # was an OverflowError
    ("miakit.ks.ks_2samp", "axis", "2.5"),
    ("miakit.ks.ks_2samp", "a", "0-d"),  # numpy's AxisError
    ("miakit.ks.leakage_test", "validation_conf", "NaN"),  # named "a"
    ("miakit.ks.source_accuracy", "sizes", "float 0.5"),  # was accepted
    ("miakit.ks.source_accuracy", "n_trials", "2**40"),  # an unnamed MemoryError
    ("miakit.ks.source_accuracy", "source_a", "empty"),  # named "sizes"
    ("miakit.exposure.membership_pvalues", "records", "strings"),  # was accepted
    ("miakit.exposure.membership_pvalues", "records", "float 0.5"),  # was accepted
    ("miakit.generative.dcr_query", "records", "huge 1e300"),  # named "queries/reference"
    ("miakit.generative.apply_query", "records", "None"),
    ("miakit.generative.apply_query", "records", "0-d"),  # a TypeError naming nothing
    ("miakit.generative.membership_advantage", "folds", "-1"),  # was accepted
    ("miakit.generative.individual_risk", "q", "huge 1e300"),  # was a NaN risk
    ("miakit.generative.individual_risk", "q_train", "huge 1e300"),  # scipy's message
    ("miakit.generative.risk_attack", "q_holdout", "huge 1e300"),
    ("miakit.memorization.feldman_zhang", "correct", "big-endian"),  # read as garbage
    ("miakit.memorization.influence", "correct_test", "big-endian"),  # read as garbage
    ("miakit.gradients.ghost_norms", "activations", "big-endian"),  # read as garbage
    ("miakit.gradients.mlp_head_norms", "weight1", "huge 1e300"),  # was NaN
    ("miakit.curvature.head_trace", "weight", "huge 1e300"),  # was NaN
    ("miakit.curvature.mlp_head_trace", "weight2", "huge 1e300"),  # was NaN
    ("miakit.curvature.probe_quadratic", "hvp", "big-endian"),  # read as garbage
    ("miakit.curvature.probe_differences", "grad0", "big-endian"),  # read as garbage
    ("miakit.curvature.probe_quadratic", "probes", "0-d"),  # was an IndexError
    ("miakit.curvature.probes", "n_probes", "2**40"),  # an unnamed MemoryError
    ("miakit.curvature.probes", "example_ids", "empty"),  # the kernel refused
    ("miakit.curvature.probes", "first_probe", "2**70"),  # pybind's TypeError
    ("miakit.curvature.hutchinson_trace", "example_ids", "object()"),  # a RuntimeError
    ("miakit.curvature.zero_order", "n_probes", "2**40"),  # torch's RuntimeError
    ("miakit.curvature.probe_differences", "grad0", "huge 1e300"),  # named "grads"
    ("miakit.gradients.per_example_norms", "x", "torch bfloat16"),  # torch's RuntimeError
    # differences in bfloat16 kept no digit (0.39 for 0.60); compared since their float64
    # reference is a tensor too
    ("miakit.curvature.zero_order", "x", "torch bfloat16"),
    ("miakit.curvature.finite_difference", "x", "torch bfloat16"),
    ("miakit.curvature.hutchinson_trace", "x", "torch bfloat16"),
    ("miakit.partial_layers.attack_logits", "members", "value 2"),  # was accepted
    ("miakit.partial_layers.attack_logits", "public_accuracy", "95"),  # was accepted
    ("miakit.partial_layers.attack_logits", "logits", "huge 1e300"),  # named "losses"
    ("miakit.partial_layers.train_head", "labels", "-1"),  # torch's IndexError
    ("miakit.partial_layers.train_head", "features", "object()"),  # a RuntimeError
    ("miakit.partial_layers.train_head", "n_classes", "2**40"),  # torch's RuntimeError
    ("miakit.datasets.synthetic", "separation", "NaN"),  # was NaN features
    ("miakit.datasets.synthetic", "dim", "2**40"),  # an unnamed MemoryError
    ("miakit.datasets.load", "name", "unknown"),  # named "dataset"
    ("miakit.studies.generative.fit_gmm", "k", "2.5"),  # scikit-learn's message
    ("miakit.studies.generative.fit_gmm", "train", "huge 1e300"),
    ("miakit.studies.generative.fit_gmm", "n_samples", "2**40"),
    ("miakit.studies.generative.parse_gmm", "n_train", "2.5"),
    ("miakit.studies.generative.audit_synthetic", "pca", "2.5"),  # was accepted
    ("miakit.studies.generative.audit_synthetic", "holdout", "huge 1e300"),
    ("miakit.studies.budget.BudgetResult.from_json", "path", "a JSON list"),  # a bad result
    ("miakit.studies.sweep.SweepResult.from_json", "path", "truncated"),  # JSONDecodeError
    ("miakit.cli.studies.count_or_share", "value", "None"),  # an AttributeError
    ("miakit.shadow.model_run.load_data", "data", "0 bytes"),  # an EOFError
    ("miakit.shadow.model_run.load_data", "data", "None"),  # Path's TypeError
    ("miakit.shadow.model_run.load_spec", "spec", "None"),  # an AttributeError
    ("miakit.studies.capacity.CapacityConfig", "n", "2-D"),  # numpy's index TypeError
    ("miakit.studies.capacity.CapacityConfig", "widths", "2-D"),
    ("miakit.studies.ks_leakage.KsLeakageConfig", "shots", "2-D"),
    ("miakit.studies.sweep.SweepConfig", "classes", "2-D"),
    ("miakit.studies.sweep.SweepConfig", "shots", "2-D"),
    ("miakit.bounds.dpsgd_noise", "delta", "0"),  # dp-accounting's bracketing error
    ("miakit.bounds.dpsgd_noise", "sample_rate", "1e-300"),  # dp-accounting's bracketing
    ("miakit.generative.AttackPower.at", "fpr", "NaN"),  # a KeyError
    ("miakit.generative.domias_scores", "records", "huge 1e300"),  # a NaN score
    ("miakit.powerlaw.fit", "shots", "float 0.5"),  # was accepted
    ("miakit.powerlaw.fit", "classes", "float 0.5"),  # was accepted
    ("miakit.studies.sweep.cell_examples", "labels", "strings"),  # was accepted
    ("miakit.studies.sweep.cell_examples", "n_classes", "True"),  # named nothing
    ("miakit.studies.sweep.cell_examples", "seed", "-1"),  # numpy's message
    ("miakit.studies.sweep.cell_examples", "shots", "-1"),  # numpy's message
    ("miakit.vulnerability.VulnerabilityTable.to_csv", "path", "int"),  # Path's TypeError
    ("miakit.vulnerability.VulnerabilityTable.to_dict", "top_k", "-1"),  # was accepted
    ("miakit.vulnerability.VulnerabilityTable.top", "by", "list"),  # unhashable
    ("miakit.vulnerability.VulnerabilityTable.top", "k", "None"),  # was accepted
    ("miakit.vulnerability.plot_vulnerability", "against", "list"),  # unhashable
    ("miakit.vulnerability.save_plots", "against", "[3]"),  # was accepted
    ("miakit.vulnerability.save_plots", "against", "None"),  # not iterable
    ("miakit.vulnerability.save_plots", "fmt", "int"),  # matplotlib's message
    ("miakit.vulnerability.save_plots", "outdir", "int"),  # Path's TypeError
    ("miakit.vulnerability.vulnerability_table", "error", "-0.5"),  # was accepted
    ("miakit.vulnerability.vulnerability_table", "fpr", "'0.5'"),  # was accepted
    ("miakit.vulnerability.vulnerability_table", "grad_norms", "complex"),  # "grad_norm"
    ("miakit.vulnerability.vulnerability_table", "lira_scores", "extra dim"),
    ("miakit.vulnerability.vulnerability_table", "lira_scores", "strings"),  # was accepted
    ("miakit.shadow.Run.model_logits", "m", "True"),  # was accepted
    ("miakit.shadow.Run.model_path", "m", "'3'"),  # not named
    ("miakit.shadow.heads.batch_rows", "batch_size", "-1"),  # not named
    ("miakit.shadow.heads.batch_rows", "model", "-1"),  # not named
    ("miakit.shadow.heads.batch_rows", "n_steps", "'3'"),  # not named
    ("miakit.shadow.heads.batch_rows", "seed", "-1"),  # not named
    ("miakit.shadow.heads.batch_rows", "train_rows", "str"),  # not named
    ("miakit.shadow.heads.initial_params", "head", "None"),  # was accepted
    ("miakit.shadow.heads.initial_params", "hidden", "2**70"),  # not named
    ("miakit.shadow.heads.initial_params", "model", "True"),  # was accepted
    ("miakit.shadow.heads.initial_params", "n_classes", "None"),  # not named
    ("miakit.shadow.heads.initial_params", "n_features", "None"),  # not named
    ("miakit.shadow.heads.initial_params", "seed", "NaN"),  # not named
    ("miakit.shadow.heads.minibatch_plan", "batch_size", "float whole"),  # was accepted
    ("miakit.shadow.heads.minibatch_plan", "epochs", "'3'"),  # not named
    ("miakit.shadow.heads.minibatch_plan", "rows_per_head", "torch int64"),  # torch's RuntimeError
    ("miakit.studies.budget.BudgetConfig", "budgets", "2-D"),  # not named
    ("miakit.studies.budget.memorization_aware", "budgets", "object()"),  # not named
    ("miakit.studies.budget.memorization_aware", "draws", "2**40"),  # not named
    ("miakit.studies.budget.memorization_aware", "keep", "empty"),  # not named
    ("miakit.studies.budget.memorization_aware", "labels", "str"),  # was an IndexError
    ("miakit.studies.budget.memorization_aware", "logits", "torch bfloat16"),  # not named
    ("miakit.studies.budget.planted_mask", "n", "True"),  # not named
    ("miakit.studies.budget.run", "budgets", "2-D"),  # not named
    ("miakit.studies.budget.run", "draws", "2**40"),  # was a hang
    ("miakit.studies.budget.run", "keep", "empty"),  # not named
    ("miakit.studies.budget.run", "labels", "object()"),  # was an IndexError
    ("miakit.studies.budget.run", "logits", "empty"),  # not named
    ("miakit.studies.budget.shadow_budget", "budgets", "2-D"),  # not named
    ("miakit.studies.budget.shadow_budget", "draws", "2**40"),  # was a hang
    ("miakit.studies.budget.shadow_budget", "keep", "empty"),  # not named
    ("miakit.studies.budget.shadow_budget", "labels", "None"),  # was an IndexError
    ("miakit.studies.budget.shadow_budget", "logits", "empty"),  # not named
    ("miakit.shadow.balanced_keep", "strata", "-1"),  # a valid group id (see the case)
    ("miakit.shadow.create_run", "config", "str"),  # was accepted
    ("miakit.shadow.create_run", "data_digest", "int"),  # was accepted
    ("miakit.shadow.create_run", "metadata", "list"),  # was accepted
    ("miakit.shadow.create_run", "n_classes", "-1"),  # not named
    ("miakit.shadow.create_run", "path", "int"),  # not named
    ("miakit.shadow.import_folder", "folder", "int"),  # not named
    ("miakit.shadow.import_folder", "n_classes", "below minimum"),  # was accepted
    ("miakit.shadow.import_folder", "out", "int"),  # not named
    ("miakit.shadow.import_lira_reference", "logdir", "None"),  # not named
    ("miakit.shadow.import_lira_reference", "out", "int"),  # not named
    ("miakit.shadow.import_logits", "metadata", "list"),  # not named
    ("miakit.shadow.import_logits", "n_classes", "'3'"),  # was accepted
    ("miakit.shadow.import_logits", "out", "int"),  # not named
    ("miakit.shadow.import_signals", "metadata", "list"),  # not named
    ("miakit.shadow.import_signals", "out", "int"),  # not named
    ("miakit.shadow.is_paired", "keep", "value 2"),  # was accepted
    ("miakit.shadow.open_run", "path", "int"),  # not named
    ("miakit.shadow.train_heads", "labels", "2**40"),  # not named
    ("miakit.shadow.train_heads", "n_classes", "2**70"),  # not named
    ("miakit.metrics.RankWorkspace.buffers", "n", "-1"),  # numpy's negative dimensions
    ("miakit.metrics.RankWorkspace.buffers", "n", "2**70"),  # numpy's maximum dimension
    ("miakit.metrics.RankedScores.by_columns", "scores", "str"),  # numpy's conversion error
    ("miakit.metrics.RankedScores.cluster_variances", "points", "float 0.5"),  # was accepted
    ("miakit.metrics.RankedScores.cluster_variances", "points", "empty"),  # the kernel refused
    ("miakit.metrics.clopper_pearson", "k", "'3'"),  # a comparison's TypeError
    ("miakit.metrics.clopper_pearson", "n", "'3'"),
    ("miakit.metrics.clopper_pearson", "level", "95"),  # was accepted, a NaN bound
    ("miakit.metrics.clustered_proportion_ci", "k", "str"),  # numpy's conversion error
    ("miakit.metrics.clustered_proportion_ci", "n", "object()"),
    ("miakit.metrics.clustered_proportion_ci", "level", "1e-300"),  # was a NaN interval
    ("miakit.metrics.effective_dof", "n_clusters", "below minimum"),  # was accepted
    ("miakit.metrics.effective_dof", "sum_4th", "'1'"),  # was accepted
    ("miakit.metrics.effective_dof", "sum_sq", "complex"),  # float()'s TypeError
    ("miakit.metrics.korn_graubard", "hits", "torch conj"),  # torch's RuntimeError
    ("miakit.metrics.korn_graubard", "n_clusters", "True"),  # was accepted
    ("miakit.metrics.korn_graubard", "tail", "complex"),  # a comparison's TypeError
    ("miakit.metrics.korn_graubard", "total", "inf"),  # was NaN
    ("miakit.metrics.korn_graubard", "var", "str"),  # numpy's ufunc error
    ("miakit.metrics.unseen_share_floor", "hi", "'0.5'"),  # a comparison's TypeError
    ("miakit.metrics.unseen_share_floor", "lo", "inf"),  # was accepted
    ("miakit.metrics.unseen_share_floor", "n_clusters", "2.5"),  # was accepted
    ("miakit.metrics.unseen_share_floor", "p", "1.5"),  # was accepted
    ("miakit.metrics.unseen_share_floor", "tail", "-0.5"),  # was accepted
    ("miakit.lira.balanced_partners", "keep", "empty"),  # named "targets"
    ("miakit.lira.fit", "shadow_scores", "empty"),  # named "shadow data"
    ("miakit.lira.fit#logits", "shadow_scores", "torch conj"),  # named "logits"
    ("miakit.lira.leave_one_out", "shadow_scores", "empty"),  # named "shadow data"
    ("miakit.lira.shadow_models_needed", "formula", "list"),  # unhashable type
    ("miakit.rmia.tune_a", "grid", "strings"),  # was accepted
    ("miakit.rmia.tune_a", "keep", "all False"),  # named "members"
    ("miakit.rmia.tune_a", "target", "'3'"),  # named "targets"
    ("miakit.signals.compute", "names", "None"),  # not iterable
]

# Result records (dataclasses the library returns); their constructors are not an input
# path. Matched by class name: they are many and all alike.
RESULT_RECORDS = {
    "AucCI", "TprAtFpr", "ClusteredProportion", "LeakagePoint", "EmpiricalEpsilon", "GdpMu",
    "LiraFit", "ShadowModelsNeeded", "KS2Result", "LeakageTest", "MembershipPValues",
    "MembershipAdvantage", "RiskAttack", "TunedA", "BayesBaseline", "ThresholdAccuracy",
    "GradNorms", "Dataset", "PowerLawFit", "PartialLayersResult", "AuditReport",
    "AttackResult", "OperatingPoint", "Verdict", "RunInfo", "Param",
}


def public_callables() -> dict[str, Any]:
    """Every public callable: ``{public name: object}``, each object once (its first name
    in ``miakit`` then the public submodules in sorted order)."""
    modules = sorted(name for _, name, _ in pkgutil.walk_packages(mk.__path__, prefix="miakit.")
                     if name != "miakit.__main__"
                     and not any(part.startswith("_") for part in name.split(".")))
    seen: dict[tuple[str, str], str] = {}
    out: dict[str, Any] = {}
    for modname in ["miakit", *modules]:
        module = importlib.import_module(modname)
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if not callable(obj):
                continue
            key = (getattr(obj, "__module__", ""), getattr(obj, "__qualname__", attr))
            if key not in seen:
                seen[key] = f"{modname}.{attr}"
                out[f"{modname}.{attr}"] = obj
    return out


def config_classes() -> dict[str, type]:
    """The public option dataclasses (their fields declared with miakit._params.option)."""
    from miakit._params import params
    out = {}
    for name, obj in public_callables().items():
        if isinstance(obj, type) and dataclasses.is_dataclass(obj) and params(obj):
            out[name] = obj
    return out


# -- the world: small valid inputs, made once per child process -------------------------

M, N, C = 8, 12, 3  # models, examples, classes


class World:
    def __init__(self, tmp: str):
        self.tmp = pathlib.Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._n = 0
        rng = np.random.default_rng(0)
        self.keep = mk.shadow.balanced_keep(M, N, seed=0)
        self.labels = np.arange(N) % C
        logits = rng.normal(size=(M, N, C))
        logits[np.arange(M)[:, None], np.arange(N)[None], self.labels[None]] += 2.0 * self.keep
        self.logits = logits                       # [M, N, C]
        self.logits4 = logits[:, :, None, :]       # [M, N, 1, C]
        self.logits2 = logits[0]                   # [N, C]
        self.scores = rng.normal(size=(M, N)) + self.keep  # a signal [M, N]
        self.q = rng.uniform(0.2, 0.6, size=(M, N)) + 0.3 * self.keep
        self.s1 = rng.normal(size=20) + (np.arange(20) % 2 == 0)
        self.m1 = np.arange(20) % 2 == 0
        self.features = rng.normal(size=(N, 4)) + self.labels[:, None]
        self.records = rng.normal(size=(10, 3))
        self.synthetic = rng.normal(size=(16, 3))
        self.reference = rng.normal(size=(30, 3))
        self.q_train = rng.normal(0.0, 1.0, 60)
        self.q_holdout = rng.normal(0.5, 1.0, 60)

    def fresh(self, name: str = "out") -> pathlib.Path:
        """A path that does not exist yet (for a call that writes)."""
        self._n += 1
        stem, dot, suffix = name.partition(".")
        return self.tmp / f"{stem}-{self._n}{dot}{suffix}"

    @functools.cached_property
    def run_path(self) -> pathlib.Path:
        path = self.tmp / "run"
        mk.shadow.import_logits(path, self.logits4.astype(np.float32), self.keep, self.labels)
        return path

    def run(self) -> Any:
        return mk.shadow.open_run(self.run_path)

    @functools.cached_property
    def heads(self) -> list[dict[str, np.ndarray]]:
        _, info = mk.shadow.train_heads(self.features, self.labels, self.keep, epochs=5,
                                        return_info=True, progress=False)
        return [{k: v[m] for k, v in info["params"].items()} for m in range(M)]

    @functools.cached_property
    def fit(self) -> Any:
        return mk.lira.fit(self.scores[1:7], self.keep[1:7], center="mean")

    @functools.cached_property
    def table(self) -> Any:
        rng = np.random.default_rng(1)
        return mk.vulnerability.vulnerability_table(
            lira_scores=rng.random(30), memorization=rng.random(30),
            grad_norms=rng.random(30), extra={"x": rng.random(30)})

    @functools.cached_property
    def report(self) -> dict[str, Any]:
        return {"run": {"n_models": 4, "n_examples": 10, "n_augmentations": 1,
                        "n_classes": 2, "config": {"head": "linear"}, "metadata": {}},
                "models": {"train_accuracy": 1.0, "test_accuracy": 0.9},
                "evaluation": {"confidence_level": 0.95}, "attacks": {}}

    @functools.cached_property
    def evaluated(self) -> Any:
        return mk.audit.evaluate({"shifted": {"scores": self.scores}}, self.keep)

    @functools.cached_property
    def report_json(self) -> pathlib.Path:
        path = self.tmp / "report.json"
        path.write_text(json.dumps(self.report))
        return path

    @functools.cached_property
    def study_json(self) -> pathlib.Path:
        path = self.tmp / "budget.json"
        path.write_text(json.dumps({"budgets": [2], "rows": []}))
        return path

    @functools.cached_property
    def data_npz(self) -> pathlib.Path:
        rng = np.random.default_rng(2)
        path = self.tmp / "data.npz"
        np.savez(path, x=rng.normal(size=(12, 3)).astype(np.float32), y=np.arange(12) % 2)
        return path

    @functools.cached_property
    def folder(self) -> pathlib.Path:
        d = self.tmp / "folder"
        d.mkdir()
        keep = mk.shadow.balanced_keep(2, 5)
        for m in range(2):
            np.save(d / f"model-{m}.npy", np.zeros((5, 3), np.float32))
            np.save(d / f"model-{m}.keep.npy", keep[m])
        return d

    @functools.cached_property
    def lira_logdir(self) -> pathlib.Path:
        d = self.tmp / "lira"
        np_y = np.array([0, 1, 1])
        d.mkdir()
        np.save(d / "y_train.npy", np_y)
        for i, row in enumerate(mk.shadow.balanced_keep(2, 3)):
            (d / f"experiment-{i}_2" / "logits").mkdir(parents=True)
            np.save(d / f"experiment-{i}_2" / "keep.npy", row)
            np.save(d / f"experiment-{i}_2" / "logits" / "0000000100.npy",
                    np.zeros((3, 1, 2, 2), np.float32))
        return d

    @functools.cached_property
    def npy(self) -> pathlib.Path:
        path = self.tmp / "array.npy"
        np.save(path, np.arange(6.0).reshape(2, 3))
        return path


# -- helpers to declare arguments -------------------------------------------------------

def F(v, *tied, **kw):  # noqa: N802 - a float array
    return Arg(v, "floats", tied=tied, **kw)


def B(v, *tied, **kw):  # noqa: N802 - a boolean array
    return Arg(v, "bools", tied=tied, **kw)


def Y(v, *tied, **kw):  # noqa: N802 - class labels
    return Arg(v, "labels", tied=tied, **kw)


def P(v, **kw):  # noqa: N802 - a probability in (0, 1)
    return Arg(v, "prob", **kw)


def PS(v, **kw):  # noqa: N802 - probabilities
    return Arg(v, "probs", **kw)


def K(v, lo=1, **kw):  # noqa: N802 - a count
    return Arg(v, "count", lo=lo, **kw)


def S(v=0, **kw):  # noqa: N802 - a seed
    return Arg(v, "seed", **kw)


def R(v, lo=0.0, **kw):  # noqa: N802 - a real number
    return Arg(v, "real", lo=lo, **kw)


def CH(v, **kw):  # noqa: N802 - one of some names
    return Arg(v, "choice", **kw)


def O(v):  # noqa: N802,E743 - not mutated
    return Arg(v)


def _method(cls_call, method):
    def call(**kwargs):
        return getattr(cls_call(), method)(**kwargs)
    return call


def _listed(fn):
    def call(**kwargs):
        return list(fn(**kwargs))
    return call


def cases(tmp: str) -> list[Case]:
    """The table (arguments resolved lazily, so listing it costs nothing)."""
    w = World(tmp)
    out: list[Case] = []

    def case(name, fn, group, /, _files=False, _ignore=(), **args):
        out.append(Case(name, fn, args, group, tuple(_ignore), _files))

    lazy = Lazy
    keep, labels, scores = w.keep, w.labels, w.scores

    # -- metrics ------------------------------------------------------------------------
    g = "stats"
    met = mk.metrics
    case("miakit.metrics.roc", met.roc, g, scores=F(w.s1, "members"),
         members=B(w.m1, "scores"))
    case("miakit.metrics.auc", met.auc, g, scores=F(w.s1, "members"),
         members=B(w.m1, "scores"))
    case("miakit.metrics.auc_ci", met.auc_ci, g, scores=F(scores, "members"),
         members=B(keep, "scores"), level=P(0.9))
    case("miakit.metrics.tpr_at_fpr", met.tpr_at_fpr, g, scores=F(scores, "members"),
         members=B(keep, "scores"), fpr=P(0.1), level=P(0.9))
    case("miakit.metrics.clopper_pearson", met.clopper_pearson, g, k=K(3, lo=0),
         n=K(10, lo=1), level=P(0.9))
    case("miakit.metrics.clustered_proportion_ci", met.clustered_proportion_ci, g,
         k=Arg(np.array([3, 0, 1, 0]), "ints", tied=("n",)),
         n=Arg(np.array([10, 10, 10, 10]), "ints", tied=("k",)), level=P(0.9),
         alternative=CH("two-sided"))
    case("miakit.metrics.korn_graubard", met.korn_graubard, g,
         hits=F(np.array([30.0, 10.0]), "var"), total=R(100.0),
         var=F(np.array([0.0021, 0.001]), "hits"), n_clusters=K(100),
         # a tail of 0 is valid: an alpha / n_tests that underflowed excludes nothing
         tail=P(0.025, allow=frozenset({"0"})))
    case("miakit.metrics.clustered_roc", met.clustered_roc, g,
         scores=F(w.s1, "members", "clusters"), members=B(w.m1, "scores", "clusters"),
         # cluster ids are labels: a negative one is as good as any other
         clusters=Arg(np.arange(20) // 2, "ints", tied=("scores", "members"),
                      allow=frozenset({"-1"})))
    case("miakit.metrics.effective_dof", met.effective_dof, g, sum_sq=R(4.0),
         sum_4th=R(4.0), n_clusters=K(100))
    # a proportion and its bounds may be 0 or 1; a tail of 0 (underflowed) excludes nothing
    ends = frozenset({"0", "1"})
    case("miakit.metrics.unseen_share_floor", met.unseen_share_floor, g,
         p=P(0.001, allow=ends), lo=P(0.0005, allow=ends), hi=P(0.002, allow=ends),
         tail=P(0.025, allow=frozenset({"0"})), n_clusters=K(300))
    # min_detectable_tpr is NaN, as documented, where no count of members could reach the
    # error rate spent (a tiny alpha / n_tests; a huge score that leaves too few pairs)
    def no_count():
        return {"alpha": P(0.05, nan_ok=frozenset({"1e-300"})),
                "n_tests": K(None, optional=True, nan_ok=frozenset({"2**40", "2**70"}))}
    case("miakit.metrics.leakage_test", met.leakage_test, g,
         scores=F(scores, "members", nan_ok=frozenset({"huge 1e300"})),
         members=B(keep, "scores"), fprs=PS([0.1, 0.2]), **no_count())

    def ranked():
        return met.RankedScores(scores, keep)
    case("miakit.metrics.RankedScores", met.RankedScores, g,
         scores=F(scores, "members"), members=B(keep, "scores"))
    case("miakit.metrics.RankedScores.by_columns", met.RankedScores.by_columns, g,
         # NaN scores are left out (counted in ``excluded``), as documented
         scores=F(scores, "members", allow=frozenset({"NaN"})), members=B(keep, "scores"))
    case("miakit.metrics.RankedScores.tpr_at_fpr", _method(ranked, "tpr_at_fpr"), g,
         fpr=P(0.1), level=P(0.9))
    case("miakit.metrics.RankedScores.point", _method(ranked, "point"), g, fpr=P(0.1))
    case("miakit.metrics.RankedScores.auc_ci", _method(ranked, "auc_ci"), g, level=P(0.9))
    case("miakit.metrics.RankedScores.leakage_test", _method(ranked, "leakage_test"), g,
         fprs=PS([0.1, 0.2]), **no_count())
    case("miakit.metrics.RankedScores.cluster_variances",
         _method(ranked, "cluster_variances"), g,
         points=Arg(np.array([1, 5, 10]), "ints", optional=True))
    def buffer_layout(**kwargs):  # the buffers are uninitialized: compare their layout
        bufs = met.RankWorkspace().buffers(**kwargs)
        return {k: (v.shape, str(v.dtype)) for k, v in bufs.items()}
    case("miakit.metrics.RankWorkspace.buffers", buffer_layout, g, n=K(10, lo=0))

    # -- bounds -------------------------------------------------------------------------
    b = mk.bounds
    case("miakit.bounds.dp_tpr_bound", b.dp_tpr_bound, g,
         fpr=Arg(np.array([0.01, 0.1]), "probs_array"), epsilon=R(1.0), delta=R(1e-5))
    case("miakit.bounds.gdp_tpr_bound", b.gdp_tpr_bound, g,
         fpr=Arg(np.array([0.01, 0.1]), "probs_array"), mu=R(1.0))
    case("miakit.bounds.memorization_bound", b.memorization_bound, g, epsilon=R(1.0))
    # a sample rate of 1 is full-batch DP-SGD, and delta 0 asks for pure DP (epsilon inf
    # for a Gaussian mechanism): both documented as valid
    case("miakit.bounds.dpsgd_epsilon", b.dpsgd_epsilon, g, noise_multiplier=R(1.0),
         sample_rate=P(0.01, allow=frozenset({"1"})), steps=K(100),
         delta=P(1e-5, allow=frozenset({"0"})), accountant=CH("rdp"))
    case("miakit.bounds.dpsgd_noise", b.dpsgd_noise, g, epsilon=R(2.0), delta=P(1e-5),
         sample_rate=P(0.01, allow=frozenset({"1"})), steps=K(100), accountant=CH("rdp"))
    case("miakit.bounds.empirical_epsilon", b.empirical_epsilon, g,
         scores=F(w.s1, "members"), members=B(w.m1, "scores"), delta=R(0.0), level=P(0.9))
    case("miakit.bounds.gdp_mu", b.gdp_mu, g, scores=F(w.s1, "members"),
         members=B(w.m1, "scores"), level=P(0.9))
    case("miakit.bounds.empirical_epsilon_ranked", b.empirical_epsilon_ranked, g,
         ranked=O(lazy(ranked)), delta=R(0.0), level=P(0.9))

    # -- ks -----------------------------------------------------------------------------
    rng = np.random.default_rng(3)
    a3, b1 = rng.normal(size=(3, 15)), rng.normal(0.5, size=12)
    case("miakit.ks.ks_2samp", mk.ks.ks_2samp, g, a=F(a3), b=F(b1),
         alternative=CH("two-sided"), method=CH("auto"), axis=K(-1, lo=-2))
    case("miakit.ks.ks_2samp_groups", mk.ks.ks_2samp_groups, g,
         a=F(a3.ravel(), "groups_a"),  # group ids are any integers: -1 is one
         groups_a=Arg(np.repeat([0, 1, 2], 15), "ints", tied=("a",), allow=frozenset({"-1"})),
         b=F(np.tile(b1, 3), "groups_b"),
         groups_b=Arg(np.repeat([0, 1, 2], 12), "ints", tied=("b",), allow=frozenset({"-1"})),
         alternative=CH("two-sided"), method=CH("auto"))
    case("miakit.ks.smirnov_threshold", mk.ks.smirnov_threshold, g, alpha=P(0.05),
         n=K(100), m=K(80))
    case("miakit.ks.assign_source", mk.ks.assign_source, g, samples=F(a3),
         source_a=F(rng.normal(size=40)), source_b=F(rng.normal(2.0, size=40)))
    case("miakit.ks.source_accuracy", mk.ks.source_accuracy, g,
         source_a=F(rng.normal(size=40)), source_b=F(rng.normal(1.0, size=40)),
         sizes=Arg(np.array([1, 5]), "ints"), n_trials=K(20), seed=S())
    case("miakit.ks.leakage_test", mk.ks.leakage_test, g,
         validation_conf=F(rng.beta(5, 1, 30)), test_conf=F(rng.beta(5, 1, 25)),
         alpha=P(0.05))

    # -- thresholds ---------------------------------------------------------------------
    th = mk.thresholds
    for fname in ("loss", "confidence", "hinge", "scaled_confidence"):
        case(f"miakit.thresholds.{fname}", getattr(th, fname), g,
             logits=F(w.logits2, "labels"), labels=Y(labels, "logits"))
    case("miakit.thresholds.max_confidence", th.max_confidence, g,
         logits=F(w.logits2, "labels"), labels=Y(labels, "logits", optional=True))
    case("miakit.thresholds.calibrated", th.calibrated, g,
         target_scores=F(scores[0], "ref_scores", "ref_keep"),
         ref_scores=F(scores[1:], "target_scores", "ref_keep"),
         ref_keep=B(keep[1:], "target_scores", "ref_scores"))
    case("miakit.thresholds.calibrated_leave_one_out", th.calibrated_leave_one_out, g,
         scores=F(scores, "keep"), keep=B(keep, "scores"),
         targets=Arg(np.array([0, 3]), "indices", optional=True),
         references=CH("balanced"))
    case("miakit.thresholds.bayes_baseline", th.bayes_baseline, g,
         correct=B(w.s1 > 0.5, "members"), members=B(w.m1, "correct"))
    case("miakit.thresholds.max_accuracy_threshold", th.max_accuracy_threshold, g,
         losses=F(w.s1, "members"), members=B(w.m1, "losses"))

    # -- exposure -----------------------------------------------------------------------
    ex = mk.exposure
    case("miakit.exposure.benjamini_hochberg", ex.benjamini_hochberg, g,
         p_values=Arg(np.array([0.01, 0.04, 0.03, 0.5]), "probs_array"))
    ref16 = rng.normal(size=(16, 10))
    case("miakit.exposure.membership_pvalues", ex.membership_pvalues, g,
         target_signal=F(rng.normal(size=10) + 3 * (np.arange(10) < 2), "ref_signal"),
         ref_signal=F(ref16, "target_signal", "ref_keep"),
         ref_keep=B(np.zeros((16, 10), bool), "ref_signal"),
         records=Arg(np.arange(6), "indices", optional=True), fdr=P(0.1),
         method=CH("auto"))
    case("miakit.exposure.min_rank_references", ex.min_rank_references, g,
         n_records=K(100), fdr=P(0.05))

    # -- capacity, powerlaw -------------------------------------------------------------
    case("miakit.capacity.capacity_bits", mk.capacity.capacity_bits, g,
         n=F(np.array([0.0, 1.0, 4.0])), total=R(6.0), exact=O(True))
    case("miakit.capacity.n_at_capacity", mk.capacity.n_at_capacity, g,  # NaN: documented
         params=F(np.array([10.0, 1000.0]), nan_ok=frozenset({"huge 1e300", "+inf"})),
         total=R(1797.0))
    shots = np.array([1, 2, 4, 8, 16] * 2)
    classes = np.array([2] * 5 + [10] * 5)
    case("miakit.powerlaw.fit", mk.powerlaw.fit, g,
         shots=Arg(shots, "ints", tied=("classes", "tpr")),
         classes=Arg(classes, "ints", tied=("shots", "tpr")),
         tpr=Arg(0.001 + 0.1 * shots ** -0.5 * classes ** 0.3 * (1 + 0.01 * np.arange(10)),
                 "probs_array", tied=("shots", "classes")),
         fpr=P(0.001), level=P(0.9))

    # -- vulnerability ------------------------------------------------------------------
    vu = mk.vulnerability
    r30 = np.random.default_rng(4).random((4, 30))
    names4 = ("lira_scores", "memorization", "grad_norms", "curvature")
    # NaN in a per-example column marks an example not measured (the audit passes
    # leave-one-out scores, memorization and IN-mean curvature with NaN where no model
    # held the example in or out): the table keeps it as NaN, documented
    unmeasured = {"allow": frozenset({"NaN"}), "nan_ok": frozenset({"NaN"})}
    case("miakit.vulnerability.vulnerability_table", vu.vulnerability_table, g,
         lira_scores=F(r30[0], *names4, optional=True, **unmeasured),
         memorization=F(r30[1], *names4, optional=True, **unmeasured),
         grad_norms=F(r30[2], *names4, optional=True, **unmeasured),
         curvature=F(r30[3], *names4, optional=True, **unmeasured), error=P(0.05), fpr=P(0.01))
    case("miakit.vulnerability.plot_vulnerability", vu.plot_vulnerability, g,
         table=O(lazy(lambda: w.table)), against=CH("memorization"),
         vulnerability=Arg(None, "text", optional=True))
    case("miakit.vulnerability.save_plots", vu.save_plots, g, _files=True,
         table=O(lazy(lambda: w.table)), outdir=Arg(lazy(w.fresh), "outdir"),
         # columns the table lacks are skipped, documented (the audit asks for curvature
         # whether or not the run could measure it)
         against=Arg(("memorization",), "choices", allow=frozenset({"unknown"})),
         fmt=CH("png"))
    case("miakit.vulnerability.VulnerabilityTable.top",
         # k=0 is the empty top list that to_dict(top_k=0) asks for
         _method(lambda: w.table, "top"), g, k=K(3, lo=0), by=CH(None, optional=True))
    case("miakit.vulnerability.VulnerabilityTable.to_dict",
         _method(lambda: w.table, "to_dict"), g, top_k=K(3, lo=0))
    case("miakit.vulnerability.VulnerabilityTable.to_csv",
         _method(lambda: w.table, "to_csv"), g, _files=True,
         # a file path: writing over an existing file is what a rerun does
         path=Arg(lazy(lambda: w.fresh("table.csv")), "outdir", allow=frozenset({"a file"})))

    # -- generative, neighbors ----------------------------------------------------------
    ge = mk.generative
    case("miakit.generative.closest_distances", ge.closest_distances, g,
         queries=F(w.records, "reference"), reference=F(w.synthetic, "queries"),
         k=K(2), metric=CH("euclidean"))
    case("miakit.generative.dcr_query", ge.dcr_query, g, records=F(w.records, "synthetic"),
         synthetic=F(w.synthetic, "records"), k=K(1), metric=CH("euclidean"))
    case("miakit.generative.apply_query", ge.apply_query, g,
         fn=O(lambda x: (np.asarray(x) ** 2).sum(1)),
         # records go to the user's fn as they are: its own errors on strings or objects
         # are its own; non-finite query values are reported under "fn"
         records=F(w.records, names=("fn",), skip=frozenset(
             {"strings", "str", "object()", "object array", "complex", "torch conj",
              "torch bfloat16"})),
         batch_size=K(3, optional=True))
    case("miakit.generative.min_records", ge.min_records, g, level=P(0.95))
    case("miakit.generative.membership_advantage", ge.membership_advantage, g,
         q_train=F(w.q_train), q_holdout=F(w.q_holdout), level=P(0.9),
         method=CH("auto"), folds=K(3, lo=2), seed=S())
    case("miakit.generative.individual_risk", ge.individual_risk, g,
         q=F(np.array([-2.0, 0.5, 3.0])), q_train=F(w.q_train), q_holdout=F(w.q_holdout),
         prior=P(0.5), method=CH("kde"), seed=S())
    case("miakit.generative.risk_attack", ge.risk_attack, g, q_train=F(w.q_train),
         q_holdout=F(w.q_holdout), prior=P(0.5), method=CH("kde"), folds=K(2, lo=2),
         fprs=PS([0.05]), level=P(0.9), seed=S())
    case("miakit.generative.attack_power", ge.attack_power, g,
         scores_members=F(w.q_train), scores_nonmembers=F(w.q_holdout), fprs=PS([0.05]),
         level=P(0.9))
    case("miakit.generative.AttackPower.at",
         _method(lambda: ge.attack_power(w.q_train, w.q_holdout, [0.05]), "at"), g,
         fpr=P(0.05))
    case("miakit.generative.domias_scores", ge.domias_scores, g,
         records=F(w.records, "synthetic", "reference"),
         synthetic=F(w.synthetic, "records", "reference"),
         reference=F(w.reference, "records", "synthetic"),
         n_components=K(None, optional=True), seed=S())

    # -- signals ------------------------------------------------------------------------
    g = "attacks"
    for fname in ("scaled_confidence", "hinge", "loss", "confidence", "correct", "grad_norm"):
        case(f"miakit.signals.{fname}", getattr(mk.signals, fname), g,
             logits=F(w.logits, "labels"), labels=Y(labels, "logits"))
    case("miakit.signals.max_confidence", mk.signals.max_confidence, g, logits=F(w.logits))
    case("miakit.signals.compute", mk.signals.compute, g, logits=F(w.logits, "labels"),
         labels=Y(labels, "logits"), names=Arg(["loss", "hinge"], "choices"),
         dtype=CH(None, optional=True))

    # -- lira ---------------------------------------------------------------------------
    li = mk.lira
    # a side (IN or OUT) with no observations has NaN statistics, as LiraFit documents
    one_sided = frozenset({"all True", "all False"})
    case("miakit.lira.fit", li.fit, g, shadow_scores=F(scores, "keep"),
         keep=B(keep, "shadow_scores", nan_ok=one_sided), center=CH("median"),
         variance=CH("per_example"),
         min_std=R(1e-6))
    case("miakit.lira.fit#logits", li.fit, g, shadow_scores=F(w.logits, "keep", "labels"),
         keep=B(keep, "shadow_scores", nan_ok=one_sided),
         # without labels the logits are read as scores of C views: None is valid
         labels=Y(labels, "shadow_scores", optional=True), signal=CH("scaled_confidence"))
    case("miakit.lira.score", li.score, g, target_scores=F(scores[0]),
         fit=O(lazy(lambda: w.fit)), mode=CH("online"), offline=CH("one_sided"),
         on_empty=CH("raise"))
    case("miakit.lira.leave_one_out", li.leave_one_out, g, shadow_scores=F(scores, "keep"),
         keep=B(keep, "shadow_scores"), targets=Arg(np.array([0, 5]), "indices",
                                                    optional=True),
         mode=CH("online"), offline=CH("one_sided"), center=CH("median"),
         variance=CH("global"), min_std=R(1e-6), on_empty=CH("raise"),
         references=CH("balanced"))
    case("miakit.lira.balanced_partners", li.balanced_partners, g, keep=B(keep),
         targets=Arg(np.array([0, 5]), "indices", optional=True))
    case("miakit.lira.hellinger", li.hellinger, g, fit=O(lazy(lambda: w.fit)))
    case("miakit.lira.privacy_score", li.privacy_score, g, fit=O(lazy(lambda: w.fit)))
    case("miakit.lira.shadow_models_needed", li.shadow_models_needed, g,
         fit=O(lazy(lambda: w.fit)), error=P(0.05), formula=CH("bhattacharyya"))

    # -- rmia ---------------------------------------------------------------------------
    rm = mk.rmia
    case("miakit.rmia.score", rm.score, g, target_q=F(w.q[0], "ref_q"),
         ref_q=F(w.q[1:], "target_q", "ref_keep"), ref_keep=B(keep[1:], "ref_q"),
         population=Arg(np.flatnonzero(~keep[0]), "indices"),
         a=Arg(0.3, "prob", allow=frozenset({"0", "1"})), gamma=R(1.0),
         aggregate=CH("mean"), on_empty=CH("raise"))
    case("miakit.rmia.leave_one_out", rm.leave_one_out, g, q=F(w.q, "keep"),
         keep=B(keep, "q"), targets=Arg(np.array([0, 5]), "indices", optional=True),
         a=Arg(0.3, "prob", allow=frozenset({"0", "1"})), gamma=R(1.0),
         aggregate=CH("mean"), references=CH("balanced"), on_empty=CH("raise"))
    case("miakit.rmia.tune_a", rm.tune_a, g, q=F(w.q, "keep"), keep=B(keep, "q"),
         target=K(1, lo=0), grid=Arg(np.array([0.0, 0.5, 1.0]), "probs_array",
                                     optional=True, allow=frozenset({"empty"})),
         gamma=R(1.0), aggregate=CH("mean"), references=CH("balanced"))
    case("miakit.rmia.ratios", rm.ratios, g, target_q=F(w.q[0], "ref_q"),
         ref_q=F(w.q[1:], "target_q", "ref_keep"), ref_keep=B(keep[1:], "ref_q"),
         a=Arg(0.3, "prob", allow=frozenset({"0", "1"})), aggregate=CH("mean"))

    # -- memorization -------------------------------------------------------------------
    correct = (w.logits.argmax(-1) == labels).astype(np.float64)
    case("miakit.memorization.feldman_zhang", mk.memorization.feldman_zhang, g,
         correct=F(correct, "keep"), keep=B(keep, "correct"), signal=CH("correct"),
         on_empty=CH("raise"))
    case("miakit.memorization.influence", mk.memorization.influence, g,
         keep=B(keep, "correct_test", axis=0),  # models: the axis the two share
         correct_test=F(correct[:, :4], "keep", axis=0),
         top_k=K(2), signal=CH("correct"), on_empty=CH("raise"))

    # -- audit --------------------------------------------------------------------------
    au = mk.audit
    lg = ("logits", "keep", "labels")
    case("miakit.audit.run_attacks", au.run_attacks, g,
         logits=F(w.logits4, "keep", "labels"), keep=B(keep, "logits", "labels"),
         labels=Y(labels, "logits", "keep"), variance=CH("global"),
         references=CH("balanced"),
         attacks=Arg(["loss", "lira_online", "rmia_offline"], "choices", optional=True))
    case("miakit.audit.iter_attacks", _listed(au.iter_attacks), g,
         logits=F(w.logits4, "keep", "labels"), keep=B(keep, "logits", "labels"),
         labels=Y(labels, "logits", "keep"), variance=CH("global"),
         attacks=Arg(["loss", "calibrated_loss"], "choices", optional=True))
    case("miakit.audit.curvature_attack", au.curvature_attack, g,
         curvature=F(np.abs(scores), "keep"), keep=B(keep, "curvature"),
         variance=CH("global"), references=CH("balanced"))
    case("miakit.audit.head_matrices", au.head_matrices, g,
         features=F(w.features, "labels"), labels=Y(labels, "features"),
         params=O(lazy(lambda: w.heads)), shape=O((M, N)))
    case("miakit.audit.baselines", au.baselines, g, logits=F(w.logits4, *lg[1:]),
         keep=B(keep, "logits", "labels"), labels=Y(labels, "logits", "keep"))
    results = {"a": {"label": "A", "auc": 0.6, "tpr_at_fpr": [
        {"target_fpr": 0.01, "tpr": 0.1, "resolvable": True}],
        "empirical_epsilon": {"epsilon": 0.7}}}
    case("miakit.audit.strongest", au.strongest, g, results=Arg(results, "mapping"),
         verdict=Arg(None, "mapping", optional=True))
    case("miakit.audit.privacy_summary", au.privacy_summary, g,
         results=Arg(results, "mapping"), dp_epsilon=R(1.0, optional=True),
         dp_delta=R(1e-5))
    case("miakit.audit.vulnerability", au.vulnerability, g,
         logits=F(w.logits4, "keep", "labels", "lira_scores"),
         keep=B(keep, "logits", "labels", "lira_scores"),
         labels=Y(labels, "logits", "keep"),
         # NaN marks an example's score as not measured (leave-one-out scores with
         # on_empty="nan"): the table leaves it out of that example's TPR
         lira_scores=F(scores, "logits", "keep", allow=frozenset({"NaN"})),
         variance=CH("global"), fpr=P(0.1))
    case("miakit.audit.head_quantities", au.head_quantities, g,
         features=F(w.features, "labels"), labels=Y(labels, "features"),
         params=Arg(lazy(lambda: w.heads[0]), "mapping"))
    for fname in ("summarize", "summary_sections", "to_html"):
        case(f"miakit.audit.{fname}", getattr(au, fname), g,
             report=Arg(lazy(lambda: json.loads(json.dumps(w.report))), "mapping"))
    # path: a file to write, not a folder ("outdir" would refuse an existing file, which
    # these overwrite as any output file is): its bad values are those of "text"
    case("miakit.audit.write_html", au.write_html, g, _files=True,
         report=Arg(lazy(lambda: json.loads(json.dumps(w.report))), "mapping"),
         path=Arg(lazy(lambda: w.fresh("page.html")), "text"))
    case("miakit.audit.plot_roc", au.plot_roc, g, _files=True,
         results=O(lazy(lambda: w.evaluated)),
         path=Arg(lazy(lambda: w.fresh("roc.png")), "text"), title=Arg("t", "text"))
    case("miakit.audit.load_report", au.load_report, g, _files=True,
         path=Arg(lazy(lambda: w.report_json), "jsonfile"))
    case("miakit.audit.references_info", au.references_info, g, keep=B(keep),
         references=CH("balanced"))
    case("miakit.audit.evaluate", au.evaluate, g,
         attacks=Arg({"s": {"scores": scores}}, "mapping"), keep=B(keep),
         fprs=PS([0.1, 0.2]), level=P(0.9), alpha=P(0.05), dp_delta=R(1e-5))
    case("miakit.audit.verdict", au.verdict, g, results=Arg(lazy(lambda: w.evaluated),
                                                           "mapping"), alpha=P(0.05))
    case("miakit.audit.target.target_scores", au.target.target_scores, g,
         target_logits=F(w.logits4[0], "target_keep", "ref_logits"),
         target_keep=B(keep[0], "target_logits"),
         ref_logits=F(w.logits4[1:], "ref_keep", "labels", "target_logits"),
         ref_keep=B(keep[1:], "ref_logits"), labels=Y(labels, "ref_logits"),
         attacks=Arg(["lira_offline", "loss"], "choices"), variance=CH("global"))

    # -- curvature, gradients -----------------------------------------------------------
    import torch
    cv = mk.curvature
    a_diag = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)

    def quad_loss(out, t):
        return 0.5 * (a_diag * out ** 2).sum(1)
    x_t = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for fname, extra in (("hutchinson_trace", {}), ("finite_difference", {"h": R(0.1)}),
                         ("zero_order", {"h": R(0.1)})):
        case(f"miakit.curvature.{fname}", getattr(cv, fname), g,
             model=O(torch.nn.Identity()), loss_fn=O(quad_loss), x=F(lazy(x_t.clone), "y"),
             y=O(torch.zeros(4)), n_probes=K(3), seed=S(),
             batch_size=K(None, optional=True),
             # ids seed each example's probes: any non-negative integer
             example_ids=Arg(np.arange(4), "indices", optional=True,
                             allow=frozenset({"2**40"})), **extra)
    w_cd = np.array([[1.0, 0.0, 0.5, 0.2], [-1.0, 0.0, 0.1, 0.3], [0.2, 0.1, 0.0, 0.0]])
    case("miakit.curvature.head_trace", cv.head_trace, g, features=F(w.features, "weight"),
         weight=F(w_cd, "features", "bias"), bias=F(np.zeros(3), "weight", optional=True))
    w1 = np.eye(4)[:3] + 0.1
    case("miakit.curvature.mlp_head_trace", cv.mlp_head_trace, g,
         features=F(w.features, "weight1"), weight1=F(w1, "features", "bias1", "weight2"),
         bias1=F(np.zeros(3), "weight1", optional=True),
         weight2=F(np.array([[1.0, 0.0, 0.2], [-1.0, 0.3, 0.0]]), "weight1", "bias2"),
         bias2=F(np.zeros(2), "weight2", optional=True))
    case("miakit.curvature.probes", cv.probes, g,
         example_ids=Arg(np.array([4, 9]), "indices", allow=frozenset({"2**40"})),
         n_probes=K(3), shape=O((2, 5)),
         seed=S(1), first_probe=K(0, lo=0), dtype=CH("float32"))
    v3 = np.random.default_rng(5).normal(size=(3, 2, 4))
    case("miakit.curvature.probe_quadratic", cv.probe_quadratic, g,
         probes=F(v3, "hvp"), hvp=F(2 * v3, "probes"))
    case("miakit.curvature.probe_differences", cv.probe_differences, g,
         grads=F(v3, "grad0"), grad0=F(v3[:, 0], "grads"))
    gr = mk.gradients
    case("miakit.gradients.head_norms", gr.head_norms, g,
         features=F(w.features, "labels", "weight"), labels=Y(labels, "features"),
         weight=F(w_cd, "features", "bias"), bias=F(np.zeros(3), "weight", optional=True))
    case("miakit.gradients.mlp_head_norms", gr.mlp_head_norms, g,
         features=F(w.features, "labels", "weight1"), labels=Y(labels[:N] % 2, "features"),
         weight1=F(w1, "features", "bias1", "weight2"),
         bias1=F(np.zeros(3), "weight1", optional=True),
         weight2=F(np.array([[1.0, 0.0, 0.2], [-1.0, 0.3, 0.0]]), "weight1", "bias2"),
         bias2=F(np.zeros(2), "weight2", optional=True))
    case("miakit.gradients.ghost_norms", gr.ghost_norms, g,
         activations=F(v3, "grads", axis=0), grads=F(v3[..., :3], "activations", axis=0))
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    x4 = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    case("miakit.gradients.per_example_norms", gr.per_example_norms, g, model=O(mlp),
         loss_fn=O(torch.nn.CrossEntropyLoss(reduction="none")),
         x=F(lazy(x4.clone), "y"), y=O(torch.tensor([0, 1, 2, 0, 1, 2])),
         batch_size=K(None, optional=True))

    # -- partial layers -----------------------------------------------------------------
    pl = mk.partial_layers
    z4 = np.array([[3.0, 0.0], [0.0, 3.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.5], [0.5, 0.0]])
    case("miakit.partial_layers.attack_logits", pl.attack_logits, g,
         logits=F(z4, "labels", "members"), labels=Y(np.array([0, 1, 0, 0, 1, 1]), "logits"),
         members=B(np.array([1, 1, 0, 0, 1, 0], bool), "logits"), level=P(0.9),
         public_accuracy=P(None, optional=True, allow=frozenset({"0", "1"})))  # accuracies
    case("miakit.partial_layers.train_head", pl.train_head, g,
         features=F(lazy(lambda: torch.randn(16, 3, generator=torch.Generator()
                                             .manual_seed(2))), "labels", axis=0),
         labels=Y(np.arange(16) % 2, "features"), n_classes=K(2, lo=2), head=CH("linear"),
         hidden=K(4),
         # 2**40 epochs is a long training, as asked
         epochs=K(2, skip=frozenset({"2**40", "2**70"})), lr=R(0.01, lo=1e-300), batch_size=K(8),
         weight_decay=R(1e-4),
         seed=S())

    # -- audit jobs on a run (group "runs": files and heavier calls) ----------------------
    g = "runs"
    case("miakit.audit.audit", au.audit, g, _files=True, _ignore=("created", "path"),
         run=O(lazy(w.run)), out_dir=Arg(lazy(w.fresh), "outdir", optional=True),
         fprs=PS([0.1, 0.2]), variance=CH("auto"), references=CH("balanced"),
         level=P(0.9), alpha=P(0.05),
         attacks=Arg(["loss", "lira_offline"], "choices", optional=True),
         dp_epsilon=R(None, optional=True), dp_delta=R(1e-5), plot=O(False),
         extra=Arg(None, "mapping", optional=True))
    case("miakit.audit.audit_target", au.audit_target, g, _files=True,
         _ignore=("created", "path"), run=O(lazy(w.run)),
         target_logits=F(w.logits4[0].astype(np.float32), "target_keep"),
         target_keep=B(keep[0], "target_logits"),
         out_dir=Arg(lazy(w.fresh), "outdir", optional=True), fdr=P(0.1),
         fprs=PS([0.1, 0.2]), variance=CH("auto"), level=P(0.9), alpha=P(0.05),
         attacks=Arg(["loss", "lira_offline"], "choices", optional=True), plot=O(False))

    # -- shadow -------------------------------------------------------------------------
    sh = mk.shadow
    # strata are group ids, not class indices: a negative or a large id names a group like
    # any other
    case("miakit.shadow.balanced_keep", sh.balanced_keep, g, n_models=K(4, lo=2),
         n_examples=K(6), seed=S(), strata=Y(np.array([0, 0, 1, 1, 1, 1]), optional=True,
                                             allow=frozenset({"-1", "n_classes", "2**40"})))
    case("miakit.shadow.is_paired", sh.is_paired, g, keep=B(keep))
    case("miakit.shadow.train_heads", sh.train_heads, g,
         features=F(w.features, "labels", "keep", axis=0),
         # n_classes defaults to labels.max() + 1: a label of n_classes adds a class
         labels=Y(labels, "features", "keep", allow=frozenset({"n_classes"})),
         keep=B(keep[:2], "features", "labels"), head=CH("linear"), hidden=K(4),
         optimizer=CH("auto"), epochs=K(3, optional=True), lr=R(None, optional=True),
         weight_decay=R(1e-4), batch_size=K(None, optional=True), tol=R(1e-4),
         n_classes=K(None, optional=True), seed=S(), logits_dtype=CH("float32"),
         heads_per_chunk=K(None, optional=True), progress=O(False))
    case("miakit.shadow.import_logits", sh.import_logits, g, _files=True,
         out=Arg(lazy(w.fresh), "outdir"), logits=F(w.logits4, "keep", "labels"),
         keep=B(keep, "logits", "labels"), labels=Y(labels, "logits", "keep"),
         n_classes=K(None, optional=True), logits_dtype=CH("float32"),
         metadata=Arg(None, "mapping", optional=True))
    case("miakit.shadow.import_signals", sh.import_signals, g, _files=True,
         out=Arg(lazy(w.fresh), "outdir"), signals=F(np.abs(scores), "keep"),
         keep=B(keep, "signals"), kind=CH("loss"), dtype=CH("float32"),
         metadata=Arg(None, "mapping", optional=True))
    case("miakit.shadow.import_folder", sh.import_folder, g, _files=True,
         out=Arg(lazy(w.fresh), "outdir"), folder=Arg(lazy(lambda: w.folder), "path"),
         labels=Y(np.zeros(5, int), "folder"), n_classes=K(None, optional=True),
         logits_dtype=CH("float32"))
    case("miakit.shadow.import_lira_reference", sh.import_lira_reference, g, _files=True,
         out=Arg(lazy(w.fresh), "outdir"), logdir=Arg(lazy(lambda: w.lira_logdir), "path"),
         logits_dtype=CH("float32"))
    case("miakit.shadow.open_run", sh.open_run, g, _files=True,
         path=Arg(lazy(lambda: w.run_path), "path"), verify=O(True))
    case("miakit.shadow.create_run", sh.create_run, g, _files=True,
         path=Arg(lazy(w.fresh), "outdir"), keep=B(keep, "labels"),
         labels=Y(labels, "keep"), n_augmentations=K(1), n_classes=K(C),
         logits_dtype=CH("float32"), data_digest=Arg("", "text"),
         config=Arg(None, "mapping", optional=True),
         metadata=Arg(None, "mapping", optional=True))
    # a digest: NaN and infinities are values like any other
    case("miakit.shadow.features_digest", sh.features_digest, g,
         features=F(w.features, allow=frozenset({"NaN"})))
    case("miakit.shadow.array_train_fn", sh.array_train_fn, g, fit=O(lambda *a, **k: None))
    case("miakit.shadow.Run.model_logits", _method(w.run, "model_logits"), g, m=K(1, lo=0))
    case("miakit.shadow.Run.logits", _method(w.run, "logits"), g,
         models=Arg(np.array([0, 3]), "indices", optional=True))
    case("miakit.shadow.Run.require_finished", _method(w.run, "require_finished"), g,
         models=Arg(np.array([0, 3]), "indices", optional=True))
    case("miakit.shadow.Run.model_path", _method(w.run, "model_path"), g, m=K(1, lo=0))
    hd = importlib.import_module("miakit.shadow.heads")
    case("miakit.shadow.heads.initial_params", hd.initial_params, g, head=CH("mlp"),
         n_features=K(4), n_classes=K(3, lo=2), hidden=K(5), seed=S(), model=K(2, lo=0))
    # batch_rows shuffles the row ids it is given and knows no row count: a large id is
    # as valid as a small one
    case("miakit.shadow.heads.batch_rows", hd.batch_rows, g,
         train_rows=Arg(np.array([3, 5, 7]), "indices", allow=frozenset({"2**40"})),
         batch_size=K(2), n_steps=K(3),
         seed=S(), model=K(0, lo=0))
    case("miakit.shadow.heads.minibatch_plan", hd.minibatch_plan, g,
         rows_per_head=Arg(np.array([50, 48, 52]), "ints"), batch_size=K(10), epochs=K(3))
    mr = importlib.import_module("miakit.shadow.model_run")
    # these name the option they are told (``flag``): the command's, not the argument's
    case("miakit.shadow.model_run.load_spec", mr.load_spec, g,
         spec=Arg("math:sqrt", "text", names=("--model",)), flag=O("--model"))
    case("miakit.shadow.model_run.load_data", mr.load_data, g, _files=True,
         data=Arg(lazy(lambda: w.data_npz), "npyfile", names=("--data",)), flag=O("--data"))

    # -- datasets -----------------------------------------------------------------------
    ds = mk.datasets
    case("miakit.datasets.load", lambda name, n, dim, n_classes: ds.load(
        name, n=n, dim=dim, n_classes=n_classes), g, name=CH("synthetic"), n=K(30),
        dim=K(3), n_classes=K(2))
    case("miakit.datasets.digits", ds.digits, g, n_examples=K(100, optional=True),
         views=K(2), subset_seed=S(), planted=Arg(0.05, "prob", allow=frozenset({"0"})),
         planted_kind=CH("relabel"), planted_seed=S())
    case("miakit.datasets.synthetic", ds.synthetic, g, n=K(40), dim=K(3), n_classes=K(3),
         separation=R(1.0), seed=S(), planted=Arg(0.05, "prob", allow=frozenset({"0"})),
         planted_kind=CH("relabel"), planted_seed=S())

    # -- studies ------------------------------------------------------------------------
    from miakit.studies import budget, generative, sweep
    k40 = sh.balanced_keep(8, 40, seed=0)
    y40 = np.random.default_rng(6).integers(0, 3, 40)
    z40 = np.random.default_rng(7).normal(size=(8, 40, 1, 3)).astype(np.float32)
    bl = ("logits", "keep", "labels")
    for fname, fn in (("run", budget.run), ("shadow_budget", budget.shadow_budget)):
        case(f"miakit.studies.budget.{fname}", fn, g,
             logits=F(z40, *bl), keep=B(k40, *bl), labels=Y(y40, *bl),
             planted=Arg(np.arange(4), "indices", optional=True),
             budgets=Arg([2, 4], "ints", names=("budget",)), draws=K(1), targets=K(2),
             **({"plot": O(False)} if fname == "shadow_budget" else {}))
    case("miakit.studies.budget.memorization_aware", budget.memorization_aware, g,
         logits=F(z40, *bl), keep=B(k40, *bl), labels=Y(y40, *bl), pilot=K(2),
         budgets=Arg([2], "ints"), candidates=Arg(5, "count", lo=1), draws=K(1),
         targets=K(2), fprs=PS([0.05]), planted=Arg(np.arange(4), "indices", optional=True),
         seed=S())
    case("miakit.studies.budget.planted_mask", budget.planted_mask, g,
         planted=Arg(np.array([1, 3]), "indices"), n=K(5))
    rng = np.random.default_rng(8)
    t40, h40, s40 = (rng.normal(size=(40, 3)) for _ in range(3))
    gen3 = ("synthetic", "train", "holdout")
    case("miakit.studies.generative.run", generative.run, g,
         synthetic=F(s40, *gen3), train=F(t40, *gen3), holdout=F(h40, *gen3),
         name=Arg("m", "text"))
    case("miakit.studies.generative.audit_synthetic", generative.audit_synthetic, g,
         synthetic=F(s40, *gen3), train=F(t40, *gen3), holdout=F(h40, *gen3),
         fprs=PS([0.05]), level=P(0.9), prior=P(0.5), pca=K(2, optional=True),
         top=K(3, lo=0),
         seed=S())
    case("miakit.studies.generative.parse_gmm", generative.parse_gmm, g,
         spec=Arg("20", "text", names=("gmms",), allow=frozenset({"int"})), n_train=K(900))
    case("miakit.studies.generative.fit_gmm", generative.fit_gmm, g, train=F(t40),
         k=K(2), cov=CH("diag"), n_samples=K(10), seed=S())
    case("miakit.studies.sweep.cell_examples", sweep.cell_examples, g,
         # labels are class ids, any integers: a cell draws among those present, so ids
         # beyond n_classes (the classes drawn) or negative ones are valid
         labels=Y(np.repeat(np.arange(4), 10), allow=frozenset({"n_classes", "-1", "2**40"})),
         shots=K(3), n_classes=K(2), seed=S())
    for name, cls in config_classes().items():
        case(name, cls, g, **config_args(cls))
    for name, obj in public_callables().items():
        if isinstance(obj, type) and hasattr(obj, "from_json") and name.endswith("Result") \
                and not getattr(obj, "__abstractmethods__", None):
            case(f"{name}.from_json", obj.from_json, g, _files=True,
                 path=Arg(lazy(lambda: w.study_json), "jsonfile"))

    # -- the rest -----------------------------------------------------------------------
    case("miakit.backend_info", mk.backend_info, g)
    case("miakit.cli.build_parser", importlib.import_module("miakit.cli").build_parser, g)
    cs = importlib.import_module("miakit.cli.studies")
    # an argparse type: its message says what is expected; argparse names the option
    case("miakit.cli.studies.count_or_share", cs.count_or_share, g,
         value=Arg("60", "text", names=("count",)))
    case("miakit.cli.studies.count_or_share#share", cs.count_or_share, g,
         value=Arg("0.1", "text", names=("count",)))
    return out


def config_args(cls: type) -> dict[str, Arg]:
    """A config's fields as arguments, their kinds from their declarations."""
    import math

    from miakit._params import params
    out = {}
    for name, (param, default) in params(cls).items():
        opt = param.optional
        unbounded = frozenset() if param.low is not None else frozenset({"below minimum",
                                                                         "-1"})
        if param.choices is not None:
            arg = Arg(list(default) if param.many and default is not None else default,
                      "choices" if param.many else "choice", optional=opt)
        elif param.kind is int:
            lo = (-(2**31) if param.low is None
                  else math.ceil(param.low + (1 if param.open_low else 0)))
            arg = Arg(list(default) if param.many else default,
                      "ints" if param.many else "count", lo=lo, optional=opt,
                      allow=unbounded)
        elif param.kind is float:
            lo = -1.0 if param.low is None else param.low
            if param.many:
                kind = "probs" if (param.low, param.high) == (0, 1) else "reals"
                arg = Arg(list(default), kind, lo=lo, optional=opt)
            elif (param.low, param.high) == (0, 1):
                arg = Arg(default, "prob", optional=opt, allow=frozenset(
                    ({"0"} if not param.open_low else set())
                    | ({"1"} if not param.open_high else set())))
            else:
                arg = Arg(default, "real", lo=lo, optional=opt)
        else:
            arg = Arg(default)
        out[name] = arg
    return out


if __name__ == "__main__":  # list the table
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    for c in cases("/tmp/fuzz-list"):
        print(c.group, c.name, ", ".join(f"{k}:{a.kind}" for k, a in c.args.items()))
