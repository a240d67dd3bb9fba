"""`python -m tlcore export RUN --format torchscript|onnx` and `python -m tlcore predict RUN IMAGE...`:
a finished run's network, packaged with its preprocessing and checked (tlcore.export), or used on
new images. Each prints one JSON line on stdout; bad input is one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli import Command, register_command


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    from ..export import FORMATS
    parser.add_argument("run", metavar="RUN", help="a run id from `python -m tlcore runs`")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="file format (default: onnx)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="folder to write into (default: the run's artifacts folder, export/)")


def _export(args: argparse.Namespace) -> int:
    from .. import export
    from ..runs import RunStore
    done = export.export(RunStore(), args.run, args.format, args.out)
    print(json.dumps({"run_id": args.run, "format": done.format, "path": str(done.path),
                      "metadata": str(done.meta_path), "checked_on": done.checked_on,
                      "max_difference": done.max_difference, "agreement": done.agreement}))
    return 0


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run id from `python -m tlcore runs`")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files (JPEG, PNG, WebP, BMP, GIF, TIFF)")
    parser.add_argument("--top", type=int, default=3, help="classes to show per image (default: 3)")


def _predict(args: argparse.Namespace) -> int:
    from .. import export
    from ..runs import RunStore
    loaded = export.load(RunStore(), args.run)
    results, bad = [], 0
    for name in args.images:
        try:
            data = Path(name).read_bytes()
            img = export.read_image(data, loaded.size, name)
        except (OSError, export.BadImage) as e:
            bad += 1
            results.append({"image": name, "error": str(e) if isinstance(e, export.BadImage) else
                            f"{name} cannot be read ({e.strerror or e})"})
            continue
        top = export.predict(loaded, img[None], args.top)[0]
        results.append({"image": name, "top": [{"class": c, "probability": round(p, 6)} for c, p in top]})
    print(json.dumps({"run_id": args.run, "predictions": results}))
    return 0 if bad == 0 else 2


register_command(Command("export", "export a finished run's network (TorchScript or ONNX), checked", _export_arguments,
                         _export, description="Write the run's network with its preprocessing inside (input: uint8 "
                                              "RGB images at the run's size; output: class probabilities) and a JSON "
                                              "of its classes and plan, after checking the file's predictions "
                                              "against the engine's."))
register_command(Command("predict", "top-k classes for image files from a finished run", _predict_arguments,
                         _predict, description="Classify image files with a finished run's network; prints one JSON "
                                               "line with the top classes and their probabilities."))
