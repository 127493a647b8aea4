import urllib.error

import pytest
import torch

from mtlbench.config import ModelConfig
from mtlbench.mtl.model import WeightsError, build_model
from mtlbench.mtl.tasks import TASKS


@pytest.mark.parametrize(
    ("backbone", "dim"),
    [
        ("tiny", 32),
        ("resnet18", 512),
        ("resnet34", 512),
        ("resnet50", 2048),
        ("mobilenet_v3_small", 576),
    ],
)
def test_backbones_give_features_and_head_shapes(backbone, dim):
    model = build_model(ModelConfig(backbone=backbone), TASKS).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.features.shape == (2, dim)
    assert [o.shape for o in out.outputs] == [(2, 1), (2, 1), (2, 5)]


def test_backbone_runs_once_per_forward():
    model = build_model(ModelConfig(backbone="resnet18"), TASKS)
    calls = []
    model.backbone.register_forward_hook(lambda *_: calls.append(1))
    model(torch.randn(2, 3, 32, 32))
    assert len(calls) == 1


def test_tutorial_model_runs_backbone_three_times():
    from mtlbench.bench.throughput import TutorialHydraNet

    model = TutorialHydraNet("tiny")
    calls = []
    model.net.register_forward_hook(lambda *_: calls.append(1))
    model(torch.randn(2, 3, 32, 32))
    assert len(calls) == 3


def test_weights_path_round_trip(tmp_path):
    model = build_model(ModelConfig(backbone="tiny"), TASKS)
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    loaded = build_model(ModelConfig(backbone="tiny", weights=str(path)), TASKS)
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    # A backbone-only state_dict (e.g. a torchvision checkpoint) loads into the backbone.
    torch.save(model.backbone.state_dict(), path)
    loaded = build_model(ModelConfig(backbone="tiny", weights=str(path)), TASKS)
    assert torch.equal(loaded.backbone.body[0].weight, model.backbone.body[0].weight)


def test_weights_file_that_does_not_match_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"something.else": torch.zeros(3)}, path)
    with pytest.raises(WeightsError, match="do not match the model"):
        build_model(ModelConfig(backbone="tiny", weights=str(path)), TASKS)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot load weights"):
        build_model(ModelConfig(backbone="tiny", weights=str(path)), TASKS)


def test_imagenet_offline_names_the_fix(monkeypatch):
    import torchvision.models as tvm

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tvm, "get_model", offline)
    with pytest.raises(WeightsError, match="--weights none"):
        build_model(ModelConfig(backbone="resnet18", weights="imagenet"), TASKS)


def test_regression_head_starts_at_given_value():
    model = build_model(ModelConfig(backbone="tiny"), TASKS)
    model.init_output_bias(0, 33.0)
    assert model.heads[0][-1].bias.item() == 33.0
