"""Distillation: the student's embeddings learn a teacher's (``train.teacher``, ``train.distill``).

The teacher's embeddings of the training faces are computed once by the ``teacher`` stage
(``facerec.pipeline.teacher``); this module holds the loss between them and the student's.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DistillationLoss(nn.Module):
    """Distance between the student's embeddings (B×Ds) and the teacher's (B×Dt):

    - ``cosine``: mean 1 − cos(student, teacher);
    - ``l2``: mean squared distance of the L2-normalised embeddings (2 − 2 cos: the same
      optimum, other gradients far from it);
    - ``similarity``: the mean squared difference of the two B×B cosine-similarity matrices
      (relational: the student keeps how the teacher ranks the batch's faces, in any basis).

    Where the sizes differ, the pointwise kinds learn a linear projection of the student's
    embedding to the teacher's size, trained with the student and dropped with the head.
    """

    def __init__(self, kind: str, student_size: int, teacher_size: int) -> None:
        super().__init__()
        if kind not in ("cosine", "l2", "similarity"):
            raise ValueError(f"unknown distillation loss {kind!r}: cosine, l2 or similarity")
        self.kind = kind
        self.projection = (nn.Linear(student_size, teacher_size, bias=False)
                           if kind != "similarity" and student_size != teacher_size else None)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        student = student.float()
        if self.projection is not None:
            student = self.projection(student)
        student, teacher = F.normalize(student), F.normalize(teacher.float())
        if self.kind == "cosine":
            return (1.0 - (student * teacher).sum(dim=1)).mean()
        if self.kind == "l2":
            return (student - teacher).pow(2).sum(dim=1).mean()
        return F.mse_loss(student @ student.T, teacher @ teacher.T)
