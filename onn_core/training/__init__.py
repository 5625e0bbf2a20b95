"""Training: config, trainer (resumable, seeded, progress callbacks), metrics, teacher store."""

from .config import TrainConfig
from .progress import Progress
from .store import find_teacher, studio_home, teacher_dir
from .trainer import evaluate, train

__all__ = ["Progress", "TrainConfig", "evaluate", "find_teacher", "studio_home", "teacher_dir", "train"]
