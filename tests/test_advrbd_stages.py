"""AdvrBD stages tested alone: patch masks, patch-restricted PGD, bounded unlearning, identification,
partitioning, settings validation and the stage store."""
import pytest
import torch
from torch import nn

from advrbd.adversarial import consistency_kl, random_patch_masks
from advrbd.defenses import create_defense
from advrbd.defenses.advrbd.enhance import bounded_unlearning_loss
from advrbd.defenses.advrbd.identify import given_label_margin, identify
from advrbd.defenses.advrbd.scoring import move_most_sensitive
from advrbd.defenses.advrbd.stages import StageStore
from advrbd.errors import ConfigError
from advrbd.types import ImageData


def test_patch_masks_are_single_squares():
    g = torch.Generator().manual_seed(0)
    m = random_patch_masks(64, 20, 24, 5, g, "cpu")
    assert m.shape == (64, 1, 20, 24)
    assert torch.all(m.sum((1, 2, 3)) == 25)
    rows, cols = m[:, 0].amax(2), m[:, 0].amax(1)
    assert torch.all(rows.sum(1) == 5) and torch.all(cols.sum(1) == 5)
    # contiguous runs: a square, not scattered pixels
    assert torch.all((rows[:, 1:] - rows[:, :-1]).abs().sum(1) <= 2)


