"""The FairLoss module: a drop-in for pytorch-fairloss 0.1.1."""

from __future__ import annotations

from torch import Tensor, nn

from fairloss.functional import Reduction, check_options, fair_loss


class FairLoss(nn.Module):
    r"""Cross-entropy plus a smooth penalty for rows whose argmax is not the true class.

    For logits :math:`z \in \mathbb{R}^{N \times C}` and labels :math:`y`:

    .. math::
        \text{gap}_i = \frac{1}{\beta} \log \sum_c e^{\beta (z_{ic} - z_{iy_i})}
        \qquad
        \text{penalty}_i = \frac{1}{C} \tanh\!\Big(\frac{s \cdot \text{gap}_i}{2}\Big)
        \qquad
        \text{loss}_i = \text{CE}(z_i, y_i) + \text{penalty}_i

    ``gap`` is the smooth maximum ``logsumexp(beta * z) / beta`` minus the true logit, so the
    penalty is near 0 when the true class has the largest logit and near ``1/C`` when another
    class beats it. The penalty makes it rarer that a correct prediction scores worse than a
    wrong one, but does not rule it out: it is at most ``1/C``, while the cross-entropy of a
    barely-correct row can exceed that of a barely-wrong row by up to ``ln(C/2)`` (logits
    ``[[0, 0.03, 0], [0.04, 0, -30]]``, labels ``[1, 1]``: the correct row 0 scores 1.0787, the
    wrong row 1 scores 1.0467). The Penalized Log Loss and Penalized Brier Score of Ahmadian,
    Ghatee & Wahlström (2025), in `fairloss.metrics`, are superior by construction; use
    `fairloss.superior_violations` to count the inversions FairLoss leaves. The gap is computed
    shifted by the true logit, which keeps it exact on confident rows, and everything is
    computed in at least float32 (``beta * z`` overflows float16).

    Args:
        cross_entropy: an ``nn.CrossEntropyLoss(reduction="none")`` whose ``weight``,
            ``label_smoothing`` and ``ignore_index`` apply to the cross-entropy term.
            Class weights scale a sample's cross-entropy but do not divide the mean.
            A sample whose label is ``ignore_index`` scores 0 and is left out of the mean.
        smooth_max_beta: sharpness :math:`\beta` of the smooth maximum.
        scaling_factor: steepness :math:`s` of the penalty.
        reduction: ``"mean"`` (over the counted samples), ``"sum"`` or ``"none"``.

    Shape:
        - logits: :math:`(N, C)` or :math:`(N, C, d_1, ..., d_k)` floating point,
          :math:`C \ge 2`, as for ``nn.CrossEntropyLoss`` (segmentation, tokens).
        - target: :math:`(N)` or :math:`(N, d_1, ..., d_k)` integer labels in :math:`[0, C)` or
          equal to ``ignore_index``.
        - output: a scalar (the mean over the counted positions, or their sum), or the target's
          shape with ``reduction="none"``.

    Example:
        >>> import torch
        >>> loss = FairLoss(reduction="none")
        >>> logits = torch.tensor([[0.34, 0.33, 0.33], [0.49, 0.51, 0.0]])
        >>> loss(logits, torch.tensor([0, 0])).round(decimals=4)
        tensor([1.0920, 1.3014])
    """

    def __init__(
        self,
        cross_entropy: nn.CrossEntropyLoss | None = None,
        smooth_max_beta: float = 1000.0,
        scaling_factor: float = 1000.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        if cross_entropy is None:
            cross_entropy = nn.CrossEntropyLoss(reduction="none")
        if not isinstance(cross_entropy, nn.CrossEntropyLoss):
            raise TypeError(
                "Expected `cross_entropy` to be an nn.CrossEntropyLoss, "
                f"but got {type(cross_entropy).__name__}"
            )
        if cross_entropy.reduction != "none":
            raise ValueError(
                'Expected `cross_entropy` with reduction="none" (FairLoss adds the penalty per '
                f'sample, then reduces), but got reduction="{cross_entropy.reduction}"'
            )
        check_options(smooth_max_beta, scaling_factor, cross_entropy.label_smoothing, reduction)
        self.cross_entropy = cross_entropy
        self.smooth_max_beta = smooth_max_beta
        self.scaling_factor = scaling_factor
        self.reduction: Reduction = reduction

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return fair_loss(
            output,
            target,
            smooth_max_beta=self.smooth_max_beta,
            scaling_factor=self.scaling_factor,
            weight=self.cross_entropy.weight,
            label_smoothing=self.cross_entropy.label_smoothing,
            ignore_index=self.cross_entropy.ignore_index,
            reduction=self.reduction,
        )
