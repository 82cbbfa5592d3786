"""ResNet-50 v1.5 under the MLPerf training rules.

``model`` builds the network; ``optimizers`` holds the learning-rate schedule, LARS, SGD with
L2 weight decay, the label-smoothing loss and the MLLOG hyperparameter keys. The modules
import TensorFlow, so this package imports none of them until asked.
"""
