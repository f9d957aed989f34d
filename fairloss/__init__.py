"""FairLoss: cross-entropy plus a smooth penalty that makes correct predictions score better."""

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
