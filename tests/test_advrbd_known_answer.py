"""Known-answer tests of the whole AdvrBD pipeline on real bundled data with a planted patch trigger.

Data: scikit-learn's handwritten digits (1,348 train / 449 test, 32×32) with a 5×5 BadNets patch at 5%
poison, target 1; fastnet at width 0.25 for 8 epochs (the demo's recipe, shortened). One defended run
is shared by the tests.
"""
import copy
from dataclasses import replace

import pytest
import torch

from advrbd.attacks import create_attack
from advrbd.data import load_dataset
from advrbd.metrics import auroc
from advrbd.metrics.model import evaluate
from advrbd.pipeline import make_context, run_defense
from advrbd.profiles import get_profile

PROFILE = get_profile("demo")
RECIPE = replace(PROFILE.recipe, epochs=8, batch_size=64, device="cpu")
MODEL = dict(model="fastnet", width=0.25)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def poisoned_run(digits, tmp_path_factory):
    attack = create_attack("badnet", rate=0.05, target=1, seed=0, patch_size=5)
    pd = attack.poison(digits.train)
    asr_set = attack.make_asr_set(digits.test)
    ctx = make_context(pd.public(), PROFILE, RECIPE, workdir=tmp_path_factory.mktemp("advrbd"), **MODEL)
    baseline = evaluate(ctx.backdoored_model(), digits.test, attack, asr_set)
    result, _ = run_defense("advrbd", {}, ctx)
    return pd, attack, asr_set, baseline, result, ctx


def test_backdoor_is_planted(poisoned_run):
    *_, baseline, _, _ = poisoned_run
    assert baseline.asr >= 90 and baseline.acc >= 95


def test_evidence_finds_the_target_and_the_verdict_is_precise(poisoned_run):
    """The guard finds the target from evidence (its latent split stands apart), flags that subgroup and
    almost no clean sample; the kept samples of the target class outside it go to the review band.
    Measured (1 thread): J* of the target 12.7 against at most 1.2; recall 88.1% at FPR 0.0%, 132 in review."""
    pd, *_, result, _ = poisoned_run
    assert result.info["backdoor_classes"] == [1]
    f, pm = result.suspected, pd.poison_mask
    assert f[pm].float().mean() >= 0.8 and f[~pm].float().mean() <= 0.02
    review = torch.tensor(result.info["table"]["review"])
    assert not (review & f).any() and (pd.data.labels[review] == 1).all()
    assert f[pm].sum() + (review & pm).sum() >= 0.9 * pm.sum()  # most of the rest are under review (measured 62 of 67)
    # the perturbation-consistency score ranks poisons as robust (low KL)
    assert auroc(-result.info["consistency_scores"], pm) >= 0.75


def test_score_ranks_like_the_verdict(poisoned_run):
    """Issue 29: every flagged sample scores above every kept one, and the order within the groups carries
    information: the score's AUROC is at least the verdict's balanced accuracy."""
    pd, *_, result, _ = poisoned_run
    s, f, pm = result.scores, result.suspected, pd.poison_mask
    assert bool(((s > 0) == f).all()) and s[f].min() > s[~f].max()
    balanced = 0.5 * (f[pm].float().mean() + (~f[~pm]).float().mean()).item()
    assert auroc(s, pm) >= balanced


def test_pipeline_removes_the_backdoor(poisoned_run, digits):
    pd, attack, asr_set, baseline, result, _ = poisoned_run
    ev = evaluate(result.model, digits.test, attack, asr_set)
    assert ev.asr <= 5 and ev.acc >= baseline.acc - 2  # measured 98.89 / 0.00 against 99.33 / 100
    # relabel: suspected poisons relabelled by the clean model get their true class back, not the target
    table = result.info["table"]
    relabelled = pd.poison_mask & torch.tensor([a == "relabel" for a in table["action"]])
    assert relabelled.sum() >= 0.5 * pd.poison_mask.sum()
    assert (result.relabels[relabelled] == pd.true_labels[relabelled]).float().mean() >= 0.9


def test_rounds_enhance_the_backdoor(poisoned_run):
    result = poisoned_run[4]
    kept = [h["n_kept"] for h in result.history if not h.get("stopped")]
    assert kept == sorted(kept, reverse=True) and kept[-1] < 0.5 * kept[0]


def test_resume_after_interrupted_stage_gives_same_result(poisoned_run):
    """Rerunning with the same stage directory resumes from the stored stages: identical outputs."""
    pd, attack, asr_set, _, result, ctx = poisoned_run
    again, _ = run_defense("advrbd", {}, ctx)
    assert torch.equal(again.suspected, result.suspected) and torch.equal(again.scores, result.scores)
    for a, b in zip(again.model.state_dict().values(), result.model.state_dict().values()):
        assert torch.equal(a, b)


