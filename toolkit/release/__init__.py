"""Compatibility with the ElasticViT release (microsoft/Moonlit, ``ElasticViT/``).

* :mod:`toolkit.release.arch`: its 10-field arch lists and YAML named models <-> ``ArchConfig``,
  and the rules its sampler keeps (which subnets it could have trained);
* :mod:`toolkit.release.checkpoint`: ``import_release`` reads its checkpoint format into an
  evit supernet checkpoint of ``layout="release"``.
"""
