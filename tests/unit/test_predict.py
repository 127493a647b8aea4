"""`mtlbench predict`'s pieces: the model card, output decoding, image reading, formats."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mtlbench.predict.card import ModelCard, TaskCard
from mtlbench.predict.exported import ExportedHydraNet, decode_outputs
from mtlbench.predict.formatting import table_rows, to_csv, to_json
from mtlbench.predict.images import load_images
from mtlbench.predict.run import PredictError, Prediction, Predictions, model_uri

CARD = ModelCard(
    dataset="utkface",
    tasks=(
        TaskCard("age", "regression", 1, unit="years"),
        TaskCard("gender", "binary", 1, labels=("male", "female")),
        TaskCard("race", "multiclass", 3, labels=("a", "b", "c")),
    ),
    image_size=8,
    channels=3,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
)


def test_card_round_trips_and_rejects_bad_fields() -> None:
    assert ModelCard.from_dict(CARD.to_dict()) == CARD
    with pytest.raises(ValueError, match="unknown kind 'ordinal'"):
        TaskCard("x", "ordinal", 1)
    with pytest.raises(ValueError, match="2 labels for 3 classes"):
        TaskCard("x", "multiclass", 3, labels=("a", "b"))
    with pytest.raises(ValueError, match="missing or bad field"):
        ModelCard.from_dict({"dataset": "x"})


def test_decode_outputs_by_hand() -> None:
    # gender logit 0 -> p(female) = 0.5, not above 0.5 -> male with p 0.5; race softmax of
    # (0, ln 2, ln 5) = (1, 2, 5) / 8 -> class c with 5/8.
    raw = np.array([[41.5, 0.0, 0.0, math.log(2), math.log(5)]])
    (row,) = decode_outputs(CARD, raw)
    assert row["age"] == {"value": 41.5}
    assert row["gender"]["value"] == "male" and row["gender"]["p"] == pytest.approx(0.5)
    assert row["race"]["value"] == "c" and row["race"]["p"] == pytest.approx(5 / 8)
    logit = math.log(3)  # sigmoid = 3/4
    (row,) = decode_outputs(CARD, np.array([[0.0, logit, 9.0, 0.0, 0.0]]))
    assert row["gender"] == {"value": "female", "p": pytest.approx(0.75)}
    assert row["race"]["value"] == "a"
    with pytest.raises(ValueError, match=r"need \[N, 5\]"):
        decode_outputs(CARD, np.zeros((1, 4)))


class _Heads(torch.nn.Module):
    """Returns the normalised mean pixel per channel as 'heads' so the test sees the input."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = x.mean(dim=(2, 3))
        return (m[:, :1], m[:, 1:2], m)


def test_exported_module_normalises_with_the_card() -> None:
    module = ExportedHydraNet(_Heads(), CARD)
    pixels = torch.full((2, 3, 8, 8), 191, dtype=torch.uint8)  # (191/255 - 0.5) / 0.25
    out = module(pixels)
    assert out.shape == (2, 5)
    assert out[0, 0].item() == pytest.approx((191 / 255 - 0.5) / 0.25, rel=1e-6)


def test_load_images_lists_unreadable_and_missing(tmp_path: Path) -> None:
    Image.new("RGB", (20, 10), (255, 0, 0)).save(tmp_path / "red.png")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (16, 16), (0, 0, 255)).save(tmp_path / "sub" / "blue.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    batch = load_images([tmp_path, tmp_path / "nope.png"], size=8)
    assert [p.name for p in batch.paths] == ["red.png", "blue.jpg"]
    assert batch.pixels.shape == (2, 3, 8, 8) and batch.pixels.dtype == np.uint8
    assert tuple(batch.pixels[0, :, 4, 4]) == (255, 0, 0)
    reasons = {p.name: r for p, r in batch.unreadable}
    assert set(reasons) == {"broken.jpg", "nope.png"}
    assert "no such file" in reasons["nope.png"]
    gray = load_images([tmp_path / "red.png"], size=8, channels=1)
    assert gray.pixels.shape == (1, 1, 8, 8) and gray.pixels[0, 0, 0, 0] == 76  # 0.299*255


def test_model_uri_forms() -> None:
    rid = "0123456789abcdef0123456789abcdef"
    assert model_uri(rid) == f"runs:/{rid}/model"
    assert model_uri("models:/winner/1") == "models:/winner/1"
    with pytest.raises(PredictError, match="not a run id"):
        model_uri("winner")


def test_formats_carry_every_task() -> None:
    raw = np.array([[30.0, 2.0, 0.0, 0.0, 3.0]])
    preds = Predictions(
        CARD, (Prediction(Path("x/a.jpg"), decode_outputs(CARD, raw)[0]),), ((Path("b"), "bad"),)
    )
    lines = to_csv(preds).splitlines()
    assert lines[0] == "image,age,gender,gender_p,race,race_p"
    assert lines[1].startswith("x/a.jpg,30.0,female,0.8807")
    payload = json.loads(to_json(preds))
    assert payload["predictions"][0]["race"] == "c"
    assert payload["unreadable"] == [{"image": "b", "reason": "bad"}]
    header, cells = table_rows(preds)
    assert header == ["image", "age", "gender", "race"]
    assert cells[0][1] == "30.0 years" and cells[0][2] == "female (88%)"
