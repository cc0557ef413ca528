"""Switching existing code to the drop-in classes: :func:`replace_rnns` for a model already
built, :func:`patch` / :func:`install` for code that constructs torch.nn's classes."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Iterator

import torch

from .modules import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

__all__ = ["replace_rnns", "patch", "install", "uninstall"]

log = logging.getLogger("fastrnn.torch")

# torch.nn's class -> the drop-in, for the exact classes only (subclasses are left alone).
_DROP_INS = {
    torch.nn.LSTM: LSTM,
    torch.nn.GRU: GRU,
    torch.nn.RNN: RNN,
    torch.nn.LSTMCell: LSTMCell,
    torch.nn.GRUCell: GRUCell,
    torch.nn.RNNCell: RNNCell,
}
# The namespaces whose names patch() rebinds: torch.nn, torch.nn.modules, torch.nn.modules.rnn.
_NAMESPACES = (torch.nn, torch.nn.modules, torch.nn.modules.rnn)

_lock = threading.Lock()
_depth = 0  # open patch() blocks, plus one while install() is in effect
_installed = False


def replace_rnns(model: torch.nn.Module) -> torch.nn.Module:
    """Swaps, in place, every module of ``model`` (``model`` included) whose class is exactly
    torch.nn's LSTM, GRU, RNN, LSTMCell, GRUCell or RNNCell for the drop-in class. The
    modules stay the same objects with the very same Parameter objects (only their class
    changes), so an optimizer built before keeps updating them. Subclasses of torch.nn's
    classes are left alone. Logs the swapped modules' names (logger "fastrnn.torch", level
    INFO) and returns ``model``."""
    swapped = []
    for name, module in model.named_modules():
        cls = _DROP_INS.get(type(module))
        if cls is not None:
            module.__class__ = cls
            swapped.append(name or "<model>")
    log.info("replace_rnns: swapped %d module(s): %s", len(swapped), ", ".join(swapped) or "-")
    return model


def _rebind(on: bool) -> None:
    for ns in _NAMESPACES:
        for orig, cls in _DROP_INS.items():
            setattr(ns, orig.__name__, cls if on else orig)


def _enter() -> None:
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1:
            _rebind(True)


def _exit() -> None:
    global _depth
    with _lock:
        _depth -= 1
        if _depth == 0:
            _rebind(False)


@contextlib.contextmanager
def patch() -> Iterator[None]:
    """Within this block, ``torch.nn.LSTM`` (and ``torch.nn.modules.LSTM``,
    ``torch.nn.modules.rnn.LSTM``) and the other five names construct the drop-in classes;
    undone on exit. Process-wide (it rebinds module attributes, so it affects every thread)
    and nestable. Code that imported a class by name before (``from torch.nn import LSTM``)
    keeps torch's."""
    _enter()
    try:
        yield
    finally:
        _exit()


def install() -> None:
    """As :func:`patch`, for the rest of the process (until :func:`uninstall`)."""
    global _installed
    if not _installed:
        _installed = True
        _enter()


def uninstall() -> None:
    """Undoes :func:`install` (a no-op without one)."""
    global _installed
    if _installed:
        _installed = False
        _exit()
