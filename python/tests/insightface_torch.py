"""insightface's PyTorch margin modules, transcribed from their published source (formulas
and control flow as in the repository; only the class names carry the commit).

* ``ArcFace2e2e8c9``: recognition/arcface_torch/losses.py @2e2e8c9, the th/mm fallback:
  where(cos > th, cos·cos m − sin θ·sin m, cos − sin(π − m)·m), th = cos(π − m), sin θ =
  sqrt(1 − cos²), on the autograd path. Writes the target logits into its input in place.
* ``CombinedMarginLoss9097cd7``: the same file @9097cd7: arccos_/+m2/cos_ under
  ``torch.no_grad()`` on the whole logits tensor (so autograd sees only ``logits · s``), or
  ``cos − m3`` for CosFace. Also in place.
* ``AnalyticAutograd``: cos(m1·acos(c) + m2) − m3 on a copy, by autograd: the formula and its
  exact derivative (what MXNet's ``margin_softmax`` computes), without in-place writes.
"""

from __future__ import annotations

import math

import torch


class ArcFace2e2e8c9(torch.nn.Module):
    def __init__(self, s=64.0, margin=0.5, easy_margin=False):
        super().__init__()
        self.scale = s
        self.margin = margin
        self.cos_m = math.cos(margin)
        self.sin_m = math.sin(margin)
        self.theta = math.cos(math.pi - margin)
        self.sinmm = math.sin(math.pi - margin) * margin
        self.easy_margin = easy_margin

    def forward(self, logits: torch.Tensor, labels: torch.Tensor):
        index = torch.where(labels != -1)[0]
        target_logit = logits[index, labels[index].view(-1)]
        sin_theta = torch.sqrt(1.0 - torch.pow(target_logit, 2))
        cos_theta_m = target_logit * self.cos_m - sin_theta * self.sin_m
        if self.easy_margin:
            final_target_logit = torch.where(target_logit > 0, cos_theta_m, target_logit)
        else:
            final_target_logit = torch.where(
                target_logit > self.theta, cos_theta_m, target_logit - self.sinmm
            )
        logits[index, labels[index].view(-1)] = final_target_logit
        logits = logits * self.scale
        return logits


class CombinedMarginLoss9097cd7(torch.nn.Module):
    def __init__(self, s, m1, m2, m3, interclass_filtering_threshold=0):
        super().__init__()
        self.s = s
        self.m1 = m1
        self.m2 = m2
        self.m3 = m3
        self.interclass_filtering_threshold = interclass_filtering_threshold

    def forward(self, logits, labels):
        index_positive = torch.where(labels != -1)[0]
        target_logit = logits[index_positive, labels[index_positive].view(-1)]
        if self.m1 == 1.0 and self.m3 == 0.0:
            with torch.no_grad():
                target_logit.arccos_()
                logits.arccos_()
                final_target_logit = target_logit + self.m2
                logits[index_positive, labels[index_positive].view(-1)] = final_target_logit
                logits.cos_()
            logits = logits * self.s
        elif self.m3 > 0:
            final_target_logit = target_logit - self.m3
            logits[index_positive, labels[index_positive].view(-1)] = final_target_logit
            logits = logits * self.s
        else:
            raise ValueError("unsupported (m1, m3)")
        return logits


class AnalyticAutograd(torch.nn.Module):
    def __init__(self, m1=1.0, m2=0.5, m3=0.0, s=None):
        super().__init__()
        self.m1, self.m2, self.m3, self.s = m1, m2, m3, s

    def forward(self, cos, labels):
        labels = labels.view(-1)
        index = torch.where(labels != -1)[0]
        target = cos[index, labels[index]]
        margin = torch.cos(self.m1 * torch.acos(target) + self.m2) - self.m3
        onehot = torch.zeros_like(cos, dtype=torch.bool)
        onehot[index, labels[index]] = True
        full = torch.zeros_like(cos)
        full = full.index_put((index, labels[index]), margin)
        out = torch.where(onehot, full, cos)
        return out if self.s is None else out * self.s
