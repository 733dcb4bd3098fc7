"""Shadow-model runs: who trains on what, training, and crash-safe storage.

- :func:`balanced_keep` draws the membership matrix.
- :func:`train_heads` trains M linear or MLP heads on fixed features in one batched loop.
- :func:`train_models` trains any torch model per row of ``keep`` into a run directory.
- Both train on a Ray cluster with ``executor="ray"``: workers train, this process
  alone verifies and writes the run (see ``_ray``).
- :func:`import_logits`, :func:`import_folder`, :func:`import_lira_reference` (and
  :func:`import_signals` for runs that kept one signal per example) bring in
  shadow models trained elsewhere.
- :func:`train_default` trains the default run of ``miakit shadow`` (a
  :class:`TrainingConfig`; see ``default_run``); :func:`train_model_run` the run of the
  user's own model, ``miakit shadow --model --data`` (a :class:`ModelRunConfig`; see
  ``model_run``), with :func:`array_train_fn` for a training loop on tensors.
- :func:`open_run` / :func:`create_run` read and write run directories (see ``store``);
  :func:`features_digest` is the data digest under which a run stores its features.
"""

from miakit.shadow.default_run import TrainingConfig, train_default
from miakit.shadow.heads import train_heads
from miakit.shadow.importing import (
    import_folder,
    import_lira_reference,
    import_logits,
    import_signals,
)
from miakit.shadow.keep import balanced_keep, is_paired
from miakit.shadow.model_run import ModelRunConfig, train_model_run
from miakit.shadow.store import (
    CorruptModelError,
    CorruptModelWarning,
    IncompleteRunError,
    Run,
    RunLockedError,
    RunMismatchError,
    RunWriteError,
    create_run,
    features_digest,
    open_run,
)
from miakit.shadow.train import array_train_fn, train_models

__all__ = [
    "balanced_keep",
    "is_paired",
    "train_heads",
    "import_logits",
    "import_signals",
    "import_folder",
    "import_lira_reference",
    "train_models",
    "array_train_fn",
    "TrainingConfig",
    "train_default",
    "ModelRunConfig",
    "train_model_run",
    "open_run",
    "create_run",
    "features_digest",
    "Run",
    "RunMismatchError",
    "IncompleteRunError",
    "CorruptModelError",
    "CorruptModelWarning",
    "RunLockedError",
    "RunWriteError",
]
