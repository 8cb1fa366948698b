"""Elastic supernet (functional weight slicing) and static subnets."""

from toolkit.supernet.model import Supernet
from toolkit.supernet.static import StaticViT

__all__ = ["Supernet", "StaticViT"]
