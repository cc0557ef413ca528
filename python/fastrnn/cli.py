"""The ``fastrnn`` command (also ``python -m fastrnn``).

    fastrnn train-charlm      train a character-level LSTM language model (no download)
    fastrnn sample CKPT       generate text from a checkpoint
    fastrnn bench [--quick]   the benchmark suite
    fastrnn check             the kernels against the NumPy reference, and the speed-up
    fastrnn info              version, backends, CPU features, threads, BLAS

Errors in what the user gave (a missing file, text that is not UTF-8, a damaged or
mismatched checkpoint, a bad option) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from typing import List, Optional

import numpy as np

import fastrnn
from fastrnn.errors import UserError  # also fastrnn.cli.UserError, as before
from fastrnn.openblas import blas_core, command_line, cpu_flag_set
from fastrnn.progress import Progress  # also fastrnn.cli.Progress

# ----------------------------------------------------------------------------- commands


def cmd_info(args) -> int:
    print(
        f"fastrnn {fastrnn.__version__} on Python {platform.python_version()}, {platform.machine()}"
    )
    for name, status in fastrnn.backends().items():
        print(f"backend {name}: {status}")
    if fastrnn.cuda._cuda is not None:
        print(f"CUDA module: built with {fastrnn.cuda._cuda.build_info}")
    print(
        f"CPU kernels: {fastrnn.cpu_isa()} (this CPU supports: "
        f"{', '.join(fastrnn.available_cpu_isas())})"
    )
    print(f"bf16 products (precision='bf16'): {bf16_products(fastrnn.cpu_isa())}")
    flags = cpu_flags()
    if flags:
        print(f"CPU features: {' '.join(flags)}")
    print(
        f"threads: {fastrnn.get_num_threads()} (of {os.cpu_count()} logical CPUs; "
        f"fastrnn.set_num_threads to change)"
    )
    print(f"BLAS: {fastrnn.blas_info()} (single-threaded inside fastrnn's pool)")
    core = blas_core(_command(args))
    print(f"BLAS core: {core.summary()}")
    if core.warning:
        print(f"warning: {core.warning}")
    return 0


def _command(args) -> str:
    """The command line, for the fix a BLAS warning shows (set by main)."""
    return getattr(args, "command_line", None) or f"fastrnn {args.command}"


def bf16_products(isa: str) -> str:
    """How the CPU kernels of instruction set ``isa`` compute bf16 products."""
    if isa == "avx512bf16":
        return "AVX512-BF16 dot products (vdpbf16ps) on bf16-packed operands, float32 sums"
    return (
        "portable: the float32 kernels on bf16-rounded copies of the operands (the same "
        "results; no AVX512-BF16 in use)"
    )


def cpu_flags() -> List[str]:
    """The SIMD and matrix features of this CPU that matter to RNN kernels (Linux)."""
    wanted = [
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
        "avx512_bf16",
        "avx512_fp16",
        "amx_tile",
        "amx_bf16",
        "amx_int8",
        "asimd",
        "sve",
    ]
    have = cpu_flag_set()
    return [w for w in wanted if w in have]


def cmd_check(args) -> int:
    from .check import run_check

    try:
        return run_check(
            args.steps, args.batch, args.hidden, args.repeats, args.backend, command=_command(args)
        )
    except RuntimeError as e:  # the CUDA backend is not usable here
        raise UserError(str(e)) from None


def _regularization_note(c) -> str:
    """The char LM's regularization, for its banner ("" when off)."""
    parts = [
        f"{name} {p}"
        for name, p in (
            ("zoneout", c.zoneout),
            ("recurrent dropout", c.recurrent_dropout),
            ("weight drop", c.weight_drop),
        )
        if p
    ]
    if c.layer_norm:
        parts.insert(0, "layer norm")
    return "; " + ", ".join(parts) if parts else ""


def read_text(path: Optional[str]) -> str:
    if path is None:
        from .charlm import default_corpus

        return default_corpus()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise UserError(f"--text: no such file: {path}") from None
    except OSError as e:
        raise UserError(f"--text: cannot read {path}: {e.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(
            f"--text: {path} is not UTF-8 text (byte {e.start}: {data[e.start : e.start + 1]!r})"
        ) from None


