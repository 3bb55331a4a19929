"""How faithful is the training protocol to the papers'? Measurements behind docs/PROTOCOL.md.

* :mod:`.views`: do augmented views keep their class? (a strength per data set, and a command);
* :mod:`.linear`: the published linear evaluation (a linear layer on frozen features, 100 epochs);
* :mod:`.checks`: batch norm over one or two forward passes, and the kNN vote temperature.
"""