class Recorder(nn.Module):
    """Linear model that records the inputs it sees (to check the perturbation)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3 * 8 * 8, 4)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.lin(x.flatten(1))


def test_pgd_stays_in_mask_and_ball_and_increases_kl():
    torch.manual_seed(0)
    model = Recorder().eval()
    x = torch.rand(16, 3, 8, 8) * 0.5 + 0.25
    g = torch.Generator().manual_seed(1)
    mask = random_patch_masks(16, 8, 8, 3, g, "cpu")
    kl0 = consistency_kl(model, x, mask, 0.1, 0, torch.Generator().manual_seed(2))
    model.seen.clear()
    kl = consistency_kl(model, x, mask, 0.1, 5, torch.Generator().manual_seed(2))
    assert torch.all(kl >= 0) and kl.shape == (16,)
    assert kl.mean() > kl0.mean()  # PGD maximises the divergence beyond its random start
    for seen in model.seen[1:]:
        d = seen - x
        assert d.abs().max() <= 0.1 + 1e-6
        assert torch.all(d[mask.expand_as(d) == 0] == 0)


def test_bounded_unlearning_loss_stops_at_bound():
    in_c = torch.tensor([True, False])
    loss = bounded_unlearning_loss(in_c, bound=1.0)
    logits = torch.tensor([[10.0, -10.0], [10.0, -10.0]], requires_grad=True)
    per = loss(logits, torch.tensor([1, 1]), torch.tensor([0, 1]))
    assert per[0].item() == 1.0 and per[1].item() > 10
    per[0].backward()
    assert torch.all(logits.grad == 0)  # no gradient past the bound: ascent cannot diverge


def test_partition_moves_largest_kl():
    pool = torch.tensor([10, 11, 12, 13])
    moved, rest = move_most_sensitive(torch.tensor([0.1, 5.0, 0.2, 3.0]), pool, 2)
    assert moved.tolist() == [11, 13] and sorted(rest.tolist()) == [10, 12]


def test_stratified_partition_takes_each_class_quota():
    # given labels of the whole set: positions 10-12 are class 0, 13-15 class 1
    labels = torch.tensor([0] * 10 + [0, 0, 0, 1, 1, 1])
    scores = torch.tensor([0.1, 5.0, 0.2, 3.0, 1.0, 2.0])
    moved, rest = move_most_sensitive(scores, torch.arange(10, 16), 0, torch.tensor([1, 2]), labels)
    assert moved.tolist() == [11, 13, 15] and rest.tolist() == [10, 12, 14]
    moved, _ = move_most_sensitive(torch.tensor([9.0, 8.0, 7.0, 1.0, 0.5, 0.2]), torch.arange(10, 16), 0,
                                   torch.tensor([1, 1]), labels)
    assert moved.tolist() == [10, 13]  # not [10, 11]: one per class


class Fixed(nn.Module):
    """Returns the given logits for the first len(x) samples, whatever the images."""

    def __init__(self, logits):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))
        self.logits = logits

    def forward(self, x):
        return self.logits[: x.shape[0]] + 0 * self.p


def test_identification_margin_rule():
    logits = torch.tensor([[3.0, 1.0], [0.0, 2.0], [1.0, 1.5]])
    data = ImageData(torch.zeros(3, 2, 2, 3, dtype=torch.uint8), torch.tensor([0, 0, 1]), ("a", "b"))
    margin = given_label_margin(Fixed(logits), data)
    assert torch.allclose(margin, torch.tensor([2.0, -2.0, 0.5]))


def test_settings_validation():
    with pytest.raises(ConfigError):
        create_defense("advrbd", partition_rate=0)
    with pytest.raises(ConfigError):
        create_defense("advrbd", partition_rate=0.3, rounds=3)  # pools would exceed the set
    with pytest.raises(ConfigError):
        create_defense("advrbd", bogus=1)
    assert create_defense("advrbd", rounds="2").rounds == 2


def test_stage_store_roundtrip_and_key(tmp_path):
    s = StageStore(tmp_path, "advrbd", "k1")
    s.save("a", {"t": torch.arange(3), "n": 2})
    assert s.load("a")["t"].tolist() == [0, 1, 2]
    assert StageStore(tmp_path, "advrbd", "other").load("a") is None  # other settings: no stale resume
    assert StageStore(None, "advrbd", "k1").load("a") is None
    # a stage's mid-training checkpoint is named after the key (fit cannot see a changed loss), and goes
    # away once the stage is saved
    other = StageStore(tmp_path, "advrbd", "other")
    assert s.fit_path("b") != other.fit_path("b")
    s.fit_path("b").write_bytes(b"partial")
    s.save("b", {"n": 1})
    assert not s.fit_path("b").exists() and s.load("b")["n"] == 1


def test_relearn_leaves_out_suspected_samples_whose_label_is_confirmed():
    from advrbd.defenses.advrbd.retrain import relearn_indices

    data = ImageData(torch.zeros(5, 2, 2, 3, dtype=torch.uint8), torch.tensor([1, 1, 1, 0, 2]), ("a", "b", "c"))
    suspected = torch.tensor([True, True, False, False, True])
    relabels = torch.tensor([0, 1, 1, 0, 2])  # sample 0 relabelled; 1 and 4 confirmed (clean-label poison?)
    assert relearn_indices(data, suspected, relabels).tolist() == [0, 2, 3]


def test_relabel_splits_suspects_into_relabelled_confirmed_and_unsure():
    from advrbd.defenses.advrbd.retrain import relabel

    # sample 0: confidently another class (relabelled); 1: confidently its given label (confirmed);
    # 2: its given label but unsure (kept, not confirmed); 3: confirmed but not suspected
    logits = torch.tensor([[0.0, 5.0, 0.0], [5.0, 0.0, 0.0], [0.3, 0.0, 0.2], [5.0, 0.0, 0.0]])
    data = ImageData(torch.zeros(4, 2, 2, 3, dtype=torch.uint8), torch.tensor([0, 0, 0, 0]), ("a", "b", "c"))
    labels, confirmed = relabel(Fixed(logits), data, torch.tensor([True, True, True, False]), 0.5)
    assert labels.tolist() == [1, 0, 0, 0]
    assert confirmed.tolist() == [False, True, False, False]


def test_rejoin_takes_unrelabelled_suspects_with_high_consistency_scores():
    from advrbd.defenses.advrbd.retrain import rejoin_mask

    suspected = torch.tensor([True, True, True, True, False, True, True])
    given = torch.tensor([0, 0, 0, 0, 0, 0, 0])
    labels = torch.tensor([0, 0, 0, 0, 0, 2, 0])  # sample 5 relabelled
    scores = torch.tensor([7.5, 9.0, 0.1, 4.0, 8.0, 7.0, 0.2])  # quantile 0.5 = 7.0, 0.2 = 0.96
    mask = rejoin_mask(suspected, labels, given, scores, 0.5)
    # 0: kept label, above the median -> rejoins; 1 the same (confirmed by the clean model or not: the label
    # is kept either way); 2 and 6: robust (a poison's low KL); 3 below the median; 4 not suspected;
    # 5 relabelled (it is relearned with its new label anyway)
    assert mask.tolist() == [True, True, False, False, False, False, False]
    mask = rejoin_mask(suspected, labels, given, scores, 0.2)
    assert mask.tolist() == [True, True, False, True, False, False, False]
    assert not rejoin_mask(suspected, labels, given, scores, 1.0).any()


def test_the_guarded_subgroup_neither_rejoins_nor_is_unlearned_in_relearning():
    from advrbd.defenses.advrbd.retrain import relearn_indices, relearn_masks

    data = ImageData(torch.zeros(6, 2, 2, 3, dtype=torch.uint8), torch.tensor([1, 1, 1, 0, 2, 0]), ("a", "b", "c"))
    suspected = torch.tensor([True, True, True, True, True, False])
    given = data.labels.clone()
    labels = given.clone()
    labels[2] = (given[2] + 1) % data.num_classes  # sample 2 relabelled by the clean model
    confirmed = torch.tensor([True, False, False, True, False, False])
    scores = torch.tensor([9.0, 8.0, 7.0, 0.1, 7.5, 0.0])  # 0, 1 and 4 above the 0.5-quantile (7.25)
    protected = torch.tensor([True, True, True, False, False, False])
    rejoin, unlearn = relearn_masks(suspected, labels, confirmed, given, scores, 0.5, protected)
    # unprotected: 4 (high score) rejoins, 3 (confirmed, robust) is unlearned; protected 0 and 1 neither,
    # although their scores are high and 0 is confirmed
    assert rejoin.tolist() == [False, False, False, False, True, False]
    assert unlearn.tolist() == [False, False, False, True, False, False]
    # relearning trains on the protected suspect the clean model relabelled, with its new label, and leaves
    # the other two out
    assert relearn_indices(data, suspected, labels, rejoin).tolist() == [2, 4, 5]
    # trust_unguarded (the default with the guard): only the protected suspects count as suspects in
    # relearning, so every unprotected suspect rejoins, none is unlearned, and the protected ones the clean
    # model does not relabel are still left out
    relearn_suspects = suspected & protected
    rejoin, unlearn = relearn_masks(relearn_suspects, labels, confirmed & protected, given, scores, 0.5, protected)
    rejoined = rejoin | (suspected & ~relearn_suspects)
    assert rejoined.tolist() == [False, False, False, True, True, False] and not unlearn.any()
    assert relearn_indices(data, relearn_suspects, labels, rejoin).tolist() == [2, 3, 4, 5]


def test_adversarial_identification_drops_fragile_predictions():
    """A linear model: the label of a sample near the boundary flips under a small perturbation, the label of
    one far from it does not; eps = 0 is the paper's margin rule."""

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[0].fill_(1.0)
        model[1].bias.copy_(torch.tensor([-24.0, 0.0]))  # class 0 iff mean pixel > 0.5
    imgs = torch.tensor([140, 250, 100], dtype=torch.uint8)[:, None, None, None].expand(3, 4, 4, 3).contiguous()
    data = ImageData(imgs, torch.tensor([0, 0, 1]), ("a", "b"))
    plain, _, _ = identify(model, data)
    adv, margin, thr = identify(model, data, eps=16 / 255, steps=2)
    assert plain.tolist() == [True, True, True]
    assert adv.tolist() == [False, True, True] and thr.tolist() == [0.0, 0.0] and margin.shape == (3,)


