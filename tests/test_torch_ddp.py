"""fastrnn.torch.LSTM under DistributedDataParallel: two processes (gloo, rendezvous through a
file in tmp_path, one thread each) train a bidirectional 2-layer LSTM + linear head on
PackedSequence batches of variable lengths with SGD, and

(a) with dropout 0.1 (masks from torch's RNG, seeded identically on every rank), the ranks end
    with bit-identical parameters: DDP keeps replicas in lock-step whatever the kernels do;
(b) with dropout 0, in float64, the parameters match one process training on the combined
    batch (the mean of the two ranks' losses) to ~1e-10. Dropout is off here because the
    masks one process draws for the combined batch cannot be those two ranks draw for halves.

This file is also the worker: ``python test_torch_ddp.py RANK WORLD INIT_METHOD OUT_DIR``."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
I, H, CLASSES, B_RANK, T_MAX, STEPS, LR = 5, 8, 3, 4, 7, 4, 0.5


def make_model(torch, dropout: float, dtype):
    import fastrnn.torch as ft

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = ft.LSTM(I, H, num_layers=2, bidirectional=True, dropout=dropout)
            self.head = torch.nn.Linear(4 * H, CLASSES)

        def forward(self, packed):
            y, (h_n, _) = self.rnn(packed)
            padded, lengths = torch.nn.utils.rnn.pad_packed_sequence(y)  # (T, B, 2H)
            pooled = padded.sum(0) / lengths.to(padded.dtype).unsqueeze(1)
            return self.head(torch.cat([pooled, h_n[-2], h_n[-1]], 1))  # last layer, both ways

    torch.manual_seed(0)
    return Net().to(dtype)


def batch(torch, step: int, rows: slice, dtype):
    """The step's combined batch (2 * B_RANK sequences, lengths 1..T_MAX in any order), rows
    `rows` of it, as a PackedSequence (unsorted) and the labels."""
    g = torch.Generator().manual_seed(1000 + step)
    n = 2 * B_RANK
    lengths = torch.randint(1, T_MAX + 1, (n,), generator=g)
    x = torch.randn(T_MAX, n, I, generator=g, dtype=torch.float64).to(dtype)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        x[:, rows], lengths[rows], enforce_sorted=False
    )
    return packed, labels[rows]


def train(torch, model, rows: slice, dtype):
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for step in range(STEPS):
        packed, labels = batch(torch, step, rows, dtype)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(packed), labels).backward()
        opt.step()


def worker(rank: int, world: int, init_method: str, out_dir: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    import fastrnn

    torch.set_num_threads(1)
    fastrnn.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        rows = slice(rank * B_RANK, (rank + 1) * B_RANK)
        results = {}
        for name, dropout, dtype in [
            ("dropout", 0.1, torch.float32),
            ("exact", 0.0, torch.float64),
        ]:
            model = make_model(torch, dropout, dtype)
            torch.manual_seed(1)  # the same dropout stream on every rank
            train(torch, DDP(model), rows, dtype)
            results[name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_two_ranks_agree_and_match_one_process(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this PyTorch build")
    pytest.importorskip("fastrnn.torch")
    init = f"file://{tmp_path / 'rendezvous'}"
    env = dict(os.environ, OMP_NUM_THREADS="1", FASTRNN_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), str(r), "2", init, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for r in range(2)
    ]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=120)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for r, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"rank {r}:\n{out[-3000:]}"
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))

    initial = make_model(torch, 0.1, torch.float32).state_dict()
    for k, v in r0["dropout"].items():
        assert torch.equal(v, r1["dropout"][k]), f"{k} differs between the ranks"
        assert not torch.equal(v, initial[k]), f"{k} did not train"

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = make_model(torch, 0.0, torch.float64)
        train(torch, model, slice(0, 2 * B_RANK), torch.float64)
    finally:
        torch.set_num_threads(threads)
    worst = 0.0
    for k, v in model.state_dict().items():
        assert torch.equal(r0["exact"][k], r1["exact"][k]), f"{k} differs between the ranks"
        torch.testing.assert_close(r0["exact"][k], v, rtol=1e-10, atol=1e-10, msg=k)
        assert not torch.equal(v, initial[k].to(v.dtype)), f"{k} did not train"
        worst = max(worst, float((r0["exact"][k] - v).abs().max()))
    print(f"DDP (2 ranks) vs one process, float64: max |difference| {worst:.3g}")


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
