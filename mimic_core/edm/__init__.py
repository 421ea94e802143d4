"""Empirical dynamic modelling in JAX: Takens delay embedding, simplex projection and S-map.

Semantics follow pyEDM 2.5.7 (``pyEDM.Simplex``, ``pyEDM.SMap``) exactly; see ``simplex.py``, ``smap.py``.
"""
from mimic_core.edm.embed import embed, embed_columns
from mimic_core.edm.simplex import (SimplexResult, SurrogateResult, load_csv, parse_pairs, simplex,
                                    simplex_scan, simplex_surrogates)
from mimic_core.edm.smap import SMapResult, predict_nonlinear, smap

__all__ = ["embed", "embed_columns", "SimplexResult", "SurrogateResult", "load_csv", "parse_pairs",
           "simplex", "simplex_scan", "simplex_surrogates", "SMapResult", "smap", "predict_nonlinear"]
