"""evit: ElasticViT supernets, latency-aware search and deployable subnets for phones."""

from toolkit.flops import flops, params
from toolkit.space import SPACE, ArchConfig, ConvStage, SearchSpace, TransformerStage
from toolkit.supernet import StaticViT, Supernet
from toolkit.zoo import create_model, get_arch, list_models

__version__ = "0.1.0"
__all__ = ["ArchConfig", "ConvStage", "TransformerStage", "SearchSpace", "SPACE", "flops",
           "params", "Supernet", "StaticViT", "create_model", "get_arch", "list_models"]
