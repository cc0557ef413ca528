"""fastrnn for PyTorch users: drop-in subclasses of torch.nn's LSTM, GRU, RNN, LSTMCell,
GRUCell and RNNCell whose forward (and backward) run fastrnn's fused CPU kernels.

Switch one class (``from fastrnn.torch import LSTM``), a whole model in place
(:func:`replace_rnns`), or every construction within a block (:func:`patch`) or for the
process (:func:`install`). bfloat16 modules and ``torch.autocast("cpu",
dtype=torch.bfloat16)`` run the kernels' bf16 products (bf16 operands, float32 sums). Each
call falls back to torch.nn's own implementation where the kernels do not apply: float16,
tensors on a device fastrnn does not run (CUDA tensors take fastrnn's CUDA backend where it
is usable, in float32/float64), TorchScript, tracing, ONNX export, autocast to other dtypes
or on CUDA, torch.func transforms, and inside :func:`disabled`. torch.compile runs the RNN
eagerly (a graph break). Double backward (create_graph=True) raises, as with cuDNN.
"""

try:
    import torch
except ImportError as e:
    raise ImportError(
        'fastrnn.torch needs PyTorch, which is not installed: pip install "fastrnn[torch]"'
    ) from e

from ..regularization import Regularization
from .modules import (
    GRU,
    LSTM,
    RNN,
    GRUCell,
    LayerNormGRU,
    LayerNormLSTM,
    LSTMCell,
    RNNCell,
    disabled,
    fast_path_reason,
)
from .switch import install, patch, replace_rnns, uninstall

__all__ = [
    "LSTM",
    "GRU",
    "RNN",
    "LSTMCell",
    "GRUCell",
    "RNNCell",
    "LayerNormLSTM",
    "LayerNormGRU",
    "disabled",
    "fast_path_reason",
    "replace_rnns",
    "patch",
    "install",
    "uninstall",
]

# torch.load(path) of a whole model holding them, with torch's default weights_only=True (a
# regularized module holds its options in a Regularization).
torch.serialization.add_safe_globals(
    [LSTM, GRU, RNN, LSTMCell, GRUCell, RNNCell, LayerNormLSTM, LayerNormGRU, Regularization]
)
