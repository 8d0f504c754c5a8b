import numpy as np

from deeplab.crf.simulate import network_probs


def test_network_probs_are_soft_probabilities_that_mostly_agree_with_the_labels():
    truth = np.zeros((64, 80), dtype=np.int64)
    truth[16:48, 20:60] = 3
    probs = network_probs(truth, 5)
    assert probs.shape == (5, 64, 80) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    assert (probs.argmax(0) == truth).mean() > 0.8
    assert probs.max(0).min() < 0.9  # soft, not one-hot