def test_null_calibration_discounts_a_sink_class():
    """Class 1 is a sink: 20 samples labelled 0 are predicted 1 with top-1 − top-2 margins 0.1 … 2.0. A sample
    labelled 1 with margin 1.5 is within that pull (not flagged); one with margin 10 (a trigger) is flagged;
    class 0 has no null set, so its threshold stays 0 (the paper's rule)."""
    from advrbd.defenses.advrbd.identify import null_thresholds

    pull = torch.linspace(0.1, 2.0, 20)
    logits = torch.cat([torch.stack([torch.zeros(20), pull], 1),          # labelled 0, predicted 1
                        torch.tensor([[0.0, 1.5], [0.0, 10.0], [3.0, 0.0]])])  # labelled 1, 1, 0
    y = torch.tensor([0] * 20 + [1, 1, 0])
    tau = null_thresholds(logits, y, 0.9)
    assert tau[0] == 0 and 1.7 < tau[1] < 2.0
    data = ImageData(torch.zeros(23, 1, 1, 1, dtype=torch.uint8), y, ("a", "b"))

    class Fixed(nn.Module):
        def forward(self, x):
            return logits[: len(x)]

    suspected, score, thr = identify(Fixed(), data, null_quantile=0.9)
    assert suspected[20:].tolist() == [False, True, True] and not suspected[:20].any()
    plain, _, _ = identify(Fixed(), data)
    assert plain[20:].tolist() == [True, True, True]