def cmd_train_charlm(args) -> int:
    from . import charlm
    from .train import Adam

    if args.temperature <= 0:
        raise UserError(f"--temperature must be > 0, got {args.temperature}")
    if args.threads:
        fastrnn.set_num_threads(args.threads)
    # The loss head's matmuls run on NumPy's OpenBLAS, whose threads would spin beside
    # fastrnn's (measured 2.4x slower): the LSTM takes the cores, NumPy one thread.
    fastrnn.set_numpy_blas_threads(1)
    if not 0 <= args.held_out < 0.5:
        raise UserError(f"--held-out must be in [0, 0.5), got {args.held_out}")
    for flag in ("zoneout", "recurrent_dropout", "weight_drop"):
        p = getattr(args, flag)
        if not 0 <= p < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be in [0, 1), got {p}")
    if args.resume:
        model, opt, step, state = _load(args.resume, args.backend)
        text = read_text(args.text)
        unknown = sorted(set(text) - set(model.vocab))
        if unknown:
            raise UserError(
                f"--text has characters the checkpoint's model never saw: {''.join(unknown)[:20]!r}"
            )
        print(f"resumed {args.resume} at step {step}", file=sys.stderr)
    else:
        text = read_text(args.text)
        if len(set(text)) < 2:
            raise UserError("the text needs at least two distinct characters")
        config = charlm.CharLMConfig(
            hidden_size=args.hidden,
            num_layers=args.layers,
            embed_size=args.embed,
            batch_size=args.batch,
            seq_len=args.seq_len,
            lr=args.lr,
            seed=args.seed,
            backend=args.backend,
            precision=args.precision,
            zoneout=args.zoneout,
            recurrent_dropout=args.recurrent_dropout,
            weight_drop=args.weight_drop,
            layer_norm=args.layer_norm,
        )
        model = charlm.CharLM("".join(sorted(set(text))), config)
        opt, step, state = Adam(model.params(), config.lr), 0, None
    text, held = charlm.split_held_out(text, args.held_out)
    c = model.config
    if len(text) < 2 * c.batch_size * 2:
        raise UserError(
            f"the text ({len(text)} characters) is too short for batch size {c.batch_size}"
        )
    base = charlm.unigram_entropy_bits(text)
    print(
        f"corpus: {len(text):,} characters to train on, {len(held):,} held out, "
        f"{len(model.vocab)} distinct; unigram entropy "
        f"{base:.2f} bits/char (a model that ignores context). LSTM {c.num_layers}x"
        f"{c.hidden_size}, batch {c.batch_size} x {c.seq_len} chars, backend "
        f"{c.backend}, {c.precision} products, {fastrnn.get_num_threads()} threads"
        + _regularization_note(c),
        file=sys.stderr,
    )
    core = blas_core(_command(args))
    if core.warning:
        print(f"warning: {core.warning}", file=sys.stderr)
    bar = Progress(args.steps)
    smooth = [None]

    def on_step(s, bpc, cps):
        smooth[0] = bpc if smooth[0] is None else 0.9 * smooth[0] + 0.1 * bpc
        loss = smooth[0] * np.log(2)
        bar.update(
            s - step, f"step {s} loss {loss:.3f} ({smooth[0]:.2f} bits/char) {cps:,.0f} chars/s"
        )

    def on_sample(s):
        bar.close()
        text_out = charlm.sample(model, args.sample_length, args.temperature, seed=s)
        print(
            f"--- sample at step {s} (temperature {args.temperature}) ---\n{text_out}\n---",
            flush=True,
        )

    state = charlm.train(
        model, opt, text, args.steps, step, on_step, on_sample, args.sample_every, state
    )
    bar.close()
    final = step + args.steps
    if args.checkpoint:
        charlm.save_checkpoint(args.checkpoint, model, opt, final, state)
        print(f"saved {args.checkpoint} (step {final})", file=sys.stderr)
    result = f"done: step {final}, {smooth[0]:.2f} bits/char on the training text"
    if len(held) >= 3:
        result += f", {charlm.held_out_bits(model, held):.3f} held out"
    print(f"{result} (unigram baseline {base:.2f})")
    return 0


