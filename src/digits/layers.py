"""Custom Keras layers that saved Digits models may contain.

Keras needs a custom layer's class registered before it loads a model that
uses it; :meth:`digits.runs.Run.load_model` imports this module first.
"""

import keras


@keras.saving.register_keras_serializable(package="digits")
class MajorityVote(keras.layers.Layer):
    """(members, N, 10) probabilities → vote shares per class, ties broken by mean probability."""

    def call(self, stacked):
        classes = keras.ops.shape(stacked)[-1]
        votes = keras.ops.mean(keras.ops.one_hot(keras.ops.argmax(stacked, axis=-1), classes), axis=0)
        # A tie-breaker far smaller than one vote: the mean probability, scaled down.
        members = keras.ops.cast(keras.ops.shape(stacked)[0], "float32")
        return votes + keras.ops.mean(stacked, axis=0) / (members * 1000.0)
