"""`mimic-bench bench-edm` on a tiny problem: every workload runs on every side and agrees with pyEDM."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyEDM")


def test_tiny_benchmark_covers_every_workload():
    from bench.edm import format_table, run_benchmark

    rep = run_benchmark(n_lib=200, n_pred=100, max_E=2, max_Tp=2, surrogates=5, seed=0, repeats=1, smap_lib=120,
                        smap_pred=60, ccm_rows=120, ccm_sample=3, pool=False)
    for key in ("scan", "surrogates", "ebisuzaki", "smap", "ccm"):
        e = rep[key]
        assert e["ours_s"] > 0 and e["pyedm_s"] > 0 and np.isfinite(e["speedup"])
        assert e["max_abs_rho_diff"] < 1e-6, key      # the same answer as pyEDM (ebisuzaki: the data's rho)
    assert rep["ccm"]["lib_sizes"][0] == 20 and rep["ccm"]["lib_sizes"][-1] == 118
    if rep["machine"]["versions"]["kedm"]:      # kEDM aligned to the same rows: float32 agreement
        for key in ("scan", "surrogates", "smap"):
            assert rep[key]["kedm_max_abs_rho_diff_vs_ours"] < 1e-3, key
    assert "ccm" in format_table(rep)
