"""FairLoss: cross-entropy plus a smooth penalty, at most 1/C, for rows whose argmax is wrong."""

from fairloss.functional import FairLossTerms, fair_loss, fair_loss_terms
from fairloss.loss import FairLoss
from fairloss.metrics import (
    SampleScores,
    ScoreSums,
    Violations,
    expected_calibration_error,
    sample_scores,
    score_sums,
    superior_violations,
)

__all__ = [
    "FairLoss",
    "FairLossTerms",
    "SampleScores",
    "ScoreSums",
    "Violations",
    "expected_calibration_error",
    "fair_loss",
    "fair_loss_terms",
    "sample_scores",
    "score_sums",
    "superior_violations",
]
__version__ = "0.2.0"
