"""Predictions as a terminal table, CSV or JSON (one row per image, columns per task)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from mtlbench.predict.run import Predictions

FORMATS = ("table", "csv", "json")


def _cell(pred: dict[str, Any], unit: str) -> str:
    value = pred["value"]
    if isinstance(value, float):
        text = f"{value:.1f}" + (f" {unit}" if unit else "")
    elif isinstance(value, list):
        text = ", ".join(str(v) for v in value) or "-"
    else:
        text = str(value)
    p = pred.get("p")
    return f"{text} ({p:.0%})" if isinstance(p, float) else text


def columns(preds: Predictions) -> list[str]:
    names = ["image"]
    for task in preds.card.tasks:
        names.append(task.name)
        if task.kind in ("binary", "multiclass"):
            names.append(f"{task.name}_p")
    return names


def records(preds: Predictions) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for row in preds.rows:
        rec: dict[str, Any] = {"image": str(row.path)}
        for task in preds.card.tasks:
            pred = row.tasks[task.name]
            rec[task.name] = pred["value"]
            if task.kind in ("binary", "multiclass"):
                rec[f"{task.name}_p"] = round(float(pred["p"]), 6)
        out.append(rec)
    return out


def to_csv(preds: Predictions) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(preds), lineterminator="\n")
    writer.writeheader()
    for rec in records(preds):
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in rec.items()})
    return buf.getvalue()


def to_json(preds: Predictions) -> str:
    payload = {
        "predictions": records(preds),
        "unreadable": [{"image": str(p), "reason": r} for p, r in preds.unreadable],
    }
    return json.dumps(payload, indent=2)


def table_rows(preds: Predictions) -> tuple[list[str], list[list[str]]]:
    """Header and cells for a rich table: one column per task, confidence in brackets."""
    header = ["image", *(t.name for t in preds.card.tasks)]
    units = {t.name: t.unit for t in preds.card.tasks}
    cells = [
        [row.path.name, *(_cell(row.tasks[t.name], units[t.name]) for t in preds.card.tasks)]
        for row in preds.rows
    ]
    return header, cells
