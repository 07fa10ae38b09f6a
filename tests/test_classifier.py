"""The shared classifier: calibration of the learned likelihood ratio and the AUC.

Two unit-width Gaussians N(0, 1) and N(0.5, 1) have the exact ratio
p1/p0 = exp(0.5 x - 0.125). With 2 x 20,000 events (16,000 each for training) a
two-parameter logistic fit would reach ~1 % at the centre and ~2 % at x = 2 (Fisher
information); the MLP is more flexible and its error larger: over 10 data seeds x
(unweighted, weighted) the mean deviation over [-1.5, 2] was 0.5-4 % (typically 2 %),
the largest on [-1, 1.5] (both densities > 0.13) up to 7 % and on [-1.5, 2] up to 12 %.
Tolerances: 4 % for the mean, 8 % and 12 % for the largest deviations.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from evgen.ml.classifier import Classifier, ClassifierConfig, auc

torch.set_num_threads(1)

N = 20_000
CONFIG = ClassifierConfig(
    hidden=32, layers=2, epochs=30, batch_size=1024, learning_rate=3e-3, patience=8
)


def exact_ratio(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(0.5 * x - 0.125)


@pytest.fixture(scope="module")
def gaussians() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(N, 1, generator=gen, dtype=torch.float64)
    x1 = 0.5 + torch.randn(N, 1, generator=gen, dtype=torch.float64)
    xw = torch.randn(N, 1, generator=gen, dtype=torch.float64)
    return x0, x1, xw


def check_calibration(clf: Classifier) -> None:
    centre = torch.linspace(-1.0, 1.5, 11, dtype=torch.float64)
    wide = torch.linspace(-1.5, 2.0, 15, dtype=torch.float64)
    dev_centre = clf.likelihood_ratio(centre[:, None]) / exact_ratio(centre) - 1
    dev_wide = clf.likelihood_ratio(wide[:, None]) / exact_ratio(wide) - 1
    assert float(dev_wide.abs().mean()) < 0.04, dev_wide
    assert float(dev_centre.abs().max()) < 0.08, dev_centre
    assert float(dev_wide.abs().max()) < 0.12, dev_wide


def test_likelihood_ratio_of_two_gaussians(gaussians) -> None:
    x0, x1, _ = gaussians
    clf = Classifier(1, CONFIG).fit(x0, x1)
    check_calibration(clf)
    assert clf.history and clf.history[-1].epoch <= CONFIG.epochs
    p = clf.probability(torch.zeros(3, 1, dtype=torch.float64))
    assert p.dtype == torch.float64 and p.shape == (3,)


def test_weighted_class_learns_the_weighted_density(gaussians) -> None:
    """Class 1 is N(0, 1) reweighted by the exact ratio: the same ratio must be learned,
    so the event weights enter the loss (unweighted, the ratio would be 1)."""
    x0, _, xw = gaussians
    w1 = exact_ratio(xw[:, 0])
    clf = Classifier(1, CONFIG).fit(x0, xw, w1=w1)
    check_calibration(clf)


def test_class_balance_ignores_the_overall_normalisation(gaussians) -> None:
    """Scaling one class's weights by 100 must not change D/(1-D) (classes balanced)."""
    x0, x1, _ = gaussians
    cfg = ClassifierConfig(hidden=16, layers=1, epochs=3, batch_size=2048, seed=3)
    a = Classifier(1, cfg).fit(x0, x1)
    b = Classifier(1, cfg).fit(x0, x1, w0=torch.full((N,), 100.0, dtype=torch.float64))
    x = torch.linspace(-2, 2, 5, dtype=torch.float64)[:, None]
    torch.testing.assert_close(a.likelihood_ratio(x), b.likelihood_ratio(x), rtol=1e-4, atol=0)


def test_likelihood_ratio_clip() -> None:
    x0 = torch.randn(500, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    clf = Classifier(1, ClassifierConfig(hidden=8, layers=1, epochs=2)).fit(x0, x0 + 5)
    r = clf.likelihood_ratio(torch.tensor([[-10.0], [15.0]], dtype=torch.float64), clip=20.0)
    assert float(r.min()) >= 1 / 20 - 1e-12 and float(r.max()) <= 20 + 1e-12


def brute_force_auc(scores, labels, weights) -> float:
    num = den = 0.0
    for i, j in itertools.product(range(len(scores)), repeat=2):
        if labels[i] == 1 and labels[j] == 0:
            pair = weights[i] * weights[j]
            den += pair
            if scores[i] > scores[j]:
                num += pair
            elif scores[i] == scores[j]:
                num += 0.5 * pair
    return num / den


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_against_pairwise_count(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    n = 60
    scores = torch.randint(0, 12, (n,), generator=gen).double()  # many ties
    labels = torch.randint(0, 2, (n,), generator=gen)
    weights = torch.rand(n, generator=gen, dtype=torch.float64) + 0.1
    got = auc(scores, labels, weights)
    want = brute_force_auc(scores.tolist(), labels.tolist(), weights.tolist())
    assert got == pytest.approx(want, abs=1e-12)
    assert auc(scores, labels) == pytest.approx(
        brute_force_auc(scores.tolist(), labels.tolist(), [1.0] * n), abs=1e-12
    )


def test_auc_limits() -> None:
    s = torch.arange(10, dtype=torch.float64)
    labels = (s >= 5).long()
    assert auc(s, labels) == 1.0
    assert auc(-s, labels) == 0.0
    assert auc(torch.zeros(10, dtype=torch.float64), labels) == 0.5


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="epochs"):
        ClassifierConfig(epochs=0)
    clf = Classifier(2)
    with pytest.raises(ValueError, match="same d"):
        clf.fit(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="2 features"):
        clf.fit(torch.zeros(5, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="positive total weight"):
        clf.fit(torch.randn(5, 2), torch.randn(5, 2), w1=-torch.ones(5, dtype=torch.float64))
