"""FairLoss: cross-entropy plus a smooth penalty, at most 1/C, for rows whose argmax is wrong.

The core of the project: torch and numpy only. `FairLoss` (a drop-in for pytorch-fairloss
0.1.1) and `fairloss.functional` for training; `score_batch` with `ScoringOptions` for
evaluation (FairLoss, the paper's scoring rules, mergeable sums, superior violations).
"""

from fairloss.errors import InputError
from fairloss.functional import FairLossTerms, fair_loss, fair_loss_terms
from fairloss.loss import FairLoss
from fairloss.metrics import (
    SampleScores,
    Violations,
    expected_calibration_error,
    sample_scores,
    superior_violations,
)
from fairloss.options import ScoringOptions
from fairloss.scoring import BatchScores, score_batch
from fairloss.sums import ScoreSums, score_sums

__all__ = [
    "BatchScores",
    "FairLoss",
    "FairLossTerms",
    "InputError",
    "SampleScores",
    "ScoreSums",
    "ScoringOptions",
    "Violations",
    "expected_calibration_error",
    "fair_loss",
    "fair_loss_terms",
    "sample_scores",
    "score_batch",
    "score_sums",
    "superior_violations",
]
__version__ = "0.2.0"
