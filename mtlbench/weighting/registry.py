"""Name -> strategy class, and parsing of strategy specs such as ``static:1,0.5,2``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from mtlbench.mtl.tasks import Task
from mtlbench.weighting.base import HyperValue, Strategy

_REGISTRY: dict[str, type[Strategy]] = {}
S = TypeVar("S", bound=type[Strategy])


def register(cls: S) -> S:
    if cls.name in _REGISTRY:
        raise ValueError(f"strategy name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> type[Strategy]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown strategy {name!r}; valid strategies: {', '.join(available())}"
        ) from None


def split_spec(spec: str) -> tuple[str, str | None]:
    name, sep, arg = spec.partition(":")
    return name.strip(), (arg.strip() if sep else None)


def expand_spec(spec: str, tasks: Sequence[str] = ("age", "gender", "race")) -> list[str]:
    """Grid expansion: a bare name whose positional hyperparameter is marked ``expand`` becomes
    one spec per choice, or per task when it declares none (``stl`` -> ``stl:age``,
    ``stl:gender``, ``stl:race`` for UTKFace's tasks)."""
    name, arg = split_spec(spec)
    if arg is not None:
        return [spec]
    for h in get(name).hparams:
        if h.positional and h.expand:
            return [f"{name}:{choice}" for choice in (h.choices or tasks)]
    return [spec]


def resolve(
    spec: str, overrides: Iterable[str] = ()
) -> tuple[type[Strategy], dict[str, HyperValue]]:
    """Validate a spec and ``<strategy>.<param>=<value>`` overrides; return the class and the
    full hyperparameter dict (defaults filled in), ready to log as ``strategy.<param>``."""
    name, arg = split_spec(spec)
    cls = get(name)
    declared = {h.name: h for h in cls.hparams}
    values: dict[str, HyperValue] = {h.name: h.default for h in cls.hparams}
    if arg is not None:
        positional = [h for h in cls.hparams if h.positional]
        if not positional:
            raise ValueError(f"strategy {name!r} takes no ':' argument (got {spec!r})")
        values[positional[0].name] = positional[0].parse(arg)
    for item in overrides:
        key, _, text = item.partition("=")
        owner, _, pname = key.strip().partition(".")
        if owner != name:
            continue
        if pname not in declared:
            valid = ", ".join(declared) or "none"
            raise ValueError(f"strategy {name!r} has no hyperparameter {pname!r}; valid: {valid}")
        values[pname] = declared[pname].parse(text.strip())
    return cls, values


def check_overrides(specs: Sequence[str], overrides: Iterable[str]) -> None:
    """Refuse ``--strategy-param`` items whose strategy is not part of the run."""
    names = {split_spec(s)[0] for s in specs}
    for item in overrides:
        owner = item.partition("=")[0].partition(".")[0].strip()
        get(owner)
        if owner not in names:
            raise ValueError(
                f"--strategy-param {item!r} names strategy {owner!r}, which is not in this run "
                f"({', '.join(sorted(names))})"
            )


def create(
    spec: str, tasks: Sequence[Task], *, seed: int = 0, overrides: Iterable[str] = ()
) -> Strategy:
    cls, values = resolve(spec, overrides)
    return cls(tasks, seed=seed, **values)


def describe(hparams: Mapping[str, HyperValue], cls: type[Strategy]) -> dict[str, str]:
    """MLflow params ``strategy.<name>`` for a resolved hyperparameter dict."""
    by_name = {h.name: h for h in cls.hparams}
    return {f"strategy.{k}": by_name[k].format(v) for k, v in hparams.items()}
