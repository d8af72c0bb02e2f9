"""cs231n ``classifiers``: the fully-connected classifiers of assignment 2."""

from jaxfc.cs231n.classifiers.fc_net import FullyConnectedNet, TwoLayerNet

__all__ = ["FullyConnectedNet", "TwoLayerNet"]
