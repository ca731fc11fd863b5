import numpy as np
import pytest

from digits.errors import DigitsError
from digits.models import MODELS, build_model, get_model_spec

# Parameter counts of the seeds' own architectures, from Keras's model.summary() in their notebooks.
SEED_PARAMS = {"mlp": 101_770, "mlp2": 118_282, "mlp-256-128": 235_146}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_maps_28x28_images_to_10_probabilities(name):
    model = build_model(name)
    p = np.asarray(model(np.random.rand(3, 28, 28).astype("float32")))
    assert p.shape == (3, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name,params", SEED_PARAMS.items())
def test_seed_architectures_have_the_seeds_parameter_counts(name, params):
    assert build_model(name).count_params() == params


def test_seed_recipes_match_the_seeds():
    assert (MODELS["mlp"].epochs, MODELS["mlp"].batch_size) == (5, 32)  # seed 001
    assert (MODELS["mlp2"].epochs, MODELS["mlp2"].batch_size) == (10, 32)  # seed 003
    spec = MODELS["mlp-256-128"]  # seed 004: one-hot labels, categorical cross-entropy
    assert (spec.epochs, spec.batch_size, spec.one_hot) == (10, 32, True)


def test_unknown_model_name_is_one_clear_error():
    with pytest.raises(DigitsError, match="unknown model 'resnet'.*mlp, mlp2, mlp-256-128, cnn"):
        get_model_spec("resnet")
