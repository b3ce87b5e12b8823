"""What a trained TF1 checkpoint holds besides the model: optimizer slots, counters, EMA shadows.

A checkpoint written by ``Saver`` after training keeps, next to each trainable variable
``<var>``, its optimizer slots ``<var>/<Slot>`` (Adam ``Adam`` and ``Adam_1``; Momentum
``Momentum``; RMSProp ``RMSProp`` and ``RMSProp_1``; Adagrad, Adadelta, Ftrl, ... and
``_<n>`` suffixed copies when a second optimizer of the kind was built), the non-slot
optimizer scalars (``beta1_power``, ``beta2_power``), ``global_step``, and, when
``ExponentialMovingAverage`` ran, a shadow ``<var>/ExponentialMovingAverage``.  Slots and
shadows have the variable's shape and sit under its name, so a loader that matches cells by
prefix would take ``.../kernel/Adam`` for a kernel: :func:`split` separates them first.

An optimizer built inside a variable scope puts that scope in front of its slots:
``tf.contrib.layers.optimize_loss`` wrote ``OptimizeLoss/<var>/Adam`` (and the scalar
``OptimizeLoss/learning_rate``), ``with tf.variable_scope("train_step"): minimize()``
``train_step/<var>/Adam``, and a model built and trained under one scope ``tagger`` gets
``tagger/tagger/<var>/Adam``.  A slot or shadow is therefore recognised by its suffix and
the variable it shadows: ``<scope>/<var>/<Slot>`` with ``<var>`` in the checkpoint (the
scope may be empty) and, when a scope is in front, of ``<var>``'s shape; the scalars
directly under such a scope (``learning_rate``, ``beta1_power``, ``global_step``) are the
optimizer's too.

Only names that are recognised are set aside: a slot must shadow a variable that is in the
checkpoint; anything else stays and is reported by the strict loader.

>>> names = {"rnn/basic_lstm_cell/kernel": (7, 16), "rnn/basic_lstm_cell/kernel/Adam": (7, 16),
...          "rnn/basic_lstm_cell/kernel/Adam_1": (7, 16), "beta1_power": (), "global_step": ()}
>>> kept, skipped = split(names)
>>> sorted(kept), skipped.summary()
(['rnn/basic_lstm_cell/kernel'], 'Adam slots for 1 variable, beta1_power, global_step')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["SLOT_NAMES", "EMA_SUFFIX", "Skipped", "split", "EMAError"]

#: Slot names of the TF1 optimizers (``tf.compat.v1.train.*Optimizer``); ``_<n>`` may follow.
SLOT_NAMES = (
    "Adam",
    "Momentum",
    "RMSProp",
    "Adagrad",
    "AdagradDA",
    "Adadelta",
    "Ftrl",
    "ProximalAdagrad",
    "ProximalGradientDescent",
    "GradientDescent",
    "LazyAdam",
    "AdaMax",
    "Nadam",
    "AddSign",
    "PowerSign",
)
EMA_SUFFIX = "ExponentialMovingAverage"
_SLOT = re.compile(rf"({'|'.join(SLOT_NAMES)})(_\d+)?")
_NON_SLOT = re.compile(r"(beta1_power|beta2_power)(_\d+)?|global_step")
_SCOPE_SCALAR = re.compile(r"learning_rate(_\d+)?")  # only directly under an optimizer's scope

V = TypeVar("V")


class EMAError(ValueError):
    """``use_ema=True`` but the checkpoint lacks the shadow of a variable that is loaded."""


@dataclass
class Skipped:
    """The names :func:`split` set aside, by kind."""

    slots: dict[str, list[str]] = field(default_factory=dict)  # optimizer -> slot variable names
    scalars: list[str] = field(default_factory=list)  # beta1_power, global_step, ...
    shadows: list[str] = field(default_factory=list)  # <var>/ExponentialMovingAverage
    raw: list[str] = field(default_factory=list)  # with use_ema: the raw values replaced by shadows
    scopes: set[str] = field(
        default_factory=set
    )  # scopes in front of slots/shadows, e.g. OptimizeLoss

    @property
    def names(self) -> list[str]:
        """Every name set aside (raw values replaced by their shadows excluded)."""
        return sorted([n for ns in self.slots.values() for n in ns] + self.scalars + self.shadows)

    def __bool__(self) -> bool:
        return bool(self.names)

    def summary(self) -> str:
        """One line, e.g. ``Adam slots for 6 variables, beta1_power, beta2_power, global_step``."""
        parts = []
        for opt, names in sorted(self.slots.items()):
            owners = {n.rpartition("/")[0] for n in names}
            parts.append(f"{opt} slots for {_count(len(owners))}")
        parts += sorted(self.scalars)
        if self.shadows:
            what = (
                "used in place of the raw values"
                if self.raw
                else "not loaded; use_ema=True loads them"
            )
            parts.append(f"{EMA_SUFFIX} shadows for {_count(len(self.shadows))} ({what})")
        if self.scopes:
            parts.append(
                f"under the optimizer scope{'s' * (len(self.scopes) > 1)} {sorted(self.scopes)}"
            )
        return ", ".join(parts) if parts else "nothing"


def _count(n: int) -> str:
    return f"{n} variable" + ("" if n == 1 else "s")


def _optimizer(slot: str) -> str:
    match = _SLOT.fullmatch(slot)
    return match.group(1) if match else slot


def split(
    variables: Mapping[str, V], use_ema: bool = False, scope: str | None = None
) -> tuple[dict[str, V], Skipped]:
    """``(model variables, what was set aside)`` from a ``{name: value}`` checkpoint.

    With ``use_ema=True`` each variable that has a ``<var>/ExponentialMovingAverage``
    shadow gets the shadow's value.  ``scope`` (optional) limits the EMA check: every
    variable under it must have a shadow, else :class:`EMAError` names those without.
    """
    kept: dict[str, V] = {}
    skipped = Skipped()
    owners: dict[str, str] = {}  # shadow -> the variable it shadows
    for name, value in variables.items():
        last = name.rpartition("/")[2]
        owner = (
            _shadowed(name, variables, skipped.scopes)
            if (last == EMA_SUFFIX or _SLOT.fullmatch(last))
            else None
        )
        if owner is not None and last == EMA_SUFFIX:
            skipped.shadows.append(name)
            owners[name] = owner
        elif owner is not None:
            skipped.slots.setdefault(_optimizer(last), []).append(name)
        elif _NON_SLOT.fullmatch(last):
            skipped.scalars.append(name)
        else:
            kept[name] = value
    for name in [
        n
        for n in kept
        if _SCOPE_SCALAR.fullmatch(n.rpartition("/")[2]) and n.rpartition("/")[0] in skipped.scopes
    ]:
        skipped.scalars.append(name)
        del kept[name]
    # Slots of a shadow or of a slot (rare) were caught above since their owner is a name.
    if use_ema:
        if not skipped.shadows:
            raise EMAError(
                f"use_ema: the checkpoint holds no '<var>/{EMA_SUFFIX}' shadows "
                f"(ExponentialMovingAverage was not saved); load without use_ema"
            )
        shadows = {owners[n]: n for n in skipped.shadows}
        prefix = scope.strip("/") + "/" if scope else ""
        lacking = sorted(
            n for n in kept if n.startswith(prefix) and n not in shadows and _is_float(variables[n])
        )
        if scope and lacking:
            raise EMAError(
                f"use_ema: no {EMA_SUFFIX} shadow for {lacking} (variables under "
                f"{scope!r} that would be loaded); load without use_ema"
            )
        for var, shadow in shadows.items():
            if var in kept:
                kept[var] = variables[shadow]
                skipped.raw.append(var)
    return kept, skipped


def _shadowed(name: str, variables: Mapping[str, Any], scopes: set[str]) -> str | None:
    """The variable a slot or shadow ``[<scope>/]<var>/<suffix>`` shadows, or ``None``; a
    scope in front (added to ``scopes``) needs ``<var>``'s shape to match the slot's."""
    parts = name.split("/")[:-1]
    for start in range(len(parts)):
        owner = "/".join(parts[start:])
        if owner not in variables or owner == name:
            continue
        if start and _shape_of(variables[owner]) != _shape_of(variables[name]):
            continue
        if start:
            scopes.add("/".join(parts[:start]))
        return owner
    return None


def _shape_of(value: Any) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else tuple(getattr(value, "shape", ()))


def _is_float(value: Any) -> bool:
    """Shapes (tuples) count as float variables; arrays by their dtype."""
    kind = getattr(getattr(value, "dtype", None), "kind", "f")
    return kind == "f"
