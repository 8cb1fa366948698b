"""evit: ElasticViT supernets, latency-aware search and deployable subnets for phones.

The public names load lazily, so tools that need no torch (the device layer's subprocesses,
``evit devices``) start fast.
"""

from importlib import import_module

__version__ = "0.1.0"
_EXPORTS = {
    "flops": "toolkit.flops", "params": "toolkit.flops",
    "SPACE": "toolkit.space", "ArchConfig": "toolkit.space", "ConvStage": "toolkit.space",
    "SearchSpace": "toolkit.space", "TransformerStage": "toolkit.space",
    "StaticViT": "toolkit.supernet", "Supernet": "toolkit.supernet",
    "create_model": "toolkit.zoo", "get_arch": "toolkit.zoo", "list_models": "toolkit.zoo",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
