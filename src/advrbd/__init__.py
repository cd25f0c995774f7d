"""advrbd: train backdoor-robust image classifiers on untrusted, possibly poisoned datasets.

Core method: AdvrBD (adversarial-robustness-based backdoor defense). Images are float [0,1] NCHW at
every API boundary; normalization lives inside the models.
"""
__version__ = "0.1.0"


def __getattr__(name: str):
    # lazy: `import advrbd` stays cheap (no torch import) for the CLI's --version / --help
    if name in ("defend", "poison", "evaluate", "as_image_data", "Defended"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'advrbd' has no attribute {name!r}")
