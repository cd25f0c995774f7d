"""advrbd demo: poison a real bundled dataset, train without defense, defend with AdvrBD, compare.

Default data: scikit-learn's bundled handwritten digits (1,797 real 8×8 scans, upscaled to 32×32),
so the demo needs no download and finishes in a few minutes on 2 CPU cores.
"""
from __future__ import annotations

import time
from dataclasses import replace

from ..attacks import create_attack
from ..metrics.model import evaluate
from ..pipeline import Prepared, make_context, prepare, resolve_recipe, train_standard
from ..profiles import get_profile
from .common import add_output_flags, emit, out_dir, progress_on
from .defend import defend_to_dir

HELP = "end-to-end demo: poison bundled digits, train without and with AdvrBD, write demo-run/report.html"
EXAMPLE = """advrbd demo
advrbd demo --data imagefolder:/tmp/cifar10 --profile quick --attack blend --out demo-cifar"""


def add_arguments(p) -> None:
    p.add_argument("--data", default=None, help="dataset spec (default: digits, bundled with scikit-learn)")
    p.add_argument("--profile", default="demo", help="profile (default demo; quick/cpu for CIFAR-10)")
    p.add_argument("--attack", default="badnet", help="attack to plant (default badnet)")
    p.add_argument("--rate", type=float, default=0.05, help="poison rate (default 0.05)")
    p.add_argument("--target", type=int, default=1, help="target class (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="demo-run", help="output directory (default demo-run)")
    add_output_flags(p)


def run(args) -> int:
    t0 = time.perf_counter()
    profile = get_profile(args.profile)
    out = out_dir(args.out)
    prep = prepare(args.data, profile, seed=args.seed)
    attack = create_attack(args.attack, rate=args.rate, target=args.target, seed=args.seed)
    poisoned = attack.poison(prep.splits.train)
    prep = Prepared(replace(prep.splits, train=poisoned.data), poisoned, attack)
    recipe = resolve_recipe(profile, args.device, args.seed, attack)
    progress = progress_on(args)
    ctx = make_context(poisoned.data, profile, recipe, progress=progress)
    baseline, base_seconds = train_standard(ctx)
    ev = evaluate(baseline, prep.splits.test, attack)
    no_defense = {"acc": ev.acc, "asr": ev.asr, "seconds": base_seconds}
    summary, evaluation, report = defend_to_dir(
        prep, profile, recipe, "advrbd", {}, out, data_spec=args.data or profile.data, quant=True,
        progress=progress, no_defense=no_defense)
    secs = time.perf_counter() - t0
    text = (f"data {args.data or profile.data}: {len(poisoned.data)} training images, attack {attack.name} "
            f"({int(poisoned.poison_mask.sum())} poisoned, target {attack.target})\n"
            f"  no defense: ACC {ev.acc:.2f}%  ASR {ev.asr:.2f}%   (n_test={ev.n_test}, n_asr={ev.n_asr})\n"
            f"  AdvrBD:     ACC {evaluation['acc']:.2f}%  ASR {evaluation['asr']:.2f}%   "
            f"recall {evaluation['recall']:.1f}%  FPR {evaluation['fpr']:.1f}%\n"
            f"finished in {secs:.0f} s; report: {report}")
    emit(args, text, {"no_defense": no_defense, "advrbd": evaluation, "report": str(report), "seconds": secs})
    return 0
