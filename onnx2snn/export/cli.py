"""The ``export`` and ``import`` subcommands (registered by ``cli/main.py``)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..dialect import save_model
from ..errors import ConfigError
from . import _dialect
from .nir_export import export_nir, write_nir
from .nir_import import import_nir, read_nir
from .unrolled import export_unrolled

TARGETS = ("onnx-unrolled", "onnx-loop", "nir")


def _report(args: argparse.Namespace, text: str, summary: dict) -> None:
    """The command's result: a JSON summary on stdout with --json, else a line (none with --quiet)."""
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        print(text)


def cmd_export(args: argparse.Namespace) -> int:
    model = _dialect.load_spiking(args.snn)
    if args.to in ("onnx-unrolled", "onnx-loop"):
        if args.T is None:
            raise ConfigError(f"--to {args.to} needs -T (the number of timesteps to write out)")
        plain = export_unrolled(model, args.T, mode="unroll" if args.to == "onnx-unrolled" else "loop")
        save_model(plain, args.output)
        _report(args, f"wrote {args.output}: standard ONNX, T={args.T}, {len(plain.graph.node)} nodes, outputs "
                      f"{plain.graph.output[0].name} (accumulated output / T) and {len(plain.graph.output) - 1} "
                      "spike counts",
                {"output": str(args.output), "to": args.to, "T": args.T, "nodes": len(plain.graph.node),
                 "outputs": [o.name for o in plain.graph.output]})
        return 0
    if args.T is not None:
        raise ConfigError("-T applies to the ONNX exports; NIR graphs are simulated for any number of steps")
    result = export_nir(model, strict=args.strict)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not args.quiet:
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
    _write_atomically(args.output, lambda path: write_nir(result, path))
    _report(args, f"wrote {args.output}: NIR graph, {len(result.graph.nodes)} nodes, {len(result.warnings)} kind(s) "
                  "of semantic difference" + (" (see the warnings above)" if result.warnings else ""),
            {"output": str(args.output), "to": "nir", "nodes": len(result.graph.nodes),
             "warnings": list(result.warnings), "notes": list(result.notes)})
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    model = import_nir(read_nir(args.nir), use_metadata=not args.spec)
    save_model(model, args.output)
    neurons = sum(1 for n in model.graph.node if n.op_type == "IF")
    _report(args, f"wrote {args.output}: spiking ONNX, {len(model.graph.node)} nodes, {neurons} IF neurons",
            {"output": str(args.output), "nodes": len(model.graph.node), "neurons": neurons})
    return 0


def _write_atomically(path, write) -> None:
    """Write through a temporary file in the same folder, then rename (a kill leaves old or none)."""
    target = Path(path)
    handle, temporary = tempfile.mkstemp(dir=target.parent or ".", prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        atomic_write_bytes(target, Path(temporary).read_bytes())
    finally:
        Path(temporary).unlink(missing_ok=True)


def add_export(sub) -> None:
    p = sub.add_parser("export", help="export a spiking ONNX file to standard ONNX (no custom ops) or to NIR",
                       epilog="examples:\n  onnx2snn export snn.onnx --to onnx-unrolled -T 32 -o plain.onnx\n"
                              "  onnx2snn export snn.onnx --to nir -o model.nir [--strict]\n\n"
                              "docs/export.md lists what each target can and cannot express.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("snn", help="the spiking .onnx file")
    p.add_argument("--to", required=True, choices=TARGETS,
                   help="onnx-unrolled: T steps written out in standard ops (fastest in onnxruntime); onnx-loop: "
                        "one step inside an ONNX Loop (small file); nir: a NIR graph (HDF5)")
    p.add_argument("-T", type=int, help="timesteps (ONNX exports)")
    p.add_argument("-o", "--output", required=True, help="where to write the exported file")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors and NIR warnings")
    p.add_argument("--strict", action="store_true",
                   help="NIR: refuse instead of warning when NIR cannot express the graph exactly")
    p.set_defaults(run=cmd_export)


def add_import(sub) -> None:
    p = sub.add_parser("import", help="import a NIR graph as a spiking ONNX file",
                       epilog="example:\n  onnx2snn import model.nir -o snn.onnx",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("nir", help="the .nir file")
    p.add_argument("-o", "--output", required=True, help="where to write the spiking .onnx file")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--spec", action="store_true",
                   help="ignore onnx2snn metadata and read the graph as the NIR spec says (as other tools do)")
    p.set_defaults(run=cmd_import)
