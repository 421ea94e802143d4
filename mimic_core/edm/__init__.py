"""Empirical dynamic modelling in JAX: Takens delay embedding and simplex projection.

Semantics follow pyEDM 2.5.7 (``pyEDM.Simplex``) exactly; see ``simplex.py``.
"""
from mimic_core.edm.embed import embed, embed_columns
from mimic_core.edm.simplex import (SimplexResult, SurrogateResult, load_csv, parse_pairs, simplex,
                                    simplex_scan, simplex_surrogates)

__all__ = ["embed", "embed_columns", "SimplexResult", "SurrogateResult", "load_csv", "parse_pairs",
           "simplex", "simplex_scan", "simplex_surrogates"]
