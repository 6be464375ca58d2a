"""What every training stage shares, so that sft.py, pretrain.py, grpo.py, rft.py and
reward_model.py each read top to bottom.

- `arguments`: TrainingArguments from the `TrainConfig` group (precision, checkpointing, DeepSpeed).
- `output_dir`: checks before loading, resuming only with the same config, `merged_start`.
- `run`: `train_and_save` and `write_summary`.
- `plots`: loss.png, rewards.png, accuracy.png.
- `trainers`: the TRL trainers with this project's additions (imports TRL: imported when training).
- `rollout`, `curriculum`: GRPO's rollouts (TRL's `rollout_func`: dynamic sampling, judging while
  generating) and which tasks are still worth a group.
- `validation`: GRPO's validation pass@1 during training (greedy, on tasks no stage trains on).

Not here: models (`coder_align.models`), data (`coder_align.data`), rewards (`coder_align.rewards`).
"""

from coder_align.training.arguments import is_main_process, precision_flags, training_arguments
from coder_align.training.output_dir import (
    START_MODEL, check_checkpoint, checkpoint_step, config_differences, merged_start, note_output_dir,
    prepare_output_dir, remove_unused_outputs, resolve_resume,
)
from coder_align.training.run import TrainingRun, save_serving_files, train_and_save, write_summary

__all__ = [
    "START_MODEL", "TrainingRun", "check_checkpoint", "checkpoint_step", "config_differences", "is_main_process",
    "merged_start", "note_output_dir", "precision_flags", "prepare_output_dir", "remove_unused_outputs", "resolve_resume",
    "save_serving_files", "train_and_save", "training_arguments", "write_summary",
]
