"""What a trained TF1 checkpoint holds besides the model: optimizer slots, counters, EMA shadows.

A checkpoint written by ``Saver`` after training keeps, next to each trainable variable
``<var>``, its optimizer slots ``<var>/<Slot>`` (Adam ``Adam`` and ``Adam_1``; Momentum
``Momentum``; RMSProp ``RMSProp`` and ``RMSProp_1``; Adagrad, Adadelta, Ftrl, ... and
``_<n>`` suffixed copies when a second optimizer of the kind was built), the non-slot
optimizer scalars (``beta1_power``, ``beta2_power``), ``global_step``, and, when
``ExponentialMovingAverage`` ran, a shadow ``<var>/ExponentialMovingAverage``.  Slots and
shadows have the variable's shape and sit under its name, so a loader that matches cells by
prefix would take ``.../kernel/Adam`` for a kernel: :func:`split` separates them first.

Only names that are recognised are set aside: a slot must be the child of a variable that
is in the checkpoint; anything else stays and is reported by the strict loader.

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
SLOT_NAMES = ("Adam", "Momentum", "RMSProp", "Adagrad", "AdagradDA", "Adadelta", "Ftrl",
              "ProximalAdagrad", "ProximalGradientDescent", "GradientDescent", "LazyAdam",
              "AdaMax", "Nadam", "AddSign", "PowerSign")
EMA_SUFFIX = "ExponentialMovingAverage"
_SLOT = re.compile(r"(%s)(_\d+)?" % "|".join(SLOT_NAMES))
_NON_SLOT = re.compile(r"(beta1_power|beta2_power)(_\d+)?|global_step")

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
            what = "used in place of the raw values" if self.raw else "not loaded; use_ema=True loads them"
            parts.append(f"{EMA_SUFFIX} shadows for {_count(len(self.shadows))} ({what})")
        return ", ".join(parts) if parts else "nothing"


def _count(n: int) -> str:
    return f"{n} variable" + ("" if n == 1 else "s")


def _optimizer(slot: str) -> str:
    match = _SLOT.fullmatch(slot)
    return match.group(1) if match else slot


def split(variables: Mapping[str, V], use_ema: bool = False,
          scope: str | None = None) -> tuple[dict[str, V], Skipped]:
    """``(model variables, what was set aside)`` from a ``{name: value}`` checkpoint.

    With ``use_ema=True`` each variable that has a ``<var>/ExponentialMovingAverage``
    shadow gets the shadow's value.  ``scope`` (optional) limits the EMA check: every
    variable under it must have a shadow, else :class:`EMAError` names those without.
    """
    names = set(variables)
    kept: dict[str, V] = {}
    skipped = Skipped()
    for name, value in variables.items():
        owner, _, last = name.rpartition("/")
        if owner in names and last == EMA_SUFFIX:
            skipped.shadows.append(name)
        elif owner in names and _SLOT.fullmatch(last):
            skipped.slots.setdefault(_optimizer(last), []).append(name)
        elif _NON_SLOT.fullmatch(last):
            skipped.scalars.append(name)
        else:
            kept[name] = value
    # Slots of a shadow or of a slot (rare) were caught above since their owner is a name.
    if use_ema:
        if not skipped.shadows:
            raise EMAError(f"use_ema: the checkpoint holds no '<var>/{EMA_SUFFIX}' shadows "
                           f"(ExponentialMovingAverage was not saved); load without use_ema")
        shadows = {n.rpartition("/")[0]: n for n in skipped.shadows}
        prefix = scope.strip("/") + "/" if scope else ""
        lacking = sorted(n for n in kept if n.startswith(prefix) and n not in shadows
                         and _is_float(variables[n]))
        if scope and lacking:
            raise EMAError(f"use_ema: no {EMA_SUFFIX} shadow for {lacking} (variables under "
                           f"{scope!r} that would be loaded); load without use_ema")
        for var, shadow in shadows.items():
            if var in kept:
                kept[var] = variables[shadow]
                skipped.raw.append(var)
    return kept, skipped


def _is_float(value: Any) -> bool:
    """Shapes (tuples) count as float variables; arrays by their dtype."""
    kind = getattr(getattr(value, "dtype", None), "kind", "f")
    return kind == "f"
