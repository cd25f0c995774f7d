"""advrbd evaluate: ACC (and ASR against an attack) of a trained run's model."""
from __future__ import annotations

from pathlib import Path

from ..errors import BadInputError
from ..io import write_json
from ..metrics.model import evaluate
from .common import add_output_flags, emit, load_run_model

HELP = "measure clean accuracy (and attack success rate with --attack-from) of a run's model"
EXAMPLE = "advrbd evaluate --run runs/defended --attack-from poisoned/badnet --precision fp32,int8,int4"


def add_arguments(p) -> None:
    p.add_argument("--run", required=True, help="run directory written by train or defend")
    p.add_argument("--data", help="test data spec (default: the run's data)")
    p.add_argument("--attack-from", metavar="DIR", help="directory written by `advrbd poison`: measure ASR of its attack")
    p.add_argument("--quant", action="store_true",
                   help="also evaluate SIMULATED INT8 / INT4 weight rounding in PyTorch (not a deployed model; see --precision)")
    p.add_argument("--precision", metavar="LIST", default=None,
                   help="deployed artefacts to measure with ONNX Runtime: fp32 (ONNX export), int8 (ORT static QDQ "
                   "quantization), int4 (= int4-sim: INT4 weights run dequantized); e.g. fp32,int8,int4. Files go to RUN/deploy/")
    p.add_argument("--resize", type=int, default=None, help="resize test images to N×N")
    add_output_flags(p)


def run(args) -> int:
    from ..data import load_dataset

    model, cfg = load_run_model(args.run)
    attack = None
    if args.attack_from:
        from ..attacks import load_poisoned

        _, splits, attack = load_poisoned(Path(args.attack_from))
        test = splits.test if not args.data else load_dataset(args.data, resize=args.resize).test
    else:
        spec = args.data or cfg.get("data")
        if not spec:
            raise BadInputError("no --data given and the run does not record its data")
        from ..attacks import load_data

        _, splits, attack = load_data(spec, resize=args.resize or cfg.get("resize"))
        test = splits.test
    if test.num_classes != cfg["num_classes"]:
        raise BadInputError(f"the test data has {test.num_classes} classes, the model {cfg['num_classes']}")
    ev = evaluate(model, test, attack)
    out = {"acc": ev.acc, "n_test": ev.n_test, "asr": ev.asr, "n_asr": ev.n_asr,
           "attack": getattr(attack, "name", None)}
    if args.quant:
        from ..quant import quantized_metrics

        out["quant"] = quantized_metrics(model, test, attack)
    if args.precision:
        from ..quant.deployed import deploy_and_measure
        from ..quant.onnx_export import parse_precisions

        r = deploy_and_measure(model, Path(args.run) / "deploy", splits.train, test, attack,
                               precisions=parse_precisions(args.precision))
        out["deployed"] = r["metrics"]
        out["deployed_validation"] = r["validation"]
    write_json(Path(args.run) / "eval.json", out)
    text = f"ACC {ev.acc:.2f}% (n={ev.n_test})"
    if ev.asr is not None:
        text += f"  ASR {ev.asr:.2f}% (n={ev.n_asr}, attack {attack.name})"
    if args.quant:
        text += "\n" + "\n".join(
            f"  {k:>5} (simulated): ACC {v['acc']:.2f}%" + (f"  ASR {v['asr']:.2f}%" if v["asr"] is not None else "")
            for k, v in out["quant"].items())
    if args.precision:
        text += "\ndeployed (ONNX Runtime, CPU):\n" + "\n".join(
            f"  {k:>8}: ACC {v['acc']:.2f}%" + (f"  ASR {v['asr']:.2f}%" if v["asr"] is not None else "")
            for k, v in out["deployed"].items())
    emit(args, text, out)
    return 0
