"""The training engine: one loop for every domain, on one process or under torchrun.

Typical use from a recipe::

    from polyformer.apps.engine import ClassificationTask, TrainingConfig, train

    config = TrainingConfig(out_dir="runs/vit", batch_size=128, epochs=10, lr=1e-3, checkpoint_every=500)
    result = train(model, ClassificationTask(num_classes=10), train_set, config, eval_data=test_set)

See :mod:`.loop` for the loop, :mod:`.checkpoint` for the checkpoint layout and
:mod:`.distributed` for torchrun.
"""

from .checkpoint import (
    CheckpointDamagedError,
    CheckpointManager,
    export_model_directory,
    find_checkpoints,
    find_resumable,
    load_training_state,
    resolve_checkpoint,
    write_model_directory,
)
from .config import PRECISIONS, TrainingConfig
from .distributed import (
    DistributedContext,
    init_distributed,
    launch_with_torchrun,
    shutdown_distributed,
    under_torchrun,
    unwrap_model,
)
from .ema import ModelEMA
from .finetune import load_for_finetuning, sequence_classifier_from_encoder
from .health import HealthMonitor, HealthRule
from .interrupt import StopRequests, TrainingInterrupted
from .loop import NonFiniteLossError, TrainResult, checkpoint_interval, evaluate, train
from .optim import (
    build_adamw,
    build_optimizer,
    decay_parameter_groups,
    layer_ids,
    parameter_groups,
    training_schedule,
    warmup_cosine_factor,
    warmup_cosine_schedule,
)
from .precision import PrecisionChoice, autocast, choose_precision, resolve_precision
from .randomness import capture_rng_state, restore_rng_state, seed_everything
from .run_dir import RunDirectoryError, default_run_directory, holds_run, prepare_run_directory, run_of, run_of_model
from .run_log import MetricsLog, ProgressReporter, plot_training_curves, read_metrics
from .sampling import ReproducibleSamples, ResumableBatchSampler
from .splits import SPLIT_FILE, HeldOutSplit, data_fingerprint
from .tasks import (
    CausalLMTask,
    ClassificationTask,
    CTCTask,
    MaskedLMTask,
    Seq2SeqTask,
    TokenCrossEntropyTask,
    TrainingHealthError,
    TrainingTask,
    logits_of,
)

__all__ = [name for name in dir() if not name.startswith("_")]
