"""advrbd: train backdoor-robust image classifiers on untrusted, possibly poisoned datasets.

Core method: AdvrBD (adversarial-robustness-based backdoor defense). Images are float [0,1] NCHW at
every API boundary; normalization lives inside the models.
"""
__version__ = "0.1.0"
