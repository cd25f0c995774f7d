"""Identification rules compared on the saved enhancement-round models of a `quick` bench grid.

For each attack, loads ``<grid>/work/<attack>-r0.05-s0-res0.05/advrbd/advrbd-round{1,2,3}.pt`` (written by
``advrbd bench --profile quick ... --defenses none,advrbd``), rebuilds the same poisoned training set, and
prints recall / FPR (percent, against the attack's ground truth: evaluation only) of: the paper's rule on
the last round's model, the consensus of all rounds (``round_consensus``), and each with ``null_quantile``
0.5. Inference only (a few seconds per attack on 2 CPU cores).

    python benchmarks/round_consensus_posthoc.py /tmp/grid badnet,sig,tact --data imagefolder:/tmp/cifar10
"""
from __future__ import annotations

import argparse

import torch

from advrbd.attacks import create_attack
from advrbd.bench import _split_reserve
from advrbd.defenses.advrbd.identify import identify
from advrbd.pipeline import make_context, prepare, resolve_recipe
from advrbd.profiles import get_profile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid")
    ap.add_argument("attacks")
    ap.add_argument("--data", default="imagefolder:/tmp/cifar10")
    args = ap.parse_args()
    prof = get_profile("quick")
    train, _ = _split_reserve(prepare(args.data, prof, seed=0), 0.05, 0)
    print("| attack | rule | flagged | recall % | FPR % |\n|---|---|---:|---:|---:|")
    for name in args.attacks.split(","):
        attack = create_attack(name, rate=0.05, target=1, seed=0)
        pd = attack.poison(train)
        ctx = make_context(pd.public(), prof, resolve_recipe(prof, "cpu", 0, attack))
        margins = {0.0: [], 0.5: []}
        for r in (1, 2, 3):
            model = ctx.new_model()
            path = f"{args.grid}/work/{name}-r0.05-s0-res0.05/advrbd/advrbd-round{r}.pt"
            model.load_state_dict(torch.load(path, weights_only=True)["model"])
            for q, ms in margins.items():
                ms.append(identify(model, pd.data, null_quantile=q)[1])
        for q, ms in margins.items():
            for rule, score in (("last round", ms[-1]), ("all rounds", torch.stack(ms).min(0).values)):
                flagged, p = score > 0, pd.poison_mask
                print(f"| {name} | {rule}, null_quantile {q} | {int(flagged.sum())} | "
                      f"{100 * flagged[p].float().mean():.1f} | {100 * flagged[~p].float().mean():.1f} |")


if __name__ == "__main__":
    main()