def test_resumed_run_that_loads_the_warm_up_trains_the_same_clean_model(poisoned_run, tmp_path):
    """A run that reused the standard model as its warm-up and a resumed run that loads the saved warm-up
    start clean training from the same initialisation (the model factory's k-th model gets init seed k, and
    the loading path builds one more model)."""
    pd, *_, ctx = poisoned_run
    standard = ctx.backdoored_model()

    def run():
        c = make_context(pd.public(), PROFILE, RECIPE, workdir=tmp_path,
                         standard_model=lambda: copy.deepcopy(standard), **MODEL)
        return run_defense("advrbd", {"enhance.rounds": 1, "relearn.epochs": 0}, c)[0]

    first = run()
    assert first.info["reused_standard_training"]
    for late in tmp_path.glob("advrbd-clean*"):  # interrupted before clean training finished
        late.unlink()
    again = run()
    assert torch.equal(again.suspected, first.suspected)
    for a, b in zip(again.model.state_dict().values(), first.model.state_dict().values()):
        assert torch.equal(a, b)


def test_changing_a_late_setting_reuses_every_earlier_stage(poisoned_run, monkeypatch):
    """Stage keys chain: changing only relearning's settings loads warm-up, scoring, guard, enhancement,
    identification and clean training from the first run; the paper's identification rule (the last round's
    model alone) reruns identification only, and flags a superset of the consensus's review band."""
    import advrbd.defenses.advrbd.steps as steps

    pd, attack, asr_set, _, consensus, ctx = poisoned_run
    for name in ("enhance", "consistency_scores", "latent_splits", "fit", "clean_training"):
        monkeypatch.setattr(steps, name, lambda *a, **k: pytest.fail(f"{name} ran again"))
    relearnt, _ = run_defense("advrbd", {"relearn.lr": 0.01}, ctx)
    assert torch.equal(relearnt.suspected, consensus.suspected)
    assert relearnt.info["stage_seconds"]["enhance"] == consensus.info["stage_seconds"]["enhance"]  # first timing
    monkeypatch.undo()
    for name in ("enhance", "consistency_scores", "latent_splits"):
        monkeypatch.setattr(steps, name, lambda *a, **k: pytest.fail(f"{name} ran again"))
    paper, _ = run_defense("advrbd", {"identify.rule": "paper", "relearn.epochs": 0}, ctx)
    review = lambda r: torch.tensor(r.info["table"]["review"])  # noqa: E731
    assert torch.equal(paper.suspected, consensus.suspected)
    assert not (review(consensus) & ~review(paper)).any()


def test_clean_dataset_is_left_alone(digits):
    """0% poison: no class's latent split stands apart, so nothing is flagged and the standard model is
    returned (measured J* at most 1.4; the paper's rule flagged 34.3% of this clean set)."""
    standard = make_context(digits.train, PROFILE, RECIPE, **MODEL).backdoored_model()
    ctx = make_context(digits.train, PROFILE, RECIPE, standard_model=lambda: copy.deepcopy(standard), **MODEL)
    result, _ = run_defense("advrbd", {}, ctx)
    assert result.info["backdoor_classes"] == [] and not result.suspected.any()
    assert evaluate(result.model, digits.test).acc == evaluate(standard, digits.test).acc


def test_a_weak_trigger_on_another_target_never_raises_the_attack():
    """Issue 33's known answer: a faint blend (α 0.05) on target 7, whose poisons the latent split does not
    set apart (measured J* of class 7 below the threshold). The defense must not drop clean samples and hand
    the backdoor a larger share of the data: its ASR stays at most the undefended model's."""
    digits = load_dataset("digits")
    attack = create_attack("blend", rate=0.05, target=7, seed=1, alpha=0.05)
    pd = attack.poison(digits.train)
    asr_set = attack.make_asr_set(digits.test)
    standard = make_context(pd.public(), PROFILE, RECIPE, **MODEL).backdoored_model()
    undefended = evaluate(standard, digits.test, attack, asr_set)
    ctx = make_context(pd.public(), PROFILE, RECIPE, standard_model=lambda: copy.deepcopy(standard), **MODEL)
    result, _ = run_defense("advrbd", {}, ctx)
    defended = evaluate(result.model, digits.test, attack, asr_set)
    assert defended.asr <= undefended.asr + 0.5 and defended.acc >= undefended.acc - 1