def _load(path: str, backend: Optional[str]):
    from .charlm import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(path, backend)
    except FileNotFoundError:
        raise UserError(f"no such checkpoint: {path}") from None
    except CheckpointError as e:
        raise UserError(str(e)) from None


def cmd_sample(args) -> int:
    from .charlm import sample

    if args.temperature <= 0:
        raise UserError(f"--temperature must be > 0, got {args.temperature}")
    if args.length < 0:
        raise UserError(f"--length must be >= 0, got {args.length}")
    model = _load(args.checkpoint, None)[0]
    try:
        print(sample(model, args.length, args.temperature, args.prime, seed=args.seed))
    except ValueError as e:
        raise UserError(str(e)) from None
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench

    return run_bench(args)


# ----------------------------------------------------------------------------- parser


def positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastrnn", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="version, backends, CPU features, threads, BLAS")
    s.set_defaults(fn=cmd_info)

    s = sub.add_parser("check", help="the kernels against the NumPy reference, and the speed-up")
    s.add_argument("-T", "--steps", type=positive_int, default=50)
    s.add_argument("-B", "--batch", type=positive_int, default=32)
    s.add_argument("-H", "--hidden", type=positive_int, default=256)
    s.add_argument("--repeats", type=positive_int, default=3)
    s.add_argument(
        "--backend",
        choices=["cpu", "cuda"],
        default="cpu",
        help="the kernels to check (cuda: on a GPU, device-resident)",
    )
    s.set_defaults(fn=cmd_check)

    s = sub.add_parser("train-charlm", help="train a character-level LSTM language model")
    s.add_argument(
        "--text",
        help="a UTF-8 text file (default: Python's own documentation, "
        "from the standard library's pydoc_data)",
    )
    s.add_argument("--steps", type=positive_int, default=1000)
    s.add_argument("--hidden", type=positive_int, default=256)
    s.add_argument("--layers", type=positive_int, default=2)
    s.add_argument("--embed", type=positive_int, default=64)
    s.add_argument("--batch", type=positive_int, default=32)
    s.add_argument("--seq-len", type=positive_int, default=64)
    s.add_argument("--lr", type=float, default=3e-3)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--backend", choices=["auto", "cpu", "numpy"], default="auto")
    s.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="the LSTM's matrix products: float32, or bf16 operands with float32 sums",
    )
    s.add_argument("--layer-norm", action="store_true", help="a layer-normalized LSTM")
    for flag, what in (
        ("--zoneout", "zoneout probability of the LSTM's h and c"),
        ("--recurrent-dropout", "variational dropout on h where it enters W_hh"),
        ("--weight-drop", "DropConnect on the LSTM's recurrent matrices"),
    ):
        s.add_argument(flag, type=float, default=0.0, help=f"{what} (0: off)")
    s.add_argument(
        "--held-out",
        type=float,
        default=0.05,
        help="the fraction of the text (its end) kept out of training and scored at the end",
    )
    s.add_argument("--threads", type=int, default=0, help="0: all cores")
    s.add_argument("--sample-every", type=int, default=250)
    s.add_argument("--sample-length", type=int, default=200)
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--checkpoint", help="save here (.npz) when done")
    s.add_argument("--resume", help="continue from this checkpoint")
    s.set_defaults(fn=cmd_train_charlm)

    s = sub.add_parser("sample", help="generate text from a checkpoint")
    s.add_argument("checkpoint")
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--length", type=int, default=300)
    s.add_argument("--prime", default="")
    s.add_argument("--seed", type=int, default=None)
    s.set_defaults(fn=cmd_sample)

    s = sub.add_parser("bench", help="the benchmark suite")
    from .bench import add_arguments

    add_arguments(s)
    s.set_defaults(fn=cmd_bench)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = command_line(argv)  # for the fixes the BLAS warning shows
    try:
        return args.fn(args)
    except UserError as e:
        print(f"fastrnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
