"""A model holding the drop-in exports to ONNX: under export the drop-in runs torch.nn's own
forward (fastrnn's kernels are no ONNX operator), so the graph is the one torch.nn gives."""

import io
import warnings

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
fastrnn_torch = pytest.importorskip("fastrnn.torch")


class Tagger(torch.nn.Module):
    def __init__(self, rnn_module):
        super().__init__()
        self.rnn = rnn_module
        self.head = torch.nn.Linear(2 * 5, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def exported_ops(model, x) -> list:
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and LSTM notes
        torch.onnx.export(model, (x,), f, dynamo=False)
    graph = onnx.load_from_string(f.getvalue()).graph
    onnx.checker.check_graph(graph)
    return [n.op_type for n in graph.node]


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_a_model_with_the_drop_in_exports_as_torch_nn_does(kind):
    torch.manual_seed(0)
    theirs = Tagger(getattr(torch.nn, kind)(4, 5, num_layers=2, bidirectional=True))
    ours = Tagger(getattr(fastrnn_torch, kind)(4, 5, num_layers=2, bidirectional=True))
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(6, 2, 4)
    ops = exported_ops(ours, x)
    assert kind in ops
    assert ops == exported_ops(theirs, x)
    with torch.no_grad():  # and outside the export, the drop-in runs as before
        torch.testing.assert_close(ours(x), theirs(x))