def test_enhancement_moves_only_misclassified_samples_with_move_unkept(synth):
    """With ``move_unkept`` the samples moved to D_c after round 1 are ones the round-1 model misclassifies;
    with ``stratify_pool`` every class gets its quota in the initial pool."""
    from advrbd.defenses.advrbd.enhance import enhance
    from advrbd.defenses.advrbd.identify import given_label_margin
    from advrbd.defenses.advrbd.settings import AdvrBDSettings
    from advrbd.models import create_model
    from advrbd.train.loop import TrainConfig, fit

    data = synth.train
    torch.manual_seed(0)
    model = create_model("tiny", 10)
    recipe = TrainConfig(epochs=2, batch_size=64, lr=0.05, device="cpu", precision="fp32")
    fit(model, data, TrainConfig(**{**recipe.__dict__, "epochs": 6}))
    s = AdvrBDSettings(rounds=2, partition_rate=0.1, stratify_pool=True, move_unkept=True)
    scores = torch.rand(len(data), generator=torch.Generator().manual_seed(0))
    pool_c, history, states = enhance(model, data, scores, s, recipe, 1, StageStore(None, "advrbd", "k"))
    k = round(0.1 * len(data))
    assert torch.bincount(data.labels[pool_c[:k]], minlength=10).tolist() == [6] * 10  # 60 per class × 0.1
    round1 = create_model("tiny", 10)
    round1.load_state_dict(states[0])
    moved = pool_c[k:]
    assert len(moved) > 0 and len(history) == 3, history
    assert bool((given_label_margin(round1, data)[moved] <= 0).all())


class _PooledFeatures(nn.Module):
    """Stub classifier whose penultimate features are the image's 8×8 average pools (48 numbers)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(48, 5)

    def features(self, x):
        return nn.functional.avg_pool2d(x, 8).flatten(1)

    def forward(self, x):
        return self.fc(self.features(x))


def _clustered_images(n_per_class: int, planted: int, seed: int = 0) -> tuple[ImageData, torch.Tensor]:
    """5 classes of Gaussian clusters in pooled-feature space; ``planted`` extra samples labelled 2 come from
    a sixth cluster (a trigger's subgroup). Returns the data and the mask of the planted samples."""
    g = torch.Generator().manual_seed(seed)
    centres = 0.2 + 0.6 * torch.rand(6, 48, generator=g)
    cluster = torch.cat([torch.arange(5).repeat_interleave(n_per_class), torch.full((planted,), 5)])
    f = (centres[cluster] + 0.04 * torch.randn(len(cluster), 48, generator=g)).clamp(0, 1)
    images = (f.view(-1, 3, 4, 4).repeat_interleave(8, 2).repeat_interleave(8, 3) * 255).round().to(torch.uint8)
    labels = torch.where(cluster == 5, 2, cluster)
    return ImageData(images.permute(0, 2, 3, 1).contiguous(), labels, tuple("abcde")), cluster == 5


def test_latent_guard_protects_a_planted_feature_subgroup_of_its_class():
    from advrbd.defenses.advrbd.guard import latent_guard

    data, planted = _clustered_images(120, 30)
    protected, j_star = latent_guard(_PooledFeatures(), data)
    assert int(j_star.argmax()) == 2
    assert bool(protected[planted].all())
    assert int(protected.sum()) == 30  # nothing else: no other class is anomalous
    # without a planted subgroup: at most one class's smaller half is protected, never all of it
    clean, _ = _clustered_images(120, 0)
    protected, _ = latent_guard(_PooledFeatures(), clean)
    assert clean.labels[protected].unique().numel() <= 1 and int(protected.sum()) <= 60
