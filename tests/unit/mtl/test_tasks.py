import math

import torch

from mtlbench.mtl.tasks import AGE, GENDER, RACE

LABELS = torch.tensor([[30, 1, 2], [50, 0, 0]])


def test_age_l1_and_mae_in_years():
    out = torch.tensor([[32.0], [45.0]])
    assert AGE.loss(out, LABELS).item() == 3.5  # (2 + 5) / 2
    assert AGE.metric_sum(out, LABELS).item() == 7.0


def test_gender_bce_on_logits_and_accuracy():
    out = torch.tensor([[2.0], [0.5]])  # predicts female, female
    expected = -(math.log(1 / (1 + math.exp(-2.0))) + math.log(1 - 1 / (1 + math.exp(-0.5)))) / 2
    assert math.isclose(GENDER.loss(out, LABELS).item(), expected, rel_tol=1e-6)
    assert GENDER.metric_sum(out, LABELS).item() == 1.0


def test_race_cross_entropy_and_accuracy():
    out = torch.zeros(2, 5)
    out[0, 2] = 1.0
    out[1, 3] = 1.0
    lse = math.log(math.e + 4)
    expected = ((lse - 1.0) + lse) / 2  # first row right class logit 1, second row class 0 logit 0
    assert math.isclose(RACE.loss(out, LABELS).item(), expected, rel_tol=1e-6)
    assert RACE.metric_sum(out, LABELS).item() == 1.0


def test_losses_are_float32_under_bf16_outputs():
    out = torch.tensor([[32.0], [45.0]], dtype=torch.bfloat16)
    assert AGE.loss(out, LABELS).dtype == torch.float32
