"""What the TypeScript and Go examples print, checked against the core: both make the same calls
(the README's body, float32 binary scores as typed arrays, a compare with the bootstrap, and a
refused body)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fairloss import score_batch


def check_example_output(said: dict[str, Any]) -> None:
    assert said["total"] == pytest.approx(1.196681797504425, rel=1e-12)
    assert said["per_sample_total"] == [1.0919719, 1.3013917]
    binary = score_batch(np.array([0.8, -1.5, 2.0], dtype=np.float32), np.array([1, 0, 0]))
    assert said["typed_total"] == binary.columns["total"].tolist()
    assert said["typed_predicted"] == [1, 0, 1]
    assert said["ranking"] == ["model-a", "model-b"]
    assert said["differences"] == [["model-a", "model-b"]]
    assert said["refused"] == ["labels.1"]
